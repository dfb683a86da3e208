//! `GET /v1/events`: rows produced on one instance reach SSE clients of another through
//! Redis; `Last-Event-ID` resumes with exactly the missed events; other users and
//! tenants never see a row; streams end on shutdown.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use chronicle::app::{App, Mode};
use chronicle::ids::UserId;
use futures::{Stream, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;

use super::{Account, Files, account, app, overrides, wait_for_rows};
use crate::common::{TempDir, TestApp, test_config, unique_redis_prefix};

#[derive(Debug, Clone)]
pub(super) struct SseEvent {
    pub(super) id: String,
    pub(super) event: String,
    pub(super) data: Value,
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

/// A minimal SSE reader: frames separated by a blank line; comments (keep-alives)
/// skipped.
pub(super) struct Sse {
    body: Body,
    buf: String,
}

pub(super) enum Next {
    Event(SseEvent),
    Quiet,
    Ended,
}

impl Sse {
    async fn open(
        base: &str,
        path_and_query: &str,
        bearer: Option<&str>,
        last: Option<&str>,
    ) -> Sse {
        let mut req = reqwest::Client::new().get(format!("{base}{path_and_query}"));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        Sse {
            body: Box::pin(r.bytes_stream().map(|c| c.map(|b| b.to_vec()))),
            buf: String::new(),
        }
    }

    pub(super) async fn connect(base: &str, who: &Account, last: Option<&str>) -> Sse {
        Sse::open(base, "/v1/events", Some(&who.access), last).await
    }

    pub(super) async fn next(&mut self, within: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: String::new(),
                    event: String::new(),
                    data: Value::Null,
                };
                let mut data = None;
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str(v.trim()).unwrap());
                    }
                }
                match data {
                    Some(d) => {
                        event.data = d;
                        return Next::Event(event);
                    }
                    None => continue, // keep-alive comment
                }
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Next::Quiet,
                Ok(None) => return Next::Ended,
                Ok(Some(chunk)) => self
                    .buf
                    .push_str(&String::from_utf8(chunk.unwrap()).unwrap()),
            }
        }
    }

    async fn expect(&mut self) -> SseEvent {
        match self.next(Duration::from_secs(10)).await {
            Next::Event(e) => e,
            Next::Quiet => panic!("no event within 10 s"),
            Next::Ended => panic!("stream ended"),
        }
    }

    /// Asserts that nothing arrives for a while.
    pub(super) async fn expect_quiet(&mut self, for_: Duration) {
        if let Next::Event(e) = self.next(for_).await {
            panic!("unexpected event {e:?}");
        }
    }
}

/// A second API instance (web only: no projectors) on `first`'s database and channels.
async fn second_instance(first: &TestApp, prefix: &str) -> (App, String, TempDir) {
    let dir = TempDir::new();
    let o = overrides(prefix);
    let o: Vec<(&str, &str)> = o.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let config = test_config(&first.db.url, &PathBuf::from(&dir.0), &o);
    let app = App::start(config, Mode::Web).await.unwrap();
    let base = format!("http://{}", app.addr.unwrap());
    (app, base, dir)
}

/// Waits until `app`'s hub holds its Redis subscription and `n` SSE clients are
/// connected, so rows produced next travel through Redis pub/sub (rows published
/// before the hub subscribes reach clients through its start-up re-sync instead).
pub(super) async fn wait_for_clients(app: &App, n: usize) {
    crate::common::eventually_within(
        "the hub is subscribed and the clients connected",
        Duration::from_secs(10),
        async || (app.state.live.is_subscribed() && app.state.live.clients() >= n).then_some(()),
    )
    .await;
}

#[tokio::test]
async fn a_client_on_instance_b_sees_what_instance_a_produced_and_nobody_else_does() {
    let prefix = unique_redis_prefix();
    let a = app(Mode::Serve, &prefix).await;
    let (b, b_base, _dir) = second_instance(&a, &prefix).await;
    let ada = account(&a, "ada").await;
    let eve = account(&a, "eve").await; // another tenant
    let mut ada_stream = Sse::connect(&b_base, &ada, None).await;
    // A browser's EventSource cannot send headers: the token may come in the query.
    let mut eve_stream = Sse::open(
        &b_base,
        &format!("/v1/events?access_token={}", eve.access),
        None,
        None,
    )
    .await;
    wait_for_clients(&b, 2).await;

    let files = Files::new(&a.db.app, ada.tenant);
    let file = files.completed_file(ada.user, "q3.pdf").await;
    // A colleague in Ada's tenant: their rows go to them, not to Ada.
    files.completed_file(UserId::new(), "theirs.pdf").await;
    let mut seen = vec![];
    for _ in 0..3 {
        seen.push(ada_stream.expect().await);
    }
    let trail: Vec<(&str, &str)> = seen
        .iter()
        .map(|e| (e.event.as_str(), e.data["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        trail,
        [
            ("version_status", "uploaded"),
            ("version_status", "processing"),
            ("notification", "completed")
        ]
    );
    let done = &seen[2];
    assert_eq!(done.data["kind"], "version_completed");
    assert_eq!(done.data["file_id"], file.to_string());
    assert_eq!(done.data["event_id"], done.id.as_str());
    assert!(
        seen.windows(2)
            .all(|w| w[0].id.parse::<Id>().unwrap() < w[1].id.parse::<Id>().unwrap())
    );
    ada_stream.expect_quiet(Duration::from_millis(500)).await;

    // Eve's first event is her own: nothing of Ada's tenant reached her before it.
    let eve_files = Files::new(&a.db.app, eve.tenant);
    let hers = eve_files.completed_file(eve.user, "mine").await;
    let first = eve_stream.expect().await;
    assert_eq!(first.data["file_id"], hers.to_string());

    // Shutdown ends the open streams, and the server drains instead of hanging.
    tokio::time::timeout(Duration::from_secs(10), b.stop())
        .await
        .expect("instance B stops with SSE clients connected");
    loop {
        match ada_stream.next(Duration::from_secs(5)).await {
            Next::Ended => break,
            Next::Quiet => panic!("stream still open after shutdown"),
            Next::Event(_) => {}
        }
    }
    a.app.stop().await;
}

/// `<transaction_id>-<global_position>`, compared as the pair.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Id(u64, i64);

impl std::str::FromStr for Id {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (x, p) = s.split_once('-').ok_or(s.to_string())?;
        Ok(Id(
            x.parse().map_err(|_| s.to_string())?,
            p.parse().map_err(|_| s.to_string())?,
        ))
    }
}

#[tokio::test]
async fn last_event_id_resumes_with_exactly_the_missed_events() {
    let prefix = unique_redis_prefix();
    let t = app(Mode::Serve, &prefix).await;
    let ada = account(&t, "ada").await;
    let files = Files::new(&t.db.app, ada.tenant);
    let mut stream = Sse::connect(&t.base, &ada, None).await;
    wait_for_clients(&t.app, 1).await;
    files.completed_file(ada.user, "one").await;
    let mut before = vec![];
    for _ in 0..3 {
        before.push(stream.expect().await);
    }
    let last = before[2].id.clone();
    drop(stream); // the connection drops

    // While the client is away: two more files (6 rows).
    let missed_a = files.completed_file(ada.user, "two").await;
    let missed_b = files.completed_file(ada.user, "three").await;
    wait_for_rows(&t.db.worker, ada.user, 9).await;

    let mut resumed = Sse::connect(&t.base, &ada, Some(&last)).await;
    let mut after = vec![];
    for _ in 0..6 {
        after.push(resumed.expect().await);
    }
    let files_seen: Vec<String> = after
        .iter()
        .map(|e| e.data["file_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        files_seen[..3],
        [
            missed_a.to_string(),
            missed_a.to_string(),
            missed_a.to_string()
        ]
    );
    assert_eq!(
        files_seen[3..],
        [
            missed_b.to_string(),
            missed_b.to_string(),
            missed_b.to_string()
        ]
    );
    let ids: Vec<Id> = after.iter().map(|e| e.id.parse().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    assert!(last.parse::<Id>().unwrap() < ids[0]);
    resumed.expect_quiet(Duration::from_millis(500)).await;

    // Then live again, without a duplicate of the backfill.
    let live = files.completed_file(ada.user, "four").await;
    let next = resumed.expect().await;
    assert_eq!(next.data["file_id"], live.to_string());
    assert_eq!(next.data["status"], "uploaded");

    // The query form resumes the same way; `0-0` replays everything.
    let mut all = Sse::open(
        &t.base,
        "/v1/events?last_event_id=0-0",
        Some(&ada.access),
        None,
    )
    .await;
    for expected in before.iter().chain(&after) {
        assert_eq!(all.expect().await.id, expected.id);
    }
    t.app.stop().await;
}

#[tokio::test]
async fn bad_tokens_and_ids_are_refused_in_the_error_shape() {
    let t = app(Mode::Serve, &unique_redis_prefix()).await;
    let ada = account(&t, "ada").await;
    let cases = [
        (
            "/v1/events".to_string(),
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "token_missing",
        ),
        (
            "/v1/events?access_token=nope".into(),
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "token_malformed",
        ),
        (
            "/v1/events".into(),
            Some(ada.access.as_str()),
            Some("12"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/v1/events?last_event_id=1-x".into(),
            Some(ada.access.as_str()),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        // The header wins, but a malformed query value beside it is still refused.
        (
            "/v1/events?last_event_id=1-x".into(),
            Some(ada.access.as_str()),
            Some("0-0"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/v1/events?last_event_id=1234567890123456789-1".into(),
            Some(ada.access.as_str()),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (path, bearer, last, status, code) in cases {
        let mut req = t.http.get(t.url(&path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(l) = last {
            req = req.header("Last-Event-ID", l);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
    }
    // The query token is accepted on the stream only.
    let r = t
        .http
        .get(t.url(&format!("/v1/notifications?access_token={}", ada.access)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    t.app.stop().await;
}

/// A publication that never arrives (Redis hiccup, or a lease hand-over that reorders
/// two instances' publications) leaves a gap in the recipient's `seq`: the next live
/// row reveals it, and the client re-reads the table instead of skipping rows.
#[tokio::test]
async fn a_lost_publication_is_recovered_from_the_table() {
    use chronicle::projections::{self, Reactions, runtime};
    let prefix = unique_redis_prefix();
    // Web only: this test runs the projector itself, once silently, once publishing.
    let t = app(Mode::Web, &prefix).await;
    let silent = projections::by_name("notifications").unwrap();
    let publishing = projections::live(Reactions {
        redis: t.app.state.redis_conn.clone(),
        key_prefix: prefix.clone(),
    })
    .into_iter()
    .find(|p| p.name() == "notifications")
    .unwrap();
    runtime::register(&t.db.worker, std::slice::from_ref(&silent))
        .await
        .unwrap();
    let ada = account(&t, "ada").await;
    let mut stream = Sse::connect(&t.base, &ada, None).await;
    wait_for_clients(&t.app, 1).await;

    let files = Files::new(&t.db.app, ada.tenant);
    let lost = files.completed_file(ada.user, "lost").await;
    runtime::catch_up(&t.db.worker, silent.as_ref())
        .await
        .unwrap();
    stream.expect_quiet(Duration::from_millis(300)).await;
    let later = files.completed_file(ada.user, "later").await;
    runtime::catch_up(&t.db.worker, publishing.as_ref())
        .await
        .unwrap();
    let mut got = vec![];
    for _ in 0..6 {
        got.push(
            stream.expect().await.data["file_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let expected: Vec<String> = [lost, lost, lost, later, later, later]
        .iter()
        .map(|f| f.to_string())
        .collect();
    assert_eq!(
        got, expected,
        "the unpublished rows first, then the live ones, once each"
    );
    stream.expect_quiet(Duration::from_millis(300)).await;
    t.app.stop().await;
}
