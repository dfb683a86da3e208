//! The projector runtime: no event skipped or applied twice under concurrent writers and
//! rollbacks; leases hand over when an instance dies; rebuilds reproduce live tables.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chronicle::aggregates::{File, FileCommand};
use chronicle::app::Mode;
use chronicle::commands;
use chronicle::ids::{TenantId, UserId};
use chronicle::projections::{self, rebuild::rebuild, runtime};
use chronicle::store::{Actor, ChronicleStore, EventLog, EventMetadata};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;

use crate::common::{TestApp, TestDb, table_contents};

const WRITERS: usize = 16;
const EVENTS: usize = 20_000;

/// One writer: transactions of 1–4 events with random pauses inside them; about one in
/// six is rolled back. Returns how many events it committed.
async fn writer(pool: PgPool, writer: usize, quota: usize, tenants: Arc<Vec<uuid::Uuid>>) -> usize {
    let mut committed = 0;
    let mut txn = 0;
    while committed < quota {
        txn += 1;
        let k = rand::random_range(1..=4usize).min(quota - committed);
        let rollback = rand::random_range(0..6u32) == 0;
        let tenant = tenants[rand::random_range(0..tenants.len())];
        let mut tx = pool.begin().await.unwrap();
        for seq in 1..=k {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, tenant_id)
                 VALUES ('load', $1, $2, 'Loaded', '1', '{\"Loaded\":{}}', $3::json, $4)",
            )
            .bind(format!("w{writer}-t{txn}"))
            .bind(seq as i64)
            .bind(format!(r#"{{"actor":"system:test","tenant_id":"{tenant}","hash":"h{writer}-{txn}-{seq}"}}"#))
            .bind(tenant)
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
        }
    }
    committed
}

async fn processed(pool: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar("SELECT events_processed FROM projector_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_with_rollbacks_project_every_committed_event_exactly_once() {
    let db = TestDb::new().await;
    let all = projections::all();
    runtime::register(&db.worker, &all).await.unwrap();

    // Two projector instances compete for the same projectors the whole time.
    let shutdown = CancellationToken::new();
    let mut instances = Vec::new();
    for _ in 0..2 {
        instances.extend(runtime::spawn_all(
            db.worker.clone(),
            // LISTEN needs a session of its own: never through the pooler.
            crate::common::direct(&db.url),
            all.clone(),
            Default::default(),
            shutdown.clone(),
        ));
    }

    let writers_pool = PgPoolOptions::new()
        .max_connections(WRITERS as u32)
        .connect(&db.url)
        .await
        .unwrap();
    let tenants = Arc::new(vec![
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
    ]);
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                writers_pool.clone(),
                w,
                EVENTS / WRITERS,
                tenants.clone(),
            ))
        })
        .collect();
    let mut committed = 0;
    for t in tasks {
        committed += t.await.unwrap();
    }
    assert_eq!(committed, EVENTS);

    crate::common::eventually_within(
        "the projector catches up",
        Duration::from_secs(120),
        async || (processed(&db.worker, "audit_logs").await >= EVENTS as i64).then_some(()),
    )
    .await;
    // Give a buggy runtime the chance to apply something twice before we look.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    for i in instances {
        i.await.unwrap();
    }

    let in_log: HashSet<i64> = sqlx::query_scalar("SELECT global_position FROM events")
        .fetch_all(&db.owner)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let projected: Vec<i64> = sqlx::query_scalar("SELECT id FROM audit_logs")
        .fetch_all(&db.worker)
        .await
        .unwrap();
    assert_eq!(
        in_log.len(),
        EVENTS,
        "exactly the committed events are in the log"
    );
    assert_eq!(projected.len(), EVENTS, "one row per committed event");
    assert_eq!(
        projected.into_iter().collect::<HashSet<_>>(),
        in_log,
        "none skipped"
    );
    assert_eq!(
        processed(&db.worker, "audit_logs").await,
        EVENTS as i64,
        "none applied twice"
    );
    let heads: i64 = sqlx::query_scalar("SELECT count(*) FROM stream_heads")
        .fetch_one(&db.worker)
        .await
        .unwrap();
    let streams: i64 = sqlx::query_scalar("SELECT count(DISTINCT aggregate_id) FROM events")
        .fetch_one(&db.owner)
        .await
        .unwrap();
    assert_eq!(heads, streams);
}

#[tokio::test]
async fn a_dead_instance_releases_its_lease() {
    let db = TestDb::new().await;
    let all = projections::all();
    runtime::register(&db.worker, &all).await.unwrap();
    let audit = projections::by_name("audit_logs").unwrap();
    let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), TenantId::new(), 100);
    let m = EventMetadata::system(store.tenant(), Actor::System("test"));
    let create = FileCommand::Create {
        owner_id: UserId::new(),
        display_name: "a".into(),
    };
    commands::execute(&store, "f1", create, &m, &())
        .await
        .unwrap();

    // Another instance is mid-batch: it holds the checkpoint row.
    let mut other = db.worker.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *other).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *other)
        .await
        .unwrap();
    sqlx::query("SELECT 1 FROM projector_checkpoints WHERE name = 'audit_logs' FOR UPDATE")
        .execute(&mut *other)
        .await
        .unwrap();
    assert_eq!(
        runtime::run_batch(&db.worker, audit.as_ref())
            .await
            .unwrap(),
        runtime::BatchOutcome::Busy
    );

    // That instance dies; its lease dies with its connection.
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&db.owner)
        .await
        .unwrap();
    crate::common::eventually_explained(
        "another instance takes the dead one's lease and applies the event",
        Duration::from_secs(10),
        async || match runtime::run_batch(&db.worker, audit.as_ref())
            .await
            .unwrap()
        {
            runtime::BatchOutcome::Applied(1) => Ok(()),
            other => Err(format!("still {other:?}")),
        },
    )
    .await;
    drop(other);
}

/// Records the size of every batch it is given, and writes nothing.
struct BatchSizes(std::sync::Mutex<Vec<usize>>);

#[async_trait::async_trait]
impl projections::Projector for BatchSizes {
    fn name(&self) -> &'static str {
        "batch_sizes"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    async fn apply(
        &self,
        _conn: &mut sqlx::PgConnection,
        events: &[projections::EventRecord],
    ) -> Result<(), sqlx::Error> {
        self.0.lock().unwrap().push(events.len());
        Ok(())
    }
}

/// A projector that is behind reads ahead in catch-up sized batches: the first batch is
/// the ordinary 1,000 events, the ones after it up to 5,000, so catching up costs fewer
/// transactions (docs/projections.md, "Reading ahead"). Every event is applied once.
#[tokio::test]
async fn catching_up_reads_ahead_in_larger_batches() {
    let db = TestDb::new().await;
    let events = 2 * runtime::CATCH_UP_BATCH_SIZE + 2 * runtime::BATCH_SIZE + 7;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, tenant_id)
         SELECT 'load', 'l-' || g, 1, 'Loaded', '1', '{\"Loaded\":{}}', '{\"actor\":\"system:test\"}', $2
           FROM generate_series(1, $1) AS g",
    )
    .bind(events)
    .bind(uuid::Uuid::now_v7())
    .execute(&db.owner)
    .await
    .unwrap();
    let sizes = Arc::new(BatchSizes(std::sync::Mutex::new(Vec::new())));
    let projector: Arc<dyn projections::Projector> = sizes.clone();
    runtime::register(&db.worker, std::slice::from_ref(&projector))
        .await
        .unwrap();

    let applied = runtime::catch_up(&db.worker, projector.as_ref())
        .await
        .unwrap();

    let sizes = sizes.0.lock().unwrap().clone();
    assert_eq!(applied as i64, events);
    assert_eq!(sizes.iter().sum::<usize>() as i64, events);
    assert_eq!(sizes[0] as i64, runtime::BATCH_SIZE, "{sizes:?}");
    assert_eq!(
        sizes[1..3],
        [runtime::CATCH_UP_BATCH_SIZE as usize; 2],
        "{sizes:?}"
    );
    assert_eq!(processed(&db.worker, "batch_sizes").await, events);
}

#[tokio::test]
async fn a_rebuild_reproduces_the_live_tables() {
    let db = TestDb::new().await;
    let all = projections::all();
    runtime::register(&db.worker, &all).await.unwrap();
    for _ in 0..3 {
        let tenant = TenantId::new();
        let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), tenant, 5);
        let m = EventMetadata::new(tenant, Actor::User(UserId::new()), "req");
        for f in 0..10 {
            let id = format!("file-{f}");
            let create = FileCommand::Create {
                owner_id: UserId::new(),
                display_name: "a".into(),
            };
            commands::execute(&store, &id, create, &m, &())
                .await
                .unwrap();
            for t in 0..f {
                commands::execute(
                    &store,
                    &id,
                    FileCommand::Tag {
                        tag: format!("t{t}"),
                    },
                    &m,
                    &(),
                )
                .await
                .unwrap();
            }
        }
    }
    for p in &all {
        runtime::catch_up(&db.worker, p.as_ref()).await.unwrap();
    }
    let live_audit = table_contents(&db.worker, "audit_logs").await;
    let live_heads = table_contents(&db.worker, "stream_heads").await;
    assert_eq!(live_audit.len(), 3 * (10 + 45));
    let checkpoints_before = table_contents(&db.worker, "projector_checkpoints").await;

    // Damage the live tables, as a buggy deploy might; the rebuild must repair them.
    sqlx::query("DELETE FROM audit_logs WHERE id % 2 = 0")
        .execute(&db.worker)
        .await
        .unwrap();
    sqlx::query("UPDATE stream_heads SET last_sequence = 0")
        .execute(&db.worker)
        .await
        .unwrap();

    for p in all.iter().cloned() {
        let report = rebuild(&db.worker, p).await.unwrap();
        assert_eq!(report.events, 165);
    }
    assert_eq!(table_contents(&db.worker, "audit_logs").await, live_audit);
    assert_eq!(table_contents(&db.worker, "stream_heads").await, live_heads);
    let checkpoints_after: Vec<String> = table_contents(&db.worker, "projector_checkpoints").await;
    // Same positions and counts (only updated_at differs).
    let strip = |rows: Vec<String>| -> Vec<serde_json::Value> {
        rows.into_iter()
            .map(|r| {
                let mut v: serde_json::Value = serde_json::from_str(&r).unwrap();
                v.as_object_mut().unwrap().remove("updated_at");
                v
            })
            .collect()
    };
    assert_eq!(strip(checkpoints_after), strip(checkpoints_before));
    // RLS and grants survived: the app role still sees only its tenant.
    let mut tx = db.app.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(uuid::Uuid::nil().to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(visible, 0);
}

#[tokio::test]
async fn read_tables_are_tenant_isolated_for_the_app_role() {
    let db = TestDb::new().await;
    let all = projections::all();
    runtime::register(&db.worker, &all).await.unwrap();
    let (a, b) = (TenantId::new(), TenantId::new());
    for tenant in [a, b] {
        let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), tenant, 100);
        let m = EventMetadata::system(tenant, Actor::System("test"));
        let create = FileCommand::Create {
            owner_id: UserId::new(),
            display_name: "a".into(),
        };
        commands::execute(&store, &uuid::Uuid::now_v7().to_string(), create, &m, &())
            .await
            .unwrap();
    }
    for p in &all {
        let n = runtime::catch_up(&db.worker, p.as_ref()).await.unwrap();
        assert_eq!(n, 2, "{} applied both events", p.name());
    }
    for table in ["audit_logs", "stream_heads"] {
        let mut tx = db.app.begin().await.unwrap();
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(a.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
        let tenants: Vec<uuid::Uuid> =
            sqlx::query_scalar(&format!("SELECT tenant_id FROM {table}"))
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        assert!(!tenants.is_empty(), "{table}: own rows visible");
        assert!(
            tenants.iter().all(|t| *t == a.0),
            "{table}: another tenant's row leaked"
        );
        tx.rollback().await.unwrap();
        // Without a tenant set, nothing at all.
        let none: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&db.app)
            .await
            .unwrap();
        assert_eq!(none, 0, "{table} visible without a tenant");
    }
}

#[tokio::test]
async fn the_running_app_projects_new_events() {
    let t = TestApp::spawn(Mode::Serve, &[]).await;
    let tenant = TenantId::new();
    let store = ChronicleStore::<File>::new(EventLog::new(t.db.app.clone()), tenant, 100);
    let m = EventMetadata::system(tenant, Actor::System("test"));
    let create = FileCommand::Create {
        owner_id: UserId::new(),
        display_name: "a".into(),
    };
    commands::execute(&store, "live", create, &m, &())
        .await
        .unwrap();
    crate::common::eventually("the live event is projected", async || {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_logs WHERE target_id = 'live' AND action = 'file.created'",
        )
        .fetch_one(&t.db.worker)
        .await
        .unwrap();
        n == 1
    })
    .await;
    t.app.stop().await;
}

/// Regression: the catch-up query once sorted by its `transaction_id::text` output
/// alias, which orders "100000" before "99999" — skipping or doubling events whenever
/// xids gained a digit. The plan must sort (or scan) by the xid8 column itself.
#[tokio::test]
async fn catch_up_orders_by_the_xid8_column_not_its_text() {
    let db = TestDb::new().await;
    let mut conn = db.owner.acquire().await.unwrap();
    // Force the sort into the plan so its key is visible.
    sqlx::query("SET enable_indexscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("SET enable_bitmapscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let sql = projections::NEXT_BATCH_SQL
        .replace("$1", "'0'")
        .replace("$2", "0")
        .replace("$3", "1000");
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN (VERBOSE) {sql}"))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let sort_key = plan
        .iter()
        .find(|l| l.contains("Sort Key"))
        .unwrap_or_else(|| panic!("no sort: {plan:#?}"));
    assert!(!sort_key.contains("::text"), "sorts by text: {sort_key}");
    assert!(
        sort_key.contains("events.transaction_id, events.global_position"),
        "{sort_key}"
    );
}

#[tokio::test]
async fn audit_rows_say_who_did_what_to_what() {
    let db = TestDb::new().await;
    let all = projections::all();
    runtime::register(&db.worker, &all).await.unwrap();
    let tenant = TenantId::new();
    let user = UserId::new();
    let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), tenant, 100);
    let create = FileCommand::Create {
        owner_id: user,
        display_name: "a".into(),
    };
    commands::execute(
        &store,
        "f",
        create,
        &EventMetadata::new(tenant, Actor::User(user), "req-7"),
        &(),
    )
    .await
    .unwrap();
    let rename = FileCommand::Rename {
        display_name: "b".into(),
    };
    commands::execute(
        &store,
        "f",
        rename,
        &EventMetadata::system(tenant, Actor::Worker),
        &(),
    )
    .await
    .unwrap();
    let tag = FileCommand::Tag { tag: "x".into() };
    commands::execute(
        &store,
        "f",
        tag,
        &EventMetadata::system(tenant, Actor::System("cli")),
        &(),
    )
    .await
    .unwrap();
    runtime::catch_up(
        &db.worker,
        projections::by_name("audit_logs").unwrap().as_ref(),
    )
    .await
    .unwrap();

    let rows = sqlx::query(
        "SELECT actor, actor_user_id, actor_type, action, target_type, target_id, sequence, details::text AS details, request_id
           FROM audit_logs ORDER BY sequence",
    )
    .fetch_all(&db.worker)
    .await
    .unwrap();
    let summary: Vec<(String, Option<uuid::Uuid>, String, String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.get("actor"),
                r.get("actor_user_id"),
                r.get("actor_type"),
                r.get("action"),
                r.get("sequence"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                user.to_string(),
                Some(user.0),
                "user".into(),
                "file.created".into(),
                1
            ),
            (
                "system:worker".into(),
                None,
                "worker".into(),
                "file.renamed".into(),
                2
            ),
            (
                "system:cli".into(),
                None,
                "system".into(),
                "file.tagged".into(),
                3
            ),
        ]
    );
    assert_eq!(rows[0].get::<String, _>("target_type"), "file");
    assert_eq!(rows[0].get::<String, _>("target_id"), "f");
    assert_eq!(
        rows[0].get::<Option<String>, _>("request_id").as_deref(),
        Some("req-7")
    );
    let details: serde_json::Value =
        serde_json::from_str(&rows[1].get::<String, _>("details")).unwrap();
    assert_eq!(
        details,
        serde_json::json!({"Renamed": {"display_name": "b"}})
    );
}

/// Invariant 3: every read table carries tenant_id and has RLS enabled *and* forced.
/// Tables that are not read tables are listed here on purpose, so a new table cannot
/// slip through unprotected.
#[tokio::test]
async fn every_read_table_has_tenant_id_and_forced_row_level_security() {
    const NOT_READ_TABLES: &[&str] = &[
        "events",
        "snapshots",
        "projector_checkpoints",
        // Operational, across tenants like the checkpoints; the app role reads only the
        // counts view (migrations/0017_projector_failures.sql).
        "projector_failures",
        "credentials",
        "idempotency_keys",
        // Secrets, like credentials: never read through the API, every statement names
        // the tenant, no grant beyond the service roles (tests/integration/versioning.rs).
        "personal_data_keys",
        // Webhook signing secrets, likewise (migrations/0036_webhooks.sql).
        "webhook_secrets",
        "_sqlx_migrations",
        // Owner-managed analyst pins (0015); its own RLS shows a login its row only.
        "analyst_tenants",
        // The transparency log builder's one catch-up position, across tenants like the
        // projector checkpoints (migrations/0025_transparency_log.sql).
        "merkle_builder",
        // Link tokens' hashes → tenant and file, and download counters: found by the
        // hash of a link's token, which carries no tenant (migrations/0041_sharing.sql).
        "link_tokens",
        // When each API key was last used: written by the API for the key it just
        // verified, before any tenant is set; every statement names the tenant
        // (migrations/0030_api_keys.sql).
        "api_key_usage",
    ];
    let db = TestDb::new().await;
    let tables: Vec<(String, bool, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind = 'r'",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    let read_tables: Vec<_> = tables
        .iter()
        .filter(|t| !NOT_READ_TABLES.contains(&t.0.as_str()))
        .collect();
    assert!(read_tables.len() >= 10, "{read_tables:?}");
    for (name, rls, forced, has_tenant) in read_tables {
        assert!(*has_tenant, "{name} has no tenant_id");
        assert!(*rls && *forced, "{name}: RLS enabled={rls} forced={forced}");
        let policies: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_policies WHERE tablename = $1 AND policyname = 'tenant_isolation'")
            .bind(name)
            .fetch_one(&db.owner)
            .await
            .unwrap();
        assert_eq!(policies, 1, "{name} lacks the tenant_isolation policy");
    }
}
