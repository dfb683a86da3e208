//! Crypto-shredding through the API: personal fields are sealed in the log, shown in the
//! read tables, and gone from both after `POST /v1/users/{id}/erase` — while the chain
//! verifies, the aggregate loads and a rebuild reproduces the erased read tables.

use chronicle::aggregates::User;
use chronicle::app::Mode;
use chronicle::ids::TenantId;
use chronicle::projections::devices::device_id;
use chronicle::projections::{self, rebuild::rebuild, runtime};
use chronicle::store::verify::verify_chains;
use chronicle::store::{ChronicleStore, EventLog};
use cqrs_es::EventStore;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{
    TestApp, hang_up_over, median_of_three, no_standing_change_pending, raw_request, table_contents,
};

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
use crate::common::PASSWORD;
const BOB_EMAIL: &str = "bob.builder@example.com";
const BOB_NAME: &str = "Bob Builder";
const BOB_AGENT: &str = "BobBrowser/7.3 (Plan9)";

/// Every read table that can hold personal data.
pub const PERSONAL_TABLES: &[&str] = &[
    "users",
    "sessions",
    "devices",
    "user_devices",
    "locations",
    "user_locations",
    "session_devices",
    "audit_logs",
];

async fn app() -> TestApp {
    TestApp::spawn(
        Mode::Serve,
        &[
            ("JWT_SECRET", SECRET),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "1000"),
        ],
    )
    .await
}

struct Login {
    user_id: String,
    tenant_id: String,
    access: String,
}

async fn signed_in(t: &TestApp, email: &str, agent: &str, ids: &Value) -> Login {
    let r = t.login_as(email, agent).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    Login {
        user_id: ids["user_id"].as_str().unwrap().into(),
        tenant_id: ids["tenant_id"].as_str().unwrap().into(),
        access: body["access_token"].as_str().unwrap().into(),
    }
}

async fn tenant_admin(t: &TestApp, handle: &str) -> Login {
    let email = format!("{handle}@example.com");
    let ids = t.register_ok(json!({"tenant_name": format!("{handle} inc"), "handle": handle, "name": handle, "email": email, "password": PASSWORD})).await;
    signed_in(
        t,
        &email,
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
        &ids,
    )
    .await
}

async fn invited(
    t: &TestApp,
    admin: &Login,
    handle: &str,
    name: &str,
    email: &str,
    agent: &str,
) -> Login {
    let r = t
        .http
        .post(t.url("/v1/tenants/current/invitations"))
        .bearer_auth(&admin.access)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let invitation: Value = r.json().await.unwrap();
    let ids = t.register_ok(json!({"invitation_token": invitation["invitation_token"], "handle": handle, "name": name, "email": email, "password": PASSWORD})).await;
    signed_in(t, email, agent, &ids).await
}

async fn erase(t: &TestApp, caller: &Login, user: &str) -> reqwest::Response {
    t.http
        .post(t.url(&format!("/v1/users/{user}/erase")))
        .bearer_auth(&caller.access)
        .send()
        .await
        .unwrap()
}

async fn error_code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap_or_default().into(),
    )
}

/// Every stored payload and metadata of the log, as one text.
async fn log_text(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "SELECT coalesce(string_agg(payload::text || metadata::text, E'\\n'), '') FROM events",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

pub async fn catch_up_all(pool: &PgPool) {
    let all = projections::all();
    runtime::register(pool, &all).await.unwrap();
    for p in &all {
        runtime::catch_up(pool, p.as_ref()).await.unwrap();
    }
}

pub async fn contents(pool: &PgPool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for table in PERSONAL_TABLES {
        out.push(table_contents(pool, table).await);
    }
    out
}

pub async fn rebuild_all(pool: &PgPool) {
    for p in projections::all() {
        rebuild(pool, p).await.unwrap();
    }
}

#[tokio::test]
async fn erasure_shreds_personal_data_and_keeps_history_verifiable() {
    let t = app().await;
    let admin = tenant_admin(&t, "ada").await;
    let bob = invited(&t, &admin, "bob", BOB_NAME, BOB_EMAIL, BOB_AGENT).await;
    let carol = invited(
        &t,
        &admin,
        "carol",
        "Carol",
        "carol@example.com",
        "curl/8.4.0",
    )
    .await;
    let r = t
        .http
        .put(t.url(&format!("/v1/users/{}/role", carol.user_id)))
        .bearer_auth(&admin.access)
        .json(&json!({"role": "auditor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let eve = tenant_admin(&t, "eve").await;

    // The log holds no plaintext personal data of v2 events…
    let log = log_text(&t.db.owner).await;
    for secret in [
        BOB_EMAIL,
        BOB_NAME,
        BOB_AGENT,
        "127.0.0.1",
        "carol@example.com",
    ] {
        assert!(
            !log.contains(secret),
            "{secret} is in the event log in clear"
        );
    }
    assert!(log.contains("aes256gcm"));
    // …while the read tables show it.
    let db = &t.db.worker;
    catch_up_all(db).await;
    let (name, email): (String, String) =
        sqlx::query_as("SELECT name, email FROM users WHERE id = $1::uuid")
            .bind(&bob.user_id)
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!((name.as_str(), email.as_str()), (BOB_NAME, BOB_EMAIL));
    let (agent, ip): (String, String) =
        sqlx::query_as("SELECT user_agent, ip_address FROM sessions WHERE user_id = $1::uuid")
            .bind(&bob.user_id)
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!((agent.as_str(), ip.as_str()), (BOB_AGENT, "127.0.0.1"));
    let bob_device = device_id(Uuid::parse_str(&bob.tenant_id).unwrap(), BOB_AGENT);
    let device_rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM devices WHERE id = $1")
            .bind(bob_device)
            .fetch_one(db)
            .await
            .unwrap()
    };
    assert_eq!(
        device_rows().await,
        1,
        "Bob's browser is a device of the tenant"
    );
    let before_erasure = contents(db).await;
    assert!(
        before_erasure
            .concat()
            .iter()
            .any(|row| row.contains(BOB_EMAIL))
    );

    // Refusals change nothing: a user, an auditor, another tenant's admin, oneself.
    let (bob_id, tenant) = (bob.user_id.clone(), admin.tenant_id.clone());
    assert_eq!(
        error_code(erase(&t, &bob, &carol.user_id).await).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    assert_eq!(
        error_code(erase(&t, &carol, &bob_id).await).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    assert_eq!(
        error_code(erase(&t, &eve, &bob_id).await).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    assert_eq!(
        error_code(erase(&t, &admin, &admin.user_id).await).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        error_code(erase(&t, &admin, &Uuid::now_v7().to_string()).await)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let erased_events = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events WHERE event_type = 'UserErased'")
            .fetch_one(&t.db.owner)
            .await
            .unwrap()
    };
    assert_eq!(erased_events().await, 0);
    let live_keys: i64 =
        sqlx::query_scalar("SELECT count(*) FROM personal_data_keys WHERE data_key IS NOT NULL")
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    assert_eq!(live_keys, 4, "ada, bob, carol, eve");
    catch_up_all(db).await;
    assert_eq!(
        contents(db).await,
        before_erasure,
        "a refused erasure changed a read table"
    );

    // Erase Bob — four racing requests (a double-click, a retry): all succeed, one
    // erasure is recorded; a later repeat records nothing either.
    let racing = futures::future::join_all((0..4).map(|_| erase(&t, &admin, &bob_id))).await;
    for r in racing {
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(
        erase(&t, &admin, &bob_id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(erased_events().await, 1);
    let key: (Option<Vec<u8>>, bool) = sqlx::query_as(
        "SELECT data_key, erased_at IS NOT NULL FROM personal_data_keys WHERE user_id = $1::uuid",
    )
    .bind(&bob_id)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(
        key,
        (None, true),
        "the key is destroyed, the tombstone stays"
    );

    // Bob is out: his token dies now, his password no longer works.
    let me = t
        .http
        .get(t.url("/v1/me"))
        .bearer_auth(&bob.access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        error_code(t.login_as(BOB_EMAIL, BOB_AGENT).await).await,
        (StatusCode::UNAUTHORIZED, "invalid_credentials".into())
    );

    // Read tables: Bob's personal fields are gone, everyone else's are intact.
    catch_up_all(db).await;
    let (handle, name, email): (String, String, String) =
        sqlx::query_as("SELECT handle, name, email FROM users WHERE id = $1::uuid")
            .bind(&bob_id)
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(
        (handle.as_str(), name.as_str(), email.as_str()),
        ("bob", "[erased]", "[erased]")
    );
    let session: (String, String, Option<String>) = sqlx::query_as(
        "SELECT user_agent, ip_address, revoke_reason FROM sessions WHERE user_id = $1::uuid",
    )
    .bind(&bob_id)
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(
        session,
        (
            "[erased]".into(),
            "[erased]".into(),
            Some("user_erased".into())
        )
    );
    let links: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM user_devices WHERE user_id = $1::uuid)
              + (SELECT count(*) FROM user_locations WHERE user_id = $1::uuid)
              + (SELECT count(*) FROM session_devices WHERE user_id = $1::uuid)",
    )
    .bind(&bob_id)
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(links, 0);
    let after = contents(db).await.concat().join("\n");
    for secret in [BOB_EMAIL, BOB_NAME, "BobBrowser"] {
        assert!(!after.contains(secret), "{secret} still in a read table");
    }
    assert!(
        after.contains("carol@example.com"),
        "other users are untouched"
    );
    assert_eq!(
        device_rows().await,
        0,
        "only Bob used that device: its row is gone"
    );

    // History: the chain verifies (hashes cover the ciphertext), the aggregate loads.
    let report = verify_chains(&t.db.owner, None).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.breaks);
    let tenant_id = TenantId(Uuid::parse_str(&tenant).unwrap());
    let store = ChronicleStore::<User>::new(EventLog::new(t.db.app.clone()), tenant_id, 10);
    let loaded = store.load_aggregate(&bob_id).await.unwrap().aggregate;
    assert!(loaded.erased && loaded.exists);
    assert_eq!(
        (
            loaded.name.as_str(),
            loaded.email.as_str(),
            loaded.handle.as_str()
        ),
        ("[erased]", "[erased]", "bob")
    );
    let replayed = store.load_full_replay(&bob_id).await.unwrap().aggregate;
    assert_eq!(replayed, loaded);

    // A full rebuild reproduces the erased tables exactly — no personal data returns.
    let live = contents(db).await;
    rebuild_all(db).await;
    assert_eq!(
        contents(db).await,
        live,
        "rebuild differs from the live erased tables"
    );
}

/// A login whose password check passed just before an erasure deleted the credentials
/// must not become a 500 (or a session) when it reaches the erased user. Re-inserting
/// the credentials row after the erasure recreates that moment deterministically.
#[tokio::test]
async fn a_login_racing_an_erasure_is_refused_as_invalid_credentials() {
    let t = app().await;
    let admin = tenant_admin(&t, "racer-admin").await;
    let carol = invited(
        &t,
        &admin,
        "carol",
        "Carol Race",
        "carol@example.com",
        "curl/8",
    )
    .await;
    let carol_id = carol.user_id.clone();
    let (tenant, hash): (uuid::Uuid, String) =
        sqlx::query_as("SELECT tenant_id, password_hash FROM credentials WHERE user_id = $1::uuid")
            .bind(&carol_id)
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    assert_eq!(
        erase(&t, &admin, &carol_id).await.status(),
        StatusCode::NO_CONTENT
    );
    sqlx::query(
        "INSERT INTO credentials (user_id, tenant_id, email, password_hash) VALUES ($1::uuid, $2, $3, $4)",
    )
    .bind(&carol_id)
    .bind(tenant)
    .bind("carol@example.com")
    .bind(&hash)
    .execute(&t.db.owner)
    .await
    .unwrap();
    let sessions_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'SessionStarted'")
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    assert_eq!(
        error_code(t.login_as("carol@example.com", "curl/8").await).await,
        (StatusCode::UNAUTHORIZED, "invalid_credentials".into())
    );
    let sessions_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'SessionStarted'")
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    assert_eq!(sessions_after, sessions_before, "no session was recorded");
}

#[tokio::test]
async fn an_erasure_whose_client_hangs_up_still_ends_its_announcement() {
    // An erasure changes someone's standing: it is announced to every instance (the
    // tenant's standing epoch: `pending` + 1), committed in its own transaction, then
    // ended. A client that hangs up makes hyper drop its request wherever it waits;
    // dropped in between, the tenant's epoch stayed pending for five minutes and every
    // request of the tenant read the log instead of what the instances remember.
    const CUTS: usize = 40;
    let t = app().await;
    let admin = t.signup("ops").await;
    let mut users = Vec::new();
    for i in 0..3 + CUTS {
        users.push(
            t.join(&admin.token, &format!("user{i}"), "user")
                .await
                .user_id,
        );
    }
    let bearer = format!("Bearer {}", admin.token);
    let erasure = |user: &str| {
        let line = format!("POST /v1/users/{user}/erase");
        raw_request(&t, &line, &[("authorization", bearer.as_str())], b"")
    };
    let whole = median_of_three(&t, 204, async |i| erasure(&users[i as usize])).await;
    let requests: Vec<_> = users[3..].iter().map(|u| erasure(u)).collect();
    // Erasures of one tenant take turns (its admin lock): each cut one's work ends
    // before the next is sent.
    let answered = hang_up_over(&t, "erasures", (whole, whole * 2), &requests).await;

    no_standing_change_pending(&t, &admin.tenant_id).await;
    let erased: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'UserErased'")
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    assert!(erased >= 3 + answered, "every answered erasure committed");
}
