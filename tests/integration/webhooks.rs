//! Webhooks against a real receiver (tests/webhook_receiver.py, a Python HTTP server):
//! every request verifies with the `standardwebhooks` package; a receiver that fails at
//! first gets every event afterwards, in commit order, each delivered once; the delivery
//! log and redelivery; a run of failures disables the endpoint; URLs at loopback,
//! private addresses or names resolving to loopback are refused unless allowlisted.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chronicle::aggregates::FileCommand;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{
    TempDir, eventually, eventually_explained, hang_up_over, median_of_three, raw_request,
    table_contents,
};
use crate::files_api::World;

const LOOPBACK: &[(&str, &str)] = &[
    ("WEBHOOK_CONCURRENCY", "2"),
    ("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8,::1/128"),
    ("WEBHOOK_RETRY_BASE_MS", "50"),
    ("WEBHOOK_RETRY_MAX_MS", "400"),
];

fn script() -> String {
    format!("{}/tests/webhook_receiver.py", env!("CARGO_MANIFEST_DIR"))
}

/// The Python receiver, killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Receiver {
    fn start(fail_first: u32) -> Receiver {
        let dir = TempDir::new();
        let log = dir.0.join("requests.jsonl");
        let mut child = Command::new("python3")
            .arg(script())
            .arg("serve")
            .arg("--log")
            .arg(&log)
            .arg("--fail-first")
            .arg(fail_first.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the receiver prints its port");
        Receiver {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// What `standardwebhooks` says of every request received so far.
    fn verify(&self, secret: &str) -> Value {
        let out = Command::new("python3")
            .arg(script())
            .arg("verify")
            .arg("--log")
            .arg(&self.log)
            .arg("--secret")
            .arg(secret)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn create(w: &World, url: &str, types: Value) -> (StatusCode, Value) {
    w.send_json(
        "POST",
        "/v1/webhooks",
        &w.admin,
        Some(json!({"url": url, "event_types": types})),
    )
    .await
}

/// The tenant's global positions from the event `from` on, in catch-up order.
async fn positions_from(w: &World, from: i64) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT global_position FROM events
          WHERE tenant_id = $1 AND (transaction_id, global_position) >=
                (SELECT transaction_id, global_position FROM events WHERE global_position = $2)
          ORDER BY transaction_id, global_position",
    )
    .bind(w.tenant)
    .bind(from)
    .fetch_all(&w.t.db.owner)
    .await
    .unwrap()
}

async fn created_position(w: &World, endpoint: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT global_position FROM events
          WHERE tenant_id = $1 AND aggregate_type = 'webhook_endpoint' AND aggregate_id = $2
            AND sequence = 1",
    )
    .bind(w.tenant)
    .bind(endpoint)
    .fetch_one(&w.t.db.owner)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_failing_at_first_gets_every_event_in_order_verified_by_standardwebhooks() {
    let w = World::new(LOOPBACK).await;
    let receiver = Receiver::start(6);
    let (status, endpoint) = create(&w, &receiver.url(), json!(["*"])).await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    let secret = endpoint["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let id = endpoint["id"].as_str().unwrap().to_string();
    // The secret is shown once: never in a listing, never in the event log.
    let (_, listed) = w.send("GET", "/v1/webhooks", &w.admin).await;
    assert!(!listed.to_string().contains(&secret));
    let in_log: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%'")
            .bind(&secret[6..])
            .fetch_one(&w.t.db.owner)
            .await
            .unwrap();
    assert_eq!(in_log, 0);

    // Events from several writers while the receiver is failing.
    let user = w.join("bob", "user").await;
    let mut files = Vec::new();
    for i in 0..3 {
        files.push(w.create(&user, &format!("f{i}")).await);
    }
    let writers: Vec<_> = files
        .iter()
        .map(|f| {
            let (w, f) = (&w, *f);
            async move {
                for n in 0..4 {
                    w.run(
                        f,
                        FileCommand::Rename {
                            display_name: format!("r{n}"),
                        },
                    )
                    .await;
                }
            }
        })
        .collect();
    futures::future::join_all(writers).await;

    let expected = positions_from(&w, created_position(&w, &id).await).await;
    assert!(expected.len() >= 3 + 12, "{expected:?}");
    eventually(
        &format!("{} deliveries answered 204", expected.len()),
        async || {
            let delivered = receiver
                .requests()
                .iter()
                .filter(|r| r["status"] == 204)
                .count();
            delivered >= expected.len()
        },
    )
    .await;
    // Give a buggy dispatcher the chance to send something twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let summary = receiver.verify(&secret);
    assert_eq!(summary["rejected"], json!([]), "{summary}");
    assert_eq!(
        summary["verified"].as_u64().unwrap() as usize,
        receiver.requests().len(),
        "every request verifies"
    );
    let positions: Vec<i64> = summary["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    assert_eq!(positions, expected, "every event once, in commit order");
    let failed = receiver
        .requests()
        .iter()
        .filter(|r| r["status"] == 500)
        .count();
    assert_eq!(failed, 6, "the first six attempts failed and were retried");

    // The delivery log: all delivered; the first one needed seven attempts.
    let (status, log) = w
        .send(
            "GET",
            &format!("/v1/webhooks/{id}/deliveries?limit=200"),
            &w.admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), expected.len());
    assert!(items.iter().all(|d| d["status"] == "delivered"
        && d["last_status_code"] == 204
        && d["last_latency_ms"].is_i64()));
    let first = items.last().unwrap();
    assert_eq!(first["attempts"], 7, "{first}");
    assert_eq!(first["position"], expected[0]);

    // Manual redelivery: the same webhook-id arrives again.
    let delivery = first["id"].as_str().unwrap();
    let (status, _) = w
        .send(
            "POST",
            &format!("/v1/webhooks/{id}/deliveries/{delivery}/redeliver"),
            &w.admin,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let message_id = format!("msg_{}", Uuid::parse_str(delivery).unwrap().simple());
    crate::common::eventually("the delivery is sent again", async || {
        receiver
            .requests()
            .iter()
            .filter(|r| r["headers"]["webhook-id"] == message_id.as_str() && r["status"] == 204)
            .count()
            >= 2
    })
    .await;
    let (status, _) = w
        .send(
            "POST",
            &format!("/v1/webhooks/{id}/deliveries/{}/redeliver", Uuid::now_v7()),
            &w.admin,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Only admins manage webhooks.
    let (status, _) = w.send("GET", "/v1/webhooks", &user).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_run_of_failures_disables_the_endpoint() {
    let mut overrides = LOOPBACK.to_vec();
    overrides.push(("WEBHOOK_DISABLE_AFTER", "3"));
    let w = World::new(&overrides).await;
    let receiver = Receiver::start(1_000_000);
    let (status, endpoint) = create(&w, &receiver.url(), json!(["*"])).await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    let id = endpoint["id"].as_str().unwrap().to_string();
    let view = w
        .get_until(&format!("/v1/webhooks/{id}"), &w.admin, |v| {
            v["enabled"] == false
        })
        .await;
    assert!(
        view["disabled_reason"]
            .as_str()
            .unwrap()
            .starts_with("3 deliveries failed in a row"),
        "{view}"
    );
    let automatic: bool = sqlx::query_scalar(
        "SELECT (payload->'WebhookEndpointDisabled'->>'automatic')::boolean FROM events
          WHERE tenant_id = $1 AND aggregate_id = $2 AND event_type = 'WebhookEndpointDisabled'",
    )
    .bind(w.tenant)
    .bind(&id)
    .fetch_one(&w.t.db.owner)
    .await
    .unwrap();
    assert!(automatic);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        receiver.requests().len(),
        3,
        "nothing is sent once disabled"
    );

    // Enabled again by an admin, it resumes.
    let (status, body) = w
        .send_json(
            "PATCH",
            &format!("/v1/webhooks/{id}"),
            &w.admin,
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!((status, &body["enabled"]), (StatusCode::OK, &json!(true)));
    eventually("deliveries resumed", async || receiver.requests().len() > 3).await;
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_allowlisted() {
    let w = World::new(&[]).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "http://[::ffff:127.0.0.1]:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://2130706433:9/",
    ] {
        let (status, body) = create(&w, url, json!(["*"])).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")),
            "{url}: {body}"
        );
    }
    for (url, types) in [
        ("ftp://example.com/", json!(["*"])),
        ("https://u:p@example.com/", json!(["*"])),
        ("https://example.com/", json!([])),
    ] {
        let (status, _) = create(&w, url, types).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}");
    }
    let none: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE tenant_id = $1 AND aggregate_type = 'webhook_endpoint'",
    )
    .bind(w.tenant)
    .fetch_one(&w.t.db.owner)
    .await
    .unwrap();
    assert_eq!(none, 0, "nothing recorded");

    let allowed = World::new(&[("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8,::1/128")]).await;
    for url in ["http://127.0.0.1:9/hook", "http://localhost:9/hook"] {
        let (status, body) = create(&allowed, url, json!(["FileCreated"])).await;
        assert_eq!(status, StatusCode::CREATED, "{url}: {body}");
    }
    let (status, _) = create(&allowed, "http://10.0.0.1/hook", json!(["*"])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// What the tenant's endpoints and their secrets say, for the hang-up test.
#[derive(Debug, sqlx::FromRow)]
struct Endpoints {
    created: i64,
    changed: i64,
    deleted: i64,
    /// Secrets of no live endpoint (deleted, or never created).
    stray_secrets: i64,
    /// Live endpoints without their secret.
    without_secret: i64,
    /// Endpoints whose URL changed and were not disabled with it (each change the test
    /// makes is one `PATCH` of both).
    half_changed: i64,
}

impl Endpoints {
    async fn read(w: &World) -> Endpoints {
        sqlx::query_as(
            "WITH e AS (SELECT aggregate_id::uuid AS id, event_type FROM events
                         WHERE tenant_id = $1 AND aggregate_type = 'webhook_endpoint'),
                  created AS (SELECT id FROM e WHERE event_type = 'WebhookEndpointCreated'),
                  deleted AS (SELECT id FROM e WHERE event_type = 'WebhookEndpointDeleted'),
                  live AS (SELECT id FROM created EXCEPT SELECT id FROM deleted),
                  secrets AS (SELECT endpoint_id AS id FROM webhook_secrets WHERE tenant_id = $1)
             SELECT (SELECT count(*) FROM created) AS created,
                    (SELECT count(*) FROM e WHERE event_type = 'WebhookEndpointUpdated') AS changed,
                    (SELECT count(*) FROM deleted) AS deleted,
                    (SELECT count(*) FROM (SELECT id FROM secrets EXCEPT SELECT id FROM live) s)
                      AS stray_secrets,
                    (SELECT count(*) FROM (SELECT id FROM live EXCEPT SELECT id FROM secrets) l)
                      AS without_secret,
                    (SELECT count(*) FROM (SELECT id FROM e GROUP BY id
                       HAVING count(*) FILTER (WHERE event_type = 'WebhookEndpointUpdated')
                           <> count(*) FILTER (WHERE event_type = 'WebhookEndpointDisabled')) h)
                      AS half_changed",
        )
        .bind(w.tenant)
        .fetch_one(&w.t.db.owner)
        .await
        .unwrap()
    }

    /// Waits until no change is left half made, and returns what it then sees.
    async fn settled(w: &World, what: &str) -> Endpoints {
        eventually_explained(what, Duration::from_secs(10), async || {
            let seen = Endpoints::read(w).await;
            match seen {
                Endpoints {
                    stray_secrets: 0,
                    without_secret: 0,
                    half_changed: 0,
                    ..
                } => Ok(seen),
                _ => Err(format!("{seen:?}")),
            }
        })
        .await
    }
}

const CUTS: u32 = 100;

#[tokio::test]
async fn an_admin_hanging_up_never_leaves_an_endpoint_half_changed() {
    // Creating an endpoint stores its secret, then commits the endpoint; changing one
    // commits its URL, then its `enabled`; deleting one commits the deletion, then
    // deletes the secret. A client that hangs up makes hyper drop its request wherever
    // it waits: between two steps, a secret stayed that no endpoint uses, a change was
    // half made, or a deleted endpoint kept its secret. Each runs to its end
    // (`commands::to_the_end`).
    let w = World::new(&[("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8")]).await;
    let bearer = format!("Bearer {}", w.admin.token);
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let body = json!({"url": "http://127.0.0.1:9/hook", "event_types": ["*"]}).to_string();
    let creation = raw_request(&w.t, "POST /v1/webhooks", &headers, body.as_bytes());
    let whole = median_of_three(&w.t, 201, async |_| creation.clone()).await;
    let answered = hang_up_over(
        &w.t,
        "creations",
        (whole, Duration::ZERO),
        &vec![creation; CUTS as usize],
    )
    .await;
    let seen = Endpoints::settled(&w, "every secret has its endpoint").await;
    assert!(
        seen.created >= 3 + answered,
        "every answered creation: {seen:?}"
    );

    let mut ids = Vec::new();
    for _ in 0..3 + CUTS {
        let (status, endpoint) = create(&w, "http://127.0.0.1:9/hook", json!(["*"])).await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(endpoint["id"].as_str().unwrap().to_string());
    }
    let body = json!({"url": "http://127.0.0.1:10/hook", "enabled": false}).to_string();
    let change = |id: &str| {
        let line = format!("PATCH /v1/webhooks/{id}");
        raw_request(&w.t, &line, &headers, body.as_bytes())
    };
    let whole = median_of_three(&w.t, 200, async |i| change(&ids[i as usize])).await;
    let requests: Vec<_> = ids[3..].iter().map(|id| change(id)).collect();
    let answered = hang_up_over(&w.t, "changes", (whole, Duration::ZERO), &requests).await;
    let seen = Endpoints::settled(&w, "every change made whole").await;
    assert!(
        seen.changed >= 3 + answered,
        "every answered change: {seen:?}"
    );

    let deletion = |id: &str| {
        let line = format!("DELETE /v1/webhooks/{id}");
        raw_request(&w.t, &line, &headers, b"")
    };
    let whole = median_of_three(&w.t, 204, async |i| deletion(&ids[i as usize])).await;
    let requests: Vec<_> = ids[3..].iter().map(|id| deletion(id)).collect();
    let answered = hang_up_over(&w.t, "deletions", (whole, Duration::ZERO), &requests).await;
    let seen = Endpoints::settled(&w, "no deleted endpoint keeps its secret").await;
    assert!(
        seen.deleted >= 3 + answered,
        "every answered deletion: {seen:?}"
    );
}

/// Deliveries per second to a local receiver (an in-process HTTP server answering 204),
/// end to end: N events committed at once, then projected into the outbox and sent;
/// one endpoint (sequential: order) and four endpoints (in parallel). Figures for
/// docs/benchmarks.md: `cargo test --test integration webhook_deliveries_per_second
/// -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark"]
async fn webhook_deliveries_per_second() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const EVENTS: i64 = 2000;
    for endpoints in [1usize, 4] {
        let w = World::new(LOOPBACK).await;
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        for _ in 0..endpoints {
            let (status, body) = create(
                &w,
                &format!("http://127.0.0.1:{port}/hook"),
                json!(["Loaded"]),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        // Let the projector see the endpoints before the events.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = std::time::Instant::now();
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, tenant_id)
             SELECT 'load', 'bench-' || g, 1, 'Loaded', '1', '{\"Loaded\":{}}',
                    json_build_object('actor', 'system:test', 'tenant_id', $1::text, 'hash', 'h' || g), $1
               FROM generate_series(1, $2) g",
        )
        .bind(w.tenant)
        .bind(EVENTS)
        .execute(&w.t.db.owner)
        .await
        .unwrap();
        let want = EVENTS as usize * endpoints;
        crate::common::eventually_within(
            "every delivery arrives",
            Duration::from_secs(300),
            async || (received.load(Ordering::Relaxed) >= want).then_some(()),
        )
        .await;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "webhooks: {endpoints} endpoint(s), {want} deliveries in {secs:.2} s = {:.0} deliveries/s",
            want as f64 / secs
        );
    }
}

/// The tenant's admins — and only they — are told when the dispatcher disables an
/// endpoint: listed, unread until marked read, naming the endpoint and the reason; an
/// admin's own disable tells no one; a rebuild of the projection gives the same rows.
#[tokio::test]
async fn an_automatic_disable_notifies_every_admin_and_no_one_else() {
    let mut overrides = LOOPBACK.to_vec();
    overrides.push(("WEBHOOK_DISABLE_AFTER", "2"));
    let w = World::new(&overrides).await;
    let second_admin = w.join("bea", "admin").await;
    let user = w.join("cyd", "user").await;
    let demoted = w.join("dan", "admin").await;
    let (status, _) = w
        .send_json(
            "PUT",
            &format!("/v1/users/{}/role", demoted.id),
            &w.admin,
            Some(json!({"role": "user"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let receiver = Receiver::start(1_000_000);
    let (status, endpoint) = create(&w, &receiver.url(), json!(["*"])).await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    let id = endpoint["id"].as_str().unwrap().to_string();
    let told = |page: &Value| -> Vec<Value> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "webhook_disabled")
            .cloned()
            .collect()
    };
    for admin in [&w.admin, &second_admin] {
        let page = w
            .get_until("/v1/notifications", admin, |p| told(p).len() == 1)
            .await;
        let n = &told(&page)[0];
        assert_eq!(n["details"]["endpoint_id"], id.as_str(), "{n}");
        assert!(
            n["details"]["reason"]
                .as_str()
                .unwrap()
                .starts_with("2 deliveries failed in a row"),
            "{n}"
        );
        assert!(n["message"].as_str().unwrap().contains(&id), "{n}");
        for field in [
            "file_id",
            "file_name",
            "version_number",
            "status",
            "read_at",
        ] {
            assert!(n[field].is_null(), "{field}: {n}");
        }
        assert!(page["unread_count"].as_i64().unwrap() >= 1);
    }
    // Marked read by one admin: read for that admin only.
    let page = w.get_until("/v1/notifications", &w.admin, |_| true).await;
    let mine = told(&page)[0]["id"].as_str().unwrap().to_string();
    let (status, _) = w
        .send("POST", &format!("/v1/notifications/{mine}/read"), &w.admin)
        .await;
    assert!(status.is_success(), "{status}");
    w.get_until("/v1/notifications", &w.admin, |p| {
        !told(p)[0]["read_at"].is_null()
    })
    .await;
    let (_, theirs) = w.send("GET", "/v1/notifications", &second_admin).await;
    assert!(told(&theirs)[0]["read_at"].is_null(), "{theirs}");

    // A user, and an admin demoted before the disable, are not told.
    for who in [&user, &demoted] {
        let (status, page) = w.send("GET", "/v1/notifications", who).await;
        assert_eq!(status, StatusCode::OK);
        assert!(told(&page).is_empty(), "{page}");
    }

    // An admin's own disable (after re-enabling) adds nothing.
    for enabled in [true, false] {
        let (status, _) = w
            .send_json(
                "PATCH",
                &format!("/v1/webhooks/{id}"),
                &w.admin,
                Some(json!({"enabled": enabled})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    eventually("the manual disable is projected", async || {
        sqlx::query_scalar(
            "SELECT (c.last_transaction_id, c.last_position) >= (e.transaction_id, e.global_position)
               FROM projector_checkpoints c,
                    (SELECT transaction_id, global_position FROM events
                      WHERE tenant_id = $1 AND aggregate_id = $2
                      ORDER BY transaction_id DESC, global_position DESC LIMIT 1) e
              WHERE c.name = 'notifications'",
        )
        .bind(w.tenant)
        .bind(&id)
        .fetch_optional(&w.t.db.owner)
        .await
        .unwrap()
        .unwrap_or(false)
    })
    .await;
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM notifications WHERE kind = 'webhook_disabled'")
            .fetch_one(&w.t.db.worker)
            .await
            .unwrap();
    assert_eq!(
        rows, 2,
        "one per admin of the automatic disable, none for the manual one"
    );

    // From the log alone: a rebuild gives the same rows and the same members.
    let tables = ["notifications", "notification_members"];
    let mut before = Vec::new();
    for table in tables {
        before.push(table_contents(&w.t.db.worker, table).await);
    }
    sqlx::query("DELETE FROM notification_members")
        .execute(&w.t.db.worker)
        .await
        .unwrap();
    let projector = chronicle::projections::by_name("notifications").unwrap();
    chronicle::projections::rebuild::rebuild(&w.t.db.worker, projector)
        .await
        .unwrap();
    for (table, before) in tables.into_iter().zip(before) {
        assert_eq!(
            table_contents(&w.t.db.worker, table).await,
            before,
            "{table}"
        );
    }
}

#[tokio::test]
async fn secrets_of_deleted_or_never_created_endpoints_are_swept() {
    // Creating an endpoint stores its secret, then commits the endpoint; deleting one
    // commits the deletion, then deletes the secret. A crash between the two (or a
    // failed delete) leaves a secret no endpoint will use; the worker's sweep removes
    // it, deciding from the event log. Sweeps run every TEMP_SWEEP_AFTER_SECS / 4
    // (here 7.5 s, the first at start), so a row stored now stays through the next.
    let w = World::new(&[
        ("WORKER_CONCURRENCY", "2"),
        ("TEMP_SWEEP_AFTER_SECS", "30"),
        ("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8"),
    ])
    .await;
    let secret_of = async |id: Uuid| -> Option<String> {
        sqlx::query_scalar(
            "SELECT secret FROM webhook_secrets WHERE tenant_id = $1 AND endpoint_id = $2",
        )
        .bind(w.tenant)
        .bind(id)
        .fetch_optional(&w.t.db.owner)
        .await
        .unwrap()
    };
    let store = async |id: Uuid, age: &str| {
        sqlx::query(
            "INSERT INTO webhook_secrets (tenant_id, endpoint_id, secret, created_at)
             VALUES ($1, $2, 'whsec_AAAA', now() - $3::interval)
             ON CONFLICT (tenant_id, endpoint_id) DO UPDATE SET created_at = EXCLUDED.created_at",
        )
        .bind(w.tenant)
        .bind(id)
        .bind(age)
        .execute(&w.t.db.owner)
        .await
        .unwrap();
    };
    let endpoint = async || -> Uuid {
        let (status, body) = create(&w, "http://127.0.0.1:9/hook", json!(["*"])).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    };

    // A live endpoint whose secret is old: kept, however old.
    let live = endpoint().await;
    let live_secret = secret_of(live).await.expect("stored with the endpoint");
    store(live, "1 hour").await;
    // A deleted endpoint whose secret's delete failed: swept, however young.
    let deleted = endpoint().await;
    let (status, _) = w
        .send("DELETE", &format!("/v1/webhooks/{deleted}"), &w.admin)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(secret_of(deleted).await, None, "deleted with its endpoint");
    store(deleted, "0 seconds").await;
    // A creation that died after storing the secret: swept once older than the limit.
    let never_created = Uuid::now_v7();
    store(never_created, "1 hour").await;
    // A creation under way (its endpoint not committed yet): kept.
    let being_created = Uuid::now_v7();
    store(being_created, "0 seconds").await;

    eventually("the orphaned secrets swept", async || {
        secret_of(deleted).await.is_none() && secret_of(never_created).await.is_none()
    })
    .await;
    assert_eq!(
        secret_of(live).await,
        Some(live_secret),
        "a live endpoint keeps its secret"
    );
    assert!(
        secret_of(being_created).await.is_some(),
        "a secret younger than TEMP_SWEEP_AFTER_SECS is kept: its endpoint may be committing"
    );
}
