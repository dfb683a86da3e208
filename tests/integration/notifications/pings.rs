//! Issue 11, defect 6: the live hub pings its subscribed Redis connection, which answers
//! `["pong",""]`; that answer was read as "subscription lost", so every instance
//! re-subscribed and every SSE client re-synced at each ping. One subscription must
//! live through many pings, with every row delivered once.

use std::collections::HashMap;
use std::time::Duration;

use chronicle::app::Mode;
use chronicle::ids::FileId;

use super::live::{Next, Sse, wait_for_clients};
use super::{Files, account, overrides};
use crate::common::{TestApp, unique_redis_prefix};

/// Pings the subscription must survive: 20 at 1 s (the default 15 s is 5 minutes).
const PINGS: u64 = 20;

#[tokio::test]
async fn one_subscription_lives_through_pings_and_delivers_every_row_once() {
    let prefix = unique_redis_prefix();
    let mut o = overrides(&prefix);
    o.push(("LIVE_PING_EVERY_SECS", "1".into()));
    let o: Vec<(&str, &str)> = o.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let t = TestApp::spawn(Mode::Serve, &o).await;
    let hub = t.app.state.live.clone();
    let ada = account(&t, "ada").await;
    let mut stream = Sse::connect(&t.base, &ada, None).await;
    wait_for_clients(&t.app, 1).await;

    // A file every ~2 s while the pings go on; every row read by a real SSE client.
    let files = Files::new(&t.db.app, ada.tenant);
    let mut produced: Vec<FileId> = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new(); // (event id, file id)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while hub.pings() < PINGS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} pings answered in 90 s",
            hub.pings()
        );
        produced.push(files.completed_file(ada.user, "f").await);
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Some(left) = until.checked_duration_since(tokio::time::Instant::now()) {
            match stream.next(left).await {
                Next::Event(e) => {
                    let file = e.data["file_id"].as_str().unwrap_or_default().to_string();
                    seen.push((e.id, file));
                }
                Next::Quiet => break,
                Next::Ended => panic!("the SSE stream ended"),
            }
        }
    }
    // The rest of the rows (3 per file: uploaded, processing, completed).
    while seen.len() < produced.len() * 3 {
        match stream.next(Duration::from_secs(10)).await {
            Next::Event(e) => {
                let file = e.data["file_id"].as_str().unwrap_or_default().to_string();
                seen.push((e.id, file));
            }
            _ => break,
        }
    }
    stream.expect_quiet(Duration::from_millis(500)).await;

    assert!(hub.pings() >= PINGS);
    assert_eq!(hub.subscriptions(), 1, "the hub re-subscribed");
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for (id, _) in &seen {
        *per_id.entry(id.as_str()).or_default() += 1;
    }
    assert!(
        per_id.values().all(|&n| n == 1),
        "duplicate deliveries: {seen:?}"
    );
    for file in &produced {
        let rows = seen.iter().filter(|(_, f)| *f == file.to_string()).count();
        assert_eq!(rows, 3, "rows of {file}");
    }
    assert_eq!(seen.len(), produced.len() * 3);
    let metrics = t.http.get(t.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("chronicle_live_subscriptions_total 1\n"),
        "{text}"
    );
    t.app.stop().await;
}
