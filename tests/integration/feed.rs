//! The tenant-wide feed (`GET /v1/feed`, `GET /v1/feed/stream`): under 16 concurrent
//! writers with rollbacks, consumers that disconnect and resume at random points — by
//! pages and by SSE, the SSE one alternating between two API instances — receive every
//! committed event of their tenant exactly once, in commit order, and nothing of another
//! tenant; roles, bad cursors and parameters; items verify against the stored hash.

use std::collections::HashSet;
use std::time::Duration;

use chronicle::app::{App, Mode};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::common::{TempDir, test_config};
use crate::files_api::{Caller, World};

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const WRITERS: usize = 16;
const PER_WRITER: usize = 250;

/// One writer: transactions of 1–4 events with random pauses inside them, about one in
/// six rolled back, each to `tenant` or (one in four) to `other`. Returns the aggregate
/// ids and sequences it committed to `tenant`.
async fn writer(pool: PgPool, w: usize, tenant: Uuid, other: Uuid) -> Vec<(String, i64)> {
    let mut mine = Vec::new();
    let mut committed = 0;
    let mut txn = 0;
    while committed < PER_WRITER {
        txn += 1;
        let k = rand::random_range(1..=4usize).min(PER_WRITER - committed);
        let rollback = rand::random_range(0..6u32) == 0;
        let target = if rand::random_range(0..4u32) == 0 {
            other
        } else {
            tenant
        };
        let id = format!("w{w}-t{txn}");
        let mut tx = pool.begin().await.unwrap();
        for seq in 1..=k {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, tenant_id)
                 VALUES ('load', $1, $2, $5, '1', '{\"Loaded\":{}}', $3::json, $4)",
            )
            .bind(&id)
            .bind(seq as i64)
            .bind(format!(r#"{{"actor":"system:test","tenant_id":"{target}","hash":"h{w}-{txn}-{seq}","prev_hash":""}}"#))
            .bind(target)
            .bind(if seq % 2 == 0 { "LoadedEven" } else { "Loaded" })
            .execute(&mut *tx)
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_micros(rand::random_range(0..1500))).await;
        }
        if rollback {
            tx.rollback().await.unwrap();
        } else {
            tx.commit().await.unwrap();
            committed += k;
            if target == tenant {
                mine.extend((1..=k).map(|s| (id.clone(), s as i64)));
            }
        }
    }
    mine
}

fn key(item: &Value) -> (String, i64) {
    (
        item["aggregate_id"].as_str().unwrap().to_string(),
        item["sequence"].as_i64().unwrap(),
    )
}

/// Follows the feed by pages with random sizes; one page in three it "crashes" after
/// handling a random prefix and resumes from the last handled item's cursor. Stops once
/// it has `want` items and a page comes back empty.
async fn page_consumer(
    http: reqwest::Client,
    base: String,
    token: String,
    want: tokio::sync::watch::Receiver<Option<usize>>,
) -> Vec<Value> {
    let mut got: Vec<Value> = Vec::new();
    let mut after = String::new();
    loop {
        let limit = rand::random_range(1..=300u32);
        let r = http
            .get(format!("{base}/v1/feed?after={after}&limit={limit}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let page: Value = r.json().await.unwrap();
        let items = page["items"].as_array().unwrap().clone();
        assert!(items.len() <= limit as usize);
        let total = *want.borrow();
        if items.is_empty() && total.is_some_and(|n| got.len() >= n) {
            return got;
        }
        if !items.is_empty() && rand::random_range(0..3u32) == 0 {
            let handled = rand::random_range(1..=items.len());
            after = items[handled - 1]["cursor"].as_str().unwrap().to_string();
            got.extend(items.into_iter().take(handled));
        } else {
            got.extend(items);
            after = page["next"].as_str().unwrap().to_string();
        }
        if page["items"].as_array().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reads SSE events (`id`, `data`) from a response until `stop` of them came or the
/// stream ends.
async fn read_sse(r: reqwest::Response, stop: usize, out: &mut Vec<(String, Value)>) {
    let mut body = r.bytes_stream();
    let mut buf = String::new();
    let mut read = 0;
    let (mut id, mut data, mut kind) = (String::new(), String::new(), String::new());
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(2), body.next()).await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(nl) = buf.find('\n') {
            let line = buf[..nl].trim_end_matches('\r').to_string();
            buf.drain(..=nl);
            if line.is_empty() {
                if kind == "feed" {
                    out.push((id.clone(), serde_json::from_str(&data).unwrap()));
                    read += 1;
                    if read == stop {
                        return;
                    }
                }
                (id, data, kind) = (String::new(), String::new(), String::new());
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim_start().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = v.trim_start().to_string();
            }
        }
    }
}

/// Follows `/v1/feed/stream`, disconnecting after a random number of events and
/// reconnecting with `Last-Event-ID` to the other instance each time.
async fn sse_consumer(
    http: reqwest::Client,
    bases: [String; 2],
    token: String,
    want: tokio::sync::watch::Receiver<Option<usize>>,
) -> Vec<Value> {
    let mut got: Vec<(String, Value)> = Vec::new();
    let mut turn = 0;
    loop {
        let mut req = http
            .get(format!("{}/v1/feed/stream", bases[turn % 2]))
            .bearer_auth(&token);
        if let Some((id, _)) = got.last() {
            req = req.header("last-event-id", id);
        }
        turn += 1;
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let before = got.len();
        read_sse(r, rand::random_range(1..=400usize), &mut got).await;
        let total = *want.borrow();
        if got.len() == before && total.is_some_and(|n| got.len() >= n) {
            return got.into_iter().map(|(_, v)| v).collect();
        }
    }
}

fn assert_exactly_once(name: &str, got: &[Value], committed: &[(String, i64)]) {
    let keys: Vec<(String, i64)> = got.iter().map(key).collect();
    let unique: HashSet<&(String, i64)> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "{name}: an event came twice");
    let expected: HashSet<&(String, i64)> = committed.iter().collect();
    assert_eq!(unique, expected, "{name}: not exactly the committed events");
    // Commit order: within a stream, sequences ascend.
    let mut last: std::collections::HashMap<&str, i64> = Default::default();
    for (id, seq) in &keys {
        let prev = last.insert(id, *seq).unwrap_or(0);
        assert_eq!(*seq, prev + 1, "{name}: {id} out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_every_committed_event_reaches_resuming_consumers_exactly_once() {
    let w = World::new(&[]).await;
    let auditor = w.join("audrey", "auditor").await;
    // A second API instance on the same database: the SSE consumer alternates.
    let dir = TempDir::new();
    let second = App::start(
        test_config(
            &w.t.db.url,
            &dir.0,
            &[("JWT_SECRET", SECRET), ("RATE_LIMIT_PER_MINUTE", "1000000")],
        ),
        Mode::Web,
    )
    .await
    .unwrap();
    let second_base = format!("http://{}", second.addr.unwrap());

    // Events from before the writers start (registration, invitation) are in the feed too.
    let before: Vec<(String, i64)> =
        sqlx::query_as("SELECT aggregate_id, sequence FROM events WHERE tenant_id = $1")
            .bind(w.tenant)
            .fetch_all(&w.t.db.owner)
            .await
            .unwrap();

    let (done, want) = tokio::sync::watch::channel(None);
    let pages = tokio::spawn(page_consumer(
        w.t.http.clone(),
        w.t.base.clone(),
        auditor.token.clone(),
        want.clone(),
    ));
    let sse = tokio::spawn(sse_consumer(
        w.t.http.clone(),
        [w.t.base.clone(), second_base],
        w.admin.token.clone(),
        want,
    ));

    let pool = PgPoolOptions::new()
        .max_connections(WRITERS as u32)
        .connect(&w.t.db.url)
        .await
        .unwrap();
    let other = Uuid::now_v7();
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| tokio::spawn(writer(pool.clone(), i, w.tenant, other)))
        .collect();
    let mut committed = before;
    for t in writers {
        committed.extend(t.await.unwrap());
    }
    // Events written meanwhile by the app itself (the auditor's sign-in) count too.
    let in_log: Vec<(String, i64)> =
        sqlx::query_as("SELECT aggregate_id, sequence FROM events WHERE tenant_id = $1")
            .bind(w.tenant)
            .fetch_all(&w.t.db.owner)
            .await
            .unwrap();
    assert!(in_log.len() >= committed.len());
    done.send(Some(in_log.len())).unwrap();

    let within = Duration::from_secs(120);
    let pages = tokio::time::timeout(within, pages).await.unwrap().unwrap();
    let sse = tokio::time::timeout(within, sse).await.unwrap().unwrap();
    assert_exactly_once("pages", &pages, &in_log);
    assert_exactly_once("sse", &sse, &in_log);
    assert!(in_log.len() > WRITERS * PER_WRITER / 2);
    second.stop().await;
}

/// The first page of `query` once it holds `n` items.
async fn feed_until(w: &World, who: &Caller, query: &str, n: usize) -> Value {
    crate::common::eventually_explained(
        &format!("the feed holds {n} items"),
        Duration::from_secs(30),
        async || {
            let (status, page) = w.send("GET", &format!("/v1/feed?{query}"), who).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            if page["items"].as_array().unwrap().len() >= n {
                Ok(page)
            } else {
                Err(format!("{query}: {page}"))
            }
        },
    )
    .await
}

#[tokio::test]
async fn feed_items_carry_the_stored_event_and_the_feed_is_for_readers_of_history() {
    let w = World::new(&[]).await;
    let user = w.join("bob", "user").await;
    let auditor = w.join("audrey", "auditor").await;
    let file = w.create(&user, "report.pdf").await;

    // An event is readable once every older transaction in the cluster has ended: poll.
    let page = feed_until(
        &w,
        &auditor,
        &format!("aggregate_type=file&aggregate_id={file}"),
        1,
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let item = &items[0];
    let (payload, metadata, hash, recorded_at): (
        String,
        String,
        String,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as(
        "SELECT payload::text, metadata::text, metadata->>'hash', recorded_at FROM events
              WHERE tenant_id = $1 AND aggregate_id = $2",
    )
    .bind(w.tenant)
    .bind(file.to_string())
    .fetch_one(&w.t.db.owner)
    .await
    .unwrap();
    assert_eq!(item["event_type"], "FileCreated");
    assert_eq!(item["sequence"], 1);
    assert_eq!(item["hash"], hash.as_str());
    assert_eq!(
        item["payload"],
        serde_json::from_str::<Value>(&payload).unwrap()
    );
    assert_eq!(
        item["metadata"],
        serde_json::from_str::<Value>(&metadata).unwrap()
    );
    assert_eq!(
        item["recorded_at"],
        recorded_at
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
            .as_str()
    );

    // Personal fields stay sealed, as in the export.
    let page = feed_until(&w, &auditor, "type=UserRegistered&limit=1000", 3).await;
    let registered = page["items"].as_array().unwrap();
    assert_eq!(registered.len(), 3, "{page}");
    assert!(
        registered
            .iter()
            .all(|i| i["payload"]["UserRegistered"]["email"]["aes256gcm"].is_string()),
        "{page}"
    );
    assert!(!page.to_string().contains("bob@example.com"));

    // Paging by type never repeats; the end of the feed answers an empty page whose
    // `next` still moves forward.
    let mut after = String::new();
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (status, page) = w
            .send(
                "GET",
                &format!("/v1/feed?type=UserRegistered&type=FileCreated&limit=1&after={after}"),
                &w.admin,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        after = page["next"].as_str().unwrap().to_string();
        seen.extend(page["items"].as_array().unwrap().iter().map(key));
        if page["items"].as_array().unwrap().is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");

    let (status, body) = w.send("GET", "/v1/feed", &user).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, _) = w.send("GET", "/v1/feed/stream", &user).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for query in [
        "limit=0",
        "limit=1001",
        "after=bm90LWEtY3Vyc29y",
        "aggregate_id=x",
        "limit=1&limit=2",
    ] {
        let (status, body) = w.send("GET", &format!("/v1/feed?{query}"), &auditor).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{query}: {body}"
        );
    }
    let (status, _) = w
        .send("GET", "/v1/feed/stream?after=bm90LWEtY3Vyc29y", &auditor)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // `Last-Event-ID` wins over `after` (an EventSource reconnects to its first URL with
    // the header), but a malformed `after` beside a good header is still refused.
    let good = after.clone();
    for (query, status) in [
        ("after=bm90LWEtY3Vyc29y", StatusCode::BAD_REQUEST),
        ("after=", StatusCode::OK),
        ("", StatusCode::OK),
    ] {
        let r =
            w.t.http
                .get(format!("{}/v1/feed/stream?{query}", w.t.base))
                .bearer_auth(&auditor.token)
                .header("last-event-id", &good)
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), status, "{query}");
        if status == StatusCode::BAD_REQUEST {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "bad_request");
        }
    }

    // Another tenant's cursor is refused.
    let other = World::new(&[]).await;
    let (status, theirs) = other.send("GET", "/v1/feed", &other.admin).await;
    assert_eq!(status, StatusCode::OK, "{theirs}");
    let (status, _) = w
        .send(
            "GET",
            &format!("/v1/feed?after={}", theirs["next"].as_str().unwrap()),
            &auditor,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
