//! The analyst roles (migrations/0015_analyst.sql, docs/schema.md "Analyst access"):
//! a login granted `analyst` reads one tenant — its pin, else its `app.tenant_id`
//! setting, else nothing — and writes nothing; `analyst_all` reads every tenant; neither
//! reads the event log, credentials, idempotency records or checkpoints.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::analyst_fixture::{Dataset, Login, seed};
use crate::common::TestDb;

/// What an analyst may read (besides the analytics views). A new table is readable only
/// when its migration calls chronicle_analyst_readable and this list names it.
const READABLE: &[&str] = &[
    "analyst_tenants",
    "audit_logs",
    "blob_collections",
    "blob_references",
    "devices",
    "file_grants",
    "file_tags",
    "file_versions",
    "files",
    "jobs",
    "locations",
    "notification_read_marks",
    "notification_recipients",
    "notification_unread",
    "notifications",
    "session_devices",
    "sessions",
    "stream_heads",
    "tags",
    "tenant_usage",
    "tenants",
    "uploads",
    "user_devices",
    "user_locations",
    "users",
];

const VIEWS: &[&str] = &[
    "analytics.dead_letters_daily",
    "analytics.dedup_savings",
    "analytics.processing_latency_daily",
    "analytics.storage_by_tenant",
    "analytics.storage_by_user",
    "analytics.stored_versions",
    "analytics.uploads_daily",
];

/// The distinct tenants of every tenant-scoped table and view `conn` can read, and how
/// many rows it read in all.
async fn visible_tenants(conn: &mut PgConnection) -> (Vec<Uuid>, i64) {
    let mut tenants = Vec::new();
    let mut rows = 0;
    for t in READABLE
        .iter()
        .filter(|t| **t != "analyst_tenants")
        .chain(VIEWS)
    {
        let r = sqlx::query(&format!(
            "SELECT count(*) AS n, array_agg(DISTINCT tenant_id) FILTER (WHERE tenant_id IS NOT NULL) AS t FROM {t}"
        ))
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{t}: {e}"));
        rows += r.get::<i64, _>("n");
        tenants.extend(r.get::<Option<Vec<Uuid>>, _>("t").unwrap_or_default());
    }
    tenants.sort();
    tenants.dedup();
    (tenants, rows)
}

async fn sqlstate(conn: &mut PgConnection, sql: &str) -> String {
    match sqlx::query(sql).execute(&mut *conn).await {
        Ok(_) => panic!("{sql} succeeded"),
        Err(sqlx::Error::Database(e)) => e.code().unwrap_or_default().to_string(),
        Err(e) => panic!("{sql}: {e}"),
    }
}

async fn scalar(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

async fn set_tenant(conn: &mut PgConnection, tenant: impl std::fmt::Display) {
    sqlx::query(&format!("SET app.tenant_id = '{tenant}'"))
        .execute(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pinned_login_reads_only_its_tenant_whatever_it_sets() {
    let db = TestDb::new().await;
    let d: Dataset = seed(&db).await;
    let login = Login::create(&db, "analyst").await;
    login.pin(&db, d.tenant_a).await;
    let mut conn = login.connect(&db).await;

    let (tenants, rows) = visible_tenants(&mut conn).await;
    assert_eq!(tenants, vec![d.tenant_a]);
    assert!(rows > 40, "A's rows are visible: {rows}");
    // The owner sees B's rows too: the filter above is RLS, not an empty B.
    let b_files: i64 = sqlx::query_scalar("SELECT count(*) FROM files WHERE tenant_id = $1")
        .bind(d.tenant_b)
        .fetch_one(&db.worker)
        .await
        .unwrap();
    assert_eq!(b_files, 1);

    // Neither the setting nor SET ROLE moves a pin.
    set_tenant(&mut conn, d.tenant_b).await;
    assert_eq!(visible_tenants(&mut conn).await.0, vec![d.tenant_a]);
    sqlx::query("SET ROLE analyst")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(visible_tenants(&mut conn).await.0, vec![d.tenant_a]);
    // … and the login sees its own pin only.
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) FROM analyst_tenants").await,
        1
    );
}

#[tokio::test]
async fn a_login_with_a_default_tenant_reads_it_and_may_switch_as_documented() {
    let db = TestDb::new().await;
    let d = seed(&db).await;
    let login = Login::create(&db, "analyst").await;
    login.set_default_tenant(&db, d.tenant_a).await;
    let mut conn = login.connect(&db).await;
    assert_eq!(visible_tenants(&mut conn).await.0, vec![d.tenant_a]);

    // The trust model docs/schema.md states: a setting is a default, not a boundary.
    set_tenant(&mut conn, d.tenant_b).await;
    assert_eq!(visible_tenants(&mut conn).await.0, vec![d.tenant_b]);
    sqlx::query("RESET app.tenant_id")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(visible_tenants(&mut conn).await.0, vec![d.tenant_a]);
    // An empty setting is no tenant.
    set_tenant(&mut conn, "").await;
    assert_eq!(visible_tenants(&mut conn).await, (vec![], 0));
    // A malformed one is an error, not a wider view.
    set_tenant(&mut conn, "not-a-uuid").await;
    assert_eq!(sqlstate(&mut conn, "SELECT * FROM files").await, "22P02");
}

#[tokio::test]
async fn a_login_without_tenant_reads_zero_rows_everywhere_without_error() {
    let db = TestDb::new().await;
    seed(&db).await;
    let login = Login::create(&db, "analyst").await;
    let mut conn = login.connect(&db).await;
    assert_eq!(visible_tenants(&mut conn).await, (vec![], 0));
}

#[tokio::test]
async fn analyst_all_reads_every_tenant() {
    let db = TestDb::new().await;
    let d = seed(&db).await;
    let login = Login::create(&db, "analyst_all").await;
    let mut conn = login.connect(&db).await;
    let mut both = vec![d.tenant_a, d.tenant_b];
    both.sort();
    assert_eq!(visible_tenants(&mut conn).await.0, both);
    // A setting does not narrow it either: analyst_all is for people trusted with all.
    set_tenant(&mut conn, d.tenant_a).await;
    assert_eq!(visible_tenants(&mut conn).await.0, both);
    assert_eq!(
        sqlstate(&mut conn, "SELECT * FROM analyst_tenants").await,
        "42501"
    );
}

#[tokio::test]
async fn analysts_write_nothing_and_cannot_read_history_secrets_or_checkpoints() {
    let db = TestDb::new().await;
    let d = seed(&db).await;
    for group in ["analyst", "analyst_all"] {
        let login = Login::create(&db, group).await;
        login.pin(&db, d.tenant_a).await;
        let mut conn = login.connect(&db).await;
        let writes = [
            "INSERT INTO files (tenant_id, id, owner_id, display_name, created_at, updated_at) VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'x', now(), now())".to_string(),
            "UPDATE files SET display_name = 'x'".into(),
            "DELETE FROM file_versions".into(),
            "TRUNCATE jobs".into(),
            format!("UPDATE analyst_tenants SET tenant_id = '{}'", d.tenant_b),
            format!("INSERT INTO analyst_tenants (login, tenant_id) VALUES (current_user, '{}')", d.tenant_b),
            "DELETE FROM analyst_tenants".into(),
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, tenant_id) VALUES ('x', 'x', 1, 'x', '1', '{}', '{}', gen_random_uuid())".into(),
            "CREATE TABLE public.mine (x int)".into(),
            "CREATE VIEW analytics.mine AS SELECT 1".into(),
            "ALTER TABLE files DISABLE ROW LEVEL SECURITY".into(),
        ];
        for sql in &writes {
            let code = sqlstate(&mut conn, sql).await;
            assert!(
                ["42501", "42809"].contains(&code.as_str()),
                "{group}: {sql}: {code}"
            );
        }
        for table in [
            "events",
            "snapshots",
            "credentials",
            "idempotency_keys",
            "projector_checkpoints",
        ] {
            let code = sqlstate(&mut conn, &format!("SELECT 1 FROM {table} LIMIT 1")).await;
            assert_eq!(code, "42501", "{group} reads {table}");
        }
        // Nor can it become a role that can.
        for role in ["chronicle_app", "chronicle_worker", "analyst_all"] {
            if role != group {
                let code = sqlstate(&mut conn, &format!("SET ROLE {role}")).await;
                assert_eq!(code, "42501", "{group} → {role}");
            }
        }
    }
}

/// The catalog agrees with READABLE, so a table holding secrets or keys that a later
/// migration adds is unreadable unless someone decides otherwise (and edits this list).
#[tokio::test]
async fn analysts_can_read_exactly_the_listed_tables_and_views_all_under_forced_rls() {
    let db = TestDb::new().await;
    for role in ["analyst", "analyst_all"] {
        let readable: Vec<String> = sqlx::query_scalar(
            "SELECT CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
                AND c.relkind IN ('r', 'v', 'm', 'p')
                AND has_table_privilege($1, c.oid, 'SELECT')
              ORDER BY 1",
        )
        .bind(role)
        .fetch_all(&db.owner)
        .await
        .unwrap();
        let mut expected: Vec<String> = READABLE
            .iter()
            .chain(VIEWS)
            .filter(|t| role == "analyst" || **t != "analyst_tenants")
            .map(|t| t.to_string())
            .collect();
        expected.sort();
        assert_eq!(readable, expected, "{role}");
    }
    // Every readable table is under row-level security, forced (the owner too), and the
    // views run as their caller.
    let unprotected: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname FROM pg_class c
          WHERE c.relname = ANY($1) AND NOT (c.relrowsecurity AND (c.relforcerowsecurity OR c.relname = 'analyst_tenants'))",
    )
    .bind(READABLE)
    .fetch_all(&db.owner)
    .await
    .unwrap();
    assert!(unprotected.is_empty(), "{unprotected:?}");
    let definer_views: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'analytics' AND c.relkind = 'v'
            AND NOT coalesce('security_invoker=true' = ANY(c.reloptions), false)",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    assert!(definer_views.is_empty(), "{definer_views:?}");
    // The group roles are what the issue asks: no login, no superuser, no BYPASSRLS.
    let flags: Vec<(String, bool, bool, bool)> = sqlx::query_as(
        "SELECT rolname::text, rolcanlogin, rolsuper, rolbypassrls FROM pg_roles
          WHERE rolname IN ('analyst', 'analyst_all') ORDER BY 1",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    assert_eq!(
        flags,
        vec![
            ("analyst".into(), false, false, false),
            ("analyst_all".into(), false, false, false)
        ]
    );
}
