//! Chronicle behind PgBouncer in transaction mode (scripts/start-pgbouncer.sh; runs when
//! `PGBOUNCER_TEST_PORT` is set, as in CI's pooled step, docs/testing.md). Through a
//! transaction pooler consecutive transactions of one client run on different server
//! connections and one server connection serves many clients, so anything a
//! transaction leaves on its session would reach strangers: these tests show the
//! pooler really mixes sessions (a session-level setting does leak), and that
//! Chronicle's own per-request state (tenant, role) never does, under concurrency.

use std::collections::HashSet;
use std::process::Command;

use chronicle::aggregates::Role;
use chronicle::app::Mode;
use chronicle::auth::TenantContext;
use chronicle::ids::{TenantId, UserId};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{Client, TestApp, TestDb, bytes_of, direct, eventually, pgbouncer_port};

/// The PgBouncer's port; None (skip) unless the run goes through one.
fn pooled() -> Option<u16> {
    let port = pgbouncer_port();
    if port.is_none() {
        eprintln!("!!! SKIPPED: PGBOUNCER_TEST_PORT is not set (scripts/start-pgbouncer.sh)");
    }
    port
}

/// A PgBouncer admin console command, as psql prints it unaligned (`|`-separated).
fn pgbouncer_show(port: u16, what: &str) -> Vec<Vec<String>> {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", "pgbouncer", "-Atc", &format!("SHOW {what}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn pools_log_in_as_their_roles_and_only_listen_goes_direct() {
    let Some(port) = pooled() else { return };
    let db = TestDb::new().await;
    // A direct URL that names itself, to find its sessions in pg_stat_activity.
    let marked = format!("{}?application_name=chronicle-direct", direct(&db.url));
    let name = db.name.clone();
    let t = TestApp::spawn_on(db, Mode::Serve, &[("DATABASE_DIRECT_URL", &marked)]).await;
    assert!(t.db.url.contains(&format!(":{port}/")), "{}", t.db.url);

    // The API's pool logged in as its role: no SET ROLE, nothing for a session to keep.
    let (session_user, current_user): (String, String) =
        sqlx::query_as("SELECT session_user::text, current_user::text")
            .fetch_one(&t.app.state.db)
            .await
            .unwrap();
    assert_eq!(
        (session_user.as_str(), current_user.as_str()),
        ("chronicle_app", "chronicle_app")
    );

    // Real traffic went through the pooler: it has pools of both runtime roles for this
    // database.
    let c = t.signup("ada").await;
    t.upload_ok(&c, "a.txt", bytes_of(1, 100)).await;
    let pools = pgbouncer_show(port, "POOLS");
    for role in ["chronicle_app", "chronicle_worker"] {
        assert!(
            pools
                .iter()
                .any(|p| p.first() == Some(&name) && p.get(1).map(String::as_str) == Some(role)),
            "no PgBouncer pool of {role} for {name}: {pools:?}"
        );
    }

    // The projectors' LISTEN runs on the direct connection, and on nothing else.
    eventually(
        "the projectors LISTEN on the direct connection",
        async || {
            let listeners: Vec<String> = sqlx::query_scalar(
                "SELECT application_name FROM pg_stat_activity
              WHERE datname = $1 AND query ILIKE 'LISTEN%'",
            )
            .bind(&name)
            .fetch_all(&t.db.owner)
            .await
            .unwrap();
            !listeners.is_empty() && listeners.iter().all(|a| a == "chronicle-direct")
        },
    )
    .await;
    // ...and the notification arrives: the upload's file reaches the read table.
    eventually("the upload is projected", async || {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM files")
            .fetch_one(&t.db.worker)
            .await
            .unwrap();
        n == 1
    })
    .await;
    t.app.stop().await;
}

/// The control: a setting made for the session (what `SET` without `LOCAL` does) stays
/// on the server connection and is seen by other clients' statements. If this ever stops
/// leaking, the run is not going through a transaction pooler and the test below proves
/// nothing.
#[tokio::test]
async fn a_session_setting_would_leak_through_the_pooler() {
    if pooled().is_none() {
        return;
    }
    let db = TestDb::new().await;
    sqlx::query("SELECT set_config('app.tenant_id', 'leaked', false)")
        .execute(&db.app)
        .await
        .unwrap();
    let mut seen = 0;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let pool = db.app.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = 0;
            for _ in 0..50 {
                let v: Option<String> =
                    sqlx::query_scalar("SELECT current_setting('app.tenant_id', true)")
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                seen += usize::from(v.as_deref() == Some("leaked"));
            }
            seen
        }));
    }
    for task in tasks {
        seen += task.await.unwrap();
    }
    assert!(seen > 0, "no statement saw the session setting");
    assert!(
        seen < 16 * 50,
        "every statement ran on the same session: not pooled"
    );
}

async fn files_of(t: &TestApp, c: &Client) -> HashSet<String> {
    let r = t
        .http
        .get(t.url("/v1/files"))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["display_name"].as_str().unwrap().to_string())
        .collect()
}

/// What one transaction of `ctx` sees: its tenant setting, the tenants of the files it
/// can read, and who it runs as.
async fn seen_by(ctx: &TenantContext, pool: &PgPool) -> (String, Vec<Uuid>, String) {
    let mut tx = ctx.begin(pool).await.unwrap();
    let (setting, user): (String, String) =
        sqlx::query_as("SELECT current_setting('app.tenant_id'), current_user::text")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    let tenants: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM files")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (setting, tenants, user)
}

#[tokio::test]
async fn tenant_context_never_crosses_tenants_under_concurrency() {
    if pooled().is_none() {
        return;
    }
    let t = TestApp::spawn(Mode::Serve, &[]).await;
    let ada = t.signup("ada").await;
    let bob = t.signup("bob").await;
    for (c, name) in [(&ada, "ada.txt"), (&bob, "bob.txt")] {
        t.upload_ok(c, name, bytes_of(2, 64)).await;
    }
    eventually("both files are projected", async || {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM files")
            .fetch_one(&t.db.worker)
            .await
            .unwrap();
        n == 2
    })
    .await;

    // Many transactions of both tenants at once on a pool bigger than the pooler's
    // server pool: every one sees its own tenant only, and nothing it set survives it.
    let contexts: Vec<(TenantContext, Uuid)> = [&ada, &bob]
        .iter()
        .map(|c| {
            let tenant: Uuid = c.tenant_id.parse().unwrap();
            let user = UserId(c.user_id.parse().unwrap());
            let ctx = TenantContext::person(TenantId(tenant), user, Role::Admin, Uuid::now_v7());
            (ctx, tenant)
        })
        .collect();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (ctx, tenant) = contexts[i % 2];
        let pool = t.db.app.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let (setting, tenants, user) = seen_by(&ctx, &pool).await;
                assert_eq!(setting, tenant.to_string());
                assert_eq!(tenants, vec![tenant], "tenant {tenant} saw {tenants:?}");
                assert_eq!(user, "chronicle_app");
                // Outside any transaction: no tenant, no other role left behind.
                let (after, user): (Option<String>, String) = sqlx::query_as(
                    "SELECT nullif(current_setting('app.tenant_id', true), ''), current_user::text",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                assert_eq!((after, user.as_str()), (None, "chronicle_app"));
            }
        }));
    }
    // The API at the same time: each tenant lists exactly its own file.
    for _ in 0..20 {
        let (a, b) = tokio::join!(files_of(&t, &ada), files_of(&t, &bob));
        assert_eq!(a, HashSet::from(["ada.txt".to_string()]));
        assert_eq!(b, HashSet::from(["bob.txt".to_string()]));
    }
    for task in tasks {
        task.await.unwrap();
    }
    t.app.stop().await;
}
