//! No single event stops a projector for everyone (issue 11, defect 1): what Postgres
//! cannot store is made storable; an event a projector cannot apply is retried, parked,
//! shown (status, /metrics, /health/ready), re-applied by `retry-parked` after the fix,
//! and reported by a rebuild.

use std::time::Duration;

use chronicle::app::Mode;
use chronicle::config::ProjectorRetry;
use chronicle::ids::TenantId;
use chronicle::projections::runtime::{self, BatchOutcome};
use chronicle::projections::{self, rebuild::rebuild, retry::retry_parked, status::status};
use chronicle::store::verify::verify_chains;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{TestApp, TestDb, eventually, eventually_within, redis_url, table_contents};
use crate::versioning::insert_as_old_binary;

/// Retries that end in a second: what tests use instead of the 5 × 1 s default.
fn quick() -> ProjectorRetry {
    ProjectorRetry {
        max_attempts: 3,
        base_delay: Duration::from_millis(40),
        max_delay: Duration::from_millis(200),
    }
}

/// A plain event for `tenant`, as any writer may append it.
async fn append(pool: &PgPool, tenant: Uuid, stream: &str, sequence: i64) {
    append_in(pool, tenant, stream, sequence).await
}

/// Events appended in one transaction: they become visible to projectors together.
async fn append_together(pool: &PgPool, events: &[(Uuid, &str)]) {
    let mut tx = pool.begin().await.unwrap();
    for (tenant, stream) in events {
        append_in(&mut *tx, *tenant, stream, 1).await;
    }
    tx.commit().await.unwrap();
}

async fn append_in(conn: impl sqlx::PgExecutor<'_>, tenant: Uuid, stream: &str, sequence: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, tenant_id)
         VALUES ('load', $1, $2, 'Loaded', '1', '{\"Loaded\":{}}', $3::json, $4)",
    )
    .bind(stream)
    .bind(sequence)
    .bind(format!(r#"{{"actor":"system:test","tenant_id":"{tenant}","hash":"h-{stream}-{sequence}"}}"#))
    .bind(tenant)
    .execute(conn)
    .await
    .unwrap();
}

/// The read test's "future bug": the audit log refuses the rows of one stream.
async fn refuse_stream(owner: &PgPool, stream: &str) {
    sqlx::query(&format!(
        "ALTER TABLE audit_logs ADD CONSTRAINT refuse_poison CHECK (target_id <> '{stream}')"
    ))
    .execute(owner)
    .await
    .unwrap();
}

async fn audit_targets(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT target_id FROM audit_logs ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn failure_rows(pool: &PgPool) -> Vec<(String, i64, String, i32)> {
    sqlx::query_as(
        "SELECT projector, global_position, state, attempts FROM projector_failures ORDER BY projector, global_position",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn position_of(pool: &PgPool, stream: &str) -> i64 {
    sqlx::query_scalar("SELECT global_position FROM events WHERE aggregate_id = $1")
        .bind(stream)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_nul_in_a_logged_payload_projects_everywhere_as_a_replacement_character() {
    let db = TestDb::new().await;
    let all = projections::all();
    runtime::register(&db.worker, &all).await.unwrap();
    let (tenant, owner, file, upload) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    // As a binary without the edge check wrote them: tus metadata `filename AG51bC50eHQ=`.
    insert_as_old_binary(
        &db.owner,
        tenant,
        "upload",
        &upload.to_string(),
        &[(
            "UploadStarted",
            "1",
            json!({"UploadStarted": {
            "expires_at": "2030-01-01T00:00:00Z", "filename": "\u{0}nul.txt",
            "filetype": "text/plain", "length": 5, "max_size": 1000,
            "owner_id": owner.to_string(),
            "target": {"file_id": file.to_string(), "new_file": true},
            "temp_key": format!("tmp/{tenant}/{upload}")}}),
        )],
    )
    .await;
    insert_as_old_binary(&db.owner, tenant, "file", &file.to_string(), &[
        ("FileCreated", "1", json!({"FileCreated": {"display_name": "\u{0}nul.txt", "owner_id": owner.to_string()}})),
        ("Renamed", "1", json!({"Renamed": {"display_name": "a\u{0}b"}})),
    ])
    .await;
    let stored: String =
        sqlx::query_scalar("SELECT payload::text FROM events WHERE aggregate_type = 'upload'")
            .fetch_one(&db.owner)
            .await
            .unwrap();
    assert!(stored.contains(r"\u0000nul.txt"), "{stored}");
    // Another tenant's event after them.
    append(&db.owner, Uuid::now_v7(), "after", 1).await;

    for p in &all {
        runtime::catch_up_with(&db.worker, p.as_ref(), &quick())
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", p.name()));
    }
    assert_eq!(failure_rows(&db.owner).await, vec![], "nothing parked");
    for s in status(&db.worker).await.unwrap() {
        assert_eq!(
            (s.name.as_str(), s.lag_events, s.parked_events),
            (s.name.as_str(), 0, 0)
        );
    }
    let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
    assert!(runtime::caught_up(&db.worker, &names).await.unwrap());

    let filename: String = sqlx::query_scalar(
        "SELECT details->'UploadStarted'->>'filename' FROM audit_logs WHERE action = 'upload.started'",
    )
    .fetch_one(&db.owner)
    .await
    .unwrap();
    assert_eq!(filename, "\u{fffd}nul.txt");
    let name: String = sqlx::query_scalar("SELECT display_name FROM files WHERE id = $1")
        .bind(file)
        .fetch_one(&db.owner)
        .await
        .unwrap();
    assert_eq!(name, "a\u{fffd}b");
    let uploads: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads WHERE id = $1")
        .bind(upload)
        .fetch_one(&db.owner)
        .await
        .unwrap();
    assert_eq!(uploads, 1);

    // Deterministic: a rebuild writes the same rows; the log itself is untouched.
    let tables = ["audit_logs", "files", "uploads", "notification_recipients"];
    let mut live = Vec::new();
    for t in tables {
        live.push(table_contents(&db.owner, t).await);
    }
    for p in projections::all() {
        assert!(rebuild(&db.worker, p).await.unwrap().parked.is_empty());
    }
    for (t, rows) in tables.iter().zip(live) {
        assert_eq!(table_contents(&db.owner, t).await, rows, "{t}");
    }
    let report = verify_chains(&db.owner, Some(TenantId(tenant)))
        .await
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.breaks);
}

#[tokio::test]
async fn a_poison_event_is_retried_then_parked_while_every_other_event_projects() {
    let db = TestDb::new().await;
    let audit = projections::by_name("audit_logs").unwrap();
    runtime::register(&db.worker, std::slice::from_ref(&audit))
        .await
        .unwrap();
    refuse_stream(&db.owner, "poison").await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    append_together(
        &db.owner,
        &[(a, "a-1"), (a, "poison"), (a, "a-2"), (b, "b-1")],
    )
    .await;
    let poison = position_of(&db.owner, "poison").await;
    let policy = quick();

    // The event before the poison commits with its checkpoint; the poison is recorded.
    // (Idle until every older transaction of the cluster, other tests' too, has ended.)
    let first = eventually_within(
        "a batch past the horizon",
        Duration::from_secs(20),
        async || match runtime::run_batch_with(&db.worker, audit.as_ref(), &policy)
            .await
            .unwrap()
        {
            BatchOutcome::Idle => None,
            outcome => Some(outcome),
        },
    )
    .await;
    assert_eq!(first, BatchOutcome::Applied(1));
    assert_eq!(audit_targets(&db.owner).await, ["a-1"]);
    assert_eq!(
        failure_rows(&db.owner).await,
        [("audit_logs".to_string(), poison, "failing".to_string(), 1)]
    );
    let error: String = sqlx::query_scalar("SELECT error FROM projector_failures")
        .fetch_one(&db.owner)
        .await
        .unwrap();
    assert!(
        error.contains("refuse_poison") && error.contains("23514"),
        "{error}"
    );
    // Then it backs off…
    let second = runtime::run_batch_with(&db.worker, audit.as_ref(), &policy)
        .await
        .unwrap();
    assert!(
        matches!(second, BatchOutcome::Backoff(d) if d <= policy.max_delay),
        "{second:?}"
    );
    let s = &status(&db.worker).await.unwrap()[0];
    assert_eq!((s.failing_events, s.parked_events, s.lag_events), (1, 0, 3));

    // …retries, and parks it after the third attempt; everything after it projects.
    runtime::catch_up_with(&db.worker, audit.as_ref(), &policy)
        .await
        .unwrap();
    assert_eq!(audit_targets(&db.owner).await, ["a-1", "a-2", "b-1"]);
    assert_eq!(
        failure_rows(&db.owner).await,
        [("audit_logs".to_string(), poison, "parked".to_string(), 3)]
    );
    let s = &status(&db.worker).await.unwrap()[0];
    assert_eq!((s.failing_events, s.parked_events, s.lag_events), (0, 1, 0));
    assert_eq!(s.events_processed, 3);
    // A later event projects at once: the parked one no longer holds anything up.
    append(&db.owner, b, "b-2", 1).await;
    runtime::catch_up_with(&db.worker, audit.as_ref(), &policy)
        .await
        .unwrap();
    assert_eq!(audit_targets(&db.owner).await, ["a-1", "a-2", "b-1", "b-2"]);
    // Jobs that trust a row's absence do not trust this projection meanwhile.
    assert!(
        !runtime::caught_up(&db.worker, &["audit_logs"])
            .await
            .unwrap()
    );

    // Still broken: retry-parked keeps it parked, one more attempt.
    let report = retry_parked(&db.worker, audit.clone()).await.unwrap();
    assert_eq!((report.applied(), report.still_parked()), (0, 1));
    assert_eq!(failure_rows(&db.owner).await[0].3, 4);
    // The fix; then it applies, in its own transaction with its failure row.
    sqlx::query("ALTER TABLE audit_logs DROP CONSTRAINT refuse_poison")
        .execute(&db.owner)
        .await
        .unwrap();
    let report = retry_parked(&db.worker, audit.clone()).await.unwrap();
    assert_eq!((report.applied(), report.still_parked()), (1, 0));
    assert_eq!(report.events[0].event.position.global_position, poison);
    assert_eq!(failure_rows(&db.owner).await, vec![]);
    let mut targets = audit_targets(&db.owner).await;
    targets.sort();
    assert_eq!(targets, ["a-1", "a-2", "b-1", "b-2", "poison"]);
    let s = &status(&db.worker).await.unwrap()[0];
    assert_eq!(
        (s.parked_events, s.lag_events, s.events_processed),
        (0, 0, 5)
    );
    assert!(
        runtime::caught_up(&db.worker, &["audit_logs"])
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn an_unreadable_event_is_parked_by_every_projector_and_the_rest_projects() {
    let db = TestDb::new().await;
    let all = projections::all();
    runtime::register(&db.worker, &all).await.unwrap();
    let tenant = Uuid::now_v7();
    append(&db.owner, tenant, "before", 1).await;
    // A version no upcaster knows (written by a newer binary, say).
    insert_as_old_binary(&db.owner, tenant, "user", &Uuid::now_v7().to_string(), &[(
        "UserRegistered",
        "9",
        json!({"UserRegistered": {"email": "x@example.com", "handle": "xx", "name": "X", "role": "user"}}),
    )])
    .await;
    append(&db.owner, tenant, "after", 1).await;
    let unreadable: i64 =
        sqlx::query_scalar("SELECT global_position FROM events WHERE event_version = '9'")
            .fetch_one(&db.owner)
            .await
            .unwrap();
    for p in &all {
        runtime::catch_up_with(&db.worker, p.as_ref(), &quick())
            .await
            .unwrap();
    }
    let rows = failure_rows(&db.owner).await;
    assert_eq!(rows.len(), all.len(), "{rows:?}");
    assert!(
        rows.iter().all(|r| r.1 == unreadable && r.2 == "parked"),
        "{rows:?}"
    );
    assert_eq!(audit_targets(&db.owner).await, ["before", "after"]);
    let error: String = sqlx::query_scalar("SELECT error FROM projector_failures LIMIT 1")
        .fetch_one(&db.owner)
        .await
        .unwrap();
    assert!(
        error.contains("unreadable event") && error.contains("upcaster"),
        "{error}"
    );
}

#[tokio::test]
async fn a_rebuild_with_a_poison_event_completes_and_reports_it() {
    let db = TestDb::new().await;
    let audit = projections::by_name("audit_logs").unwrap();
    runtime::register(&db.worker, std::slice::from_ref(&audit))
        .await
        .unwrap();
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    append(&db.owner, a, "a-1", 1).await;
    append(&db.owner, a, "poison", 1).await;
    append(&db.owner, b, "b-1", 1).await;
    runtime::catch_up(&db.worker, audit.as_ref()).await.unwrap();
    // The bug ships after these events were projected; a rebuild meets it.
    sqlx::query("DELETE FROM audit_logs WHERE target_id = 'poison'")
        .execute(&db.owner)
        .await
        .unwrap();
    refuse_stream(&db.owner, "poison").await;
    let poison = position_of(&db.owner, "poison").await;

    let report = rebuild(&db.worker, audit.clone()).await.unwrap();
    assert_eq!(report.events, 2);
    assert_eq!(report.parked.len(), 1);
    assert_eq!(report.parked[0].event.position.global_position, poison);
    assert!(
        report.parked[0].error.contains("refuse_poison"),
        "{:?}",
        report.parked
    );
    assert_eq!(audit_targets(&db.owner).await, ["a-1", "b-1"]);
    assert_eq!(
        failure_rows(&db.owner).await,
        [("audit_logs".to_string(), poison, "parked".to_string(), 1)]
    );
    let s = &status(&db.worker).await.unwrap()[0];
    assert_eq!((s.lag_events, s.parked_events), (0, 1));
    // Rebuilding again (still broken) records it once, not twice.
    let again = rebuild(&db.worker, audit.clone()).await.unwrap();
    assert_eq!(again.parked.len(), 1);
    assert_eq!(failure_rows(&db.owner).await.len(), 1);
}

/// The CLI, as an operator runs it against this database.
fn chronicle(db_url: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .envs(crate::common::pooler_env(db_url))
        .env("REDIS_URL", redis_url())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_instance_parks_shows_and_after_the_fix_retry_parked_applies_it() {
    let t = TestApp::spawn(
        Mode::Serve,
        &[
            ("PROJECTOR_MAX_ATTEMPTS", "3"),
            ("PROJECTOR_RETRY_BASE_MS", "40"),
        ],
    )
    .await;
    let db = &t.db;
    refuse_stream(&db.owner, "poison").await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    append(&db.owner, a, "poison", 1).await;
    append(&db.owner, b, "b-1", 1).await;
    append(&db.owner, b, "b-2", 2).await;

    eventually("the poison is parked and tenant b projected", async || {
        let parked = failure_rows(&db.owner).await.first().map(|r| r.2.clone());
        parked.as_deref() == Some("parked") && audit_targets(&db.owner).await.len() == 2
    })
    .await;
    assert_eq!(failure_rows(&db.owner).await[0].3, 3);

    let metrics = t.metrics().await;
    assert!(
        metrics.contains(r#"chronicle_projector_parked_events{projector="audit_logs"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"chronicle_projector_parked_events{projector="files"} 0"#));
    assert!(metrics.contains(r#"chronicle_projector_failing_events{projector="audit_logs"} 0"#));
    let ready = t.http.get(t.url("/health/ready")).send().await.unwrap();
    assert_eq!(
        ready.status(),
        200,
        "a parked event does not make an instance unready"
    );
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["projection_failures"],
        json!([{"projector": "audit_logs", "parked_events": 1, "failing_events": 0}])
    );

    // The API role sees counts, not other tenants' failing events.
    assert!(
        sqlx::query("SELECT 1 FROM projector_failures")
            .fetch_all(&db.app)
            .await
            .is_err()
    );

    let (ok, out) = chronicle(&db.url, &["projections", "status"]);
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.starts_with("audit_logs")).unwrap();
    assert!(line.contains("(lag excludes parked events)"), "{out}");
    assert!(
        line.split_whitespace().nth(6) == Some("1"),
        "parked column: {out}"
    );
    assert!(
        out.contains("audit_logs parked position") && out.contains("refuse_poison"),
        "{out}"
    );

    let (ok, out) = chronicle(&db.url, &["projections", "retry-parked", "audit_logs"]);
    assert!(!ok, "still failing: exit 1\n{out}");
    assert!(out.contains("0 applied, 1 still parked"), "{out}");

    sqlx::query("ALTER TABLE audit_logs DROP CONSTRAINT refuse_poison")
        .execute(&db.owner)
        .await
        .unwrap();
    let (ok, out) = chronicle(&db.url, &["projections", "retry-parked", "--all"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("audit_logs: 1 applied, 0 still parked"),
        "{out}"
    );
    assert_eq!(failure_rows(&db.owner).await, vec![]);
    assert_eq!(audit_targets(&db.owner).await.len(), 3);
    let metrics = t.metrics().await;
    assert!(
        metrics.contains(r#"chronicle_projector_parked_events{projector="audit_logs"} 0"#),
        "{metrics}"
    );
    let body: Value = t
        .http
        .get(t.url("/health/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["projection_failures"], json!([]));
}
