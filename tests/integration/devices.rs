//! Devices and locations: logins from different clients become separate devices with
//! parsed names, refreshes bump last-seen, tenants never see each other's devices, and a
//! rebuild reproduces the tables exactly.

use chronicle::app::Mode;
use chronicle::projections::{self, rebuild::rebuild, runtime};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Row;

use crate::common::{TestApp, eventually_some, table_contents};

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1";
/// Every table the `devices` projector owns.
const TABLES: [&str; 5] = [
    "devices",
    "user_devices",
    "locations",
    "user_locations",
    "session_devices",
];

/// A generous auth budget: these tests log in many times from one address.
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
    tenant_id: String,
    access: String,
    refresh_cookie: String,
}

/// Signs in from a device with `user_agent`: the tokens, the refresh cookie and who.
async fn sign_in(t: &TestApp, email: &str, user_agent: &str) -> Login {
    let r = t.login_as(email, user_agent).await;
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    let refresh_cookie = set.split(';').next().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_string();
    let me: Value = t
        .http
        .get(t.url("/v1/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Login {
        tenant_id: me["tenant_id"].as_str().unwrap().into(),
        access,
        refresh_cookie,
    }
}

async fn devices(t: &TestApp, access: &str) -> Vec<Value> {
    let r = t
        .http
        .get(t.url("/v1/devices"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap().as_array().unwrap().clone()
}

/// Polls `/v1/devices` until `done` holds (the projector runs asynchronously).
async fn devices_until(t: &TestApp, access: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    eventually_some("the devices reach the expected state", async || {
        let list = devices(t, access).await;
        done(&list).then_some(list)
    })
    .await
}

/// Registers `handle`'s tenant; returns the admin's email.
async fn registered(t: &TestApp, handle: &str) -> String {
    t.register_tenant(handle).await;
    format!("{handle}@example.com")
}

#[tokio::test]
async fn two_clients_are_two_devices_and_refresh_bumps_last_seen() {
    let t = app().await;
    let email = registered(&t, "ada").await;
    let firefox = sign_in(&t, &email, FIREFOX_LINUX).await;
    let iphone = sign_in(&t, &email, SAFARI_IPHONE).await;
    // A second login from the same client is the same device.
    sign_in(&t, &email, FIREFOX_LINUX).await;

    let list = devices_until(&t, &iphone.access, |l| {
        l.len() == 2 && l[0]["name"] == "Firefox 120"
    })
    .await;
    // Newest first: the second Firefox login happened after the iPhone's.
    assert_eq!(list[0]["name"], "Firefox 120");
    assert_eq!(list[0]["os"], "Linux");
    assert_eq!(list[1]["name"], "Safari 17");
    assert_eq!(list[1]["os"], "iOS");
    assert_eq!(list[0]["current"], false);
    assert_eq!(
        list[1]["current"], true,
        "the iPhone session is this request's"
    );
    let iphone_seen = list[1]["last_seen_at"].as_str().unwrap().to_string();
    let iphone_first = list[1]["first_seen_at"].as_str().unwrap().to_string();
    // All three logins came from 127.0.0.1: one location, no GeoIP configured.
    let locations = sqlx::query("SELECT ip_address, geo_json::text AS geo FROM locations")
        .fetch_all(&t.db.owner)
        .await
        .unwrap();
    assert_eq!(locations.len(), 1);
    assert_eq!(locations[0].get::<String, _>("ip_address"), "127.0.0.1");
    assert_eq!(locations[0].get::<Option<String>, _>("geo"), None);

    // Refreshing the iPhone session moves the iPhone to the top, first-seen unchanged.
    let r = t
        .http
        .post(t.url("/v1/auth/refresh"))
        .header("cookie", &iphone.refresh_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let list = devices_until(&t, &firefox.access, |l| {
        l.len() == 2 && l[0]["name"] == "Safari 17"
    })
    .await;
    assert!(list[0]["last_seen_at"].as_str().unwrap() > iphone_seen.as_str());
    assert_eq!(list[0]["first_seen_at"], iphone_first.as_str());
    // The location was seen again by that refresh, too.
    let (first, last): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT first_seen_at, last_seen_at FROM user_locations")
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    let refreshed: chrono::DateTime<chrono::Utc> =
        list[0]["last_seen_at"].as_str().unwrap().parse().unwrap();
    assert!(first < last);
    assert_eq!(last, refreshed);
    t.app.stop().await;
}

#[tokio::test]
async fn tenants_never_see_each_others_devices() {
    let t = app().await;
    let ada_email = registered(&t, "ada").await;
    let bob_email = registered(&t, "bob").await;
    let ada = sign_in(&t, &ada_email, FIREFOX_LINUX).await;
    // Same client, same address, other tenant: must not become a shared device.
    let bob = sign_in(&t, &bob_email, FIREFOX_LINUX).await;
    let bob_list = devices_until(&t, &bob.access, |l| !l.is_empty()).await;
    let ada_list = devices_until(&t, &ada.access, |l| !l.is_empty()).await;
    assert_eq!(ada_list.len(), 1);
    assert_eq!(bob_list.len(), 1);
    assert_ne!(ada_list[0]["id"], bob_list[0]["id"], "ids are per tenant");

    // Raw SQL as the API's role under A's tenant: A's rows only, in every table.
    for table in TABLES {
        let mut tx = t.db.app.begin().await.unwrap();
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(&ada.tenant_id)
            .execute(&mut *tx)
            .await
            .unwrap();
        let (own, foreign): (i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*) FILTER (WHERE tenant_id = $1::uuid), count(*) FILTER (WHERE tenant_id <> $1::uuid) FROM {table}"
        ))
        .bind(&ada.tenant_id)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(foreign, 0, "{table} shows another tenant's rows");
        assert!(own > 0, "{table} shows the tenant's own rows");
        // And nothing at all without a tenant.
        let mut bare = t.db.app.begin().await.unwrap();
        let any: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *bare)
            .await
            .unwrap();
        assert_eq!(any, 0, "{table} readable without app.tenant_id");
    }
    let both: i64 = sqlx::query_scalar("SELECT count(DISTINCT tenant_id) FROM devices")
        .fetch_one(&t.db.owner)
        .await
        .unwrap();
    assert_eq!(both, 2, "both tenants were projected");
    t.app.stop().await;
}

#[tokio::test]
async fn a_rebuild_reproduces_the_device_tables() {
    let t = app().await;
    let mut accesses = vec![];
    for handle in ["ada", "bob"] {
        let email = registered(&t, handle).await;
        for ua in [FIREFOX_LINUX, SAFARI_IPHONE, "curl/8.4.0", ""] {
            let l = sign_in(&t, &email, ua).await;
            let r = t
                .http
                .post(t.url("/v1/auth/refresh"))
                .header("cookie", &l.refresh_cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            accesses.push(l.access);
        }
    }
    let projector = projections::by_name("devices").expect("devices is registered");
    runtime::catch_up(&t.db.worker, projector.as_ref())
        .await
        .unwrap();
    let mut live = vec![];
    for table in TABLES {
        live.push(table_contents(&t.db.worker, table).await);
    }
    assert_eq!(live[0].len(), 8, "4 clients × 2 tenants");
    assert_eq!(live[4].len(), 8, "one row per session");
    assert!(
        live[0].iter().any(|r| r.contains("Unknown client")),
        "{:?}",
        live[0]
    );

    // Damage every table, as a buggy deploy might; the rebuild must repair them.
    sqlx::query("DELETE FROM user_devices WHERE device_id IN (SELECT id FROM devices WHERE name = 'curl 8')")
        .execute(&t.db.worker)
        .await
        .unwrap();
    sqlx::query("UPDATE devices SET name = 'tampered'")
        .execute(&t.db.worker)
        .await
        .unwrap();
    sqlx::query("UPDATE user_locations SET last_seen_at = first_seen_at")
        .execute(&t.db.worker)
        .await
        .unwrap();
    sqlx::query("DELETE FROM locations")
        .execute(&t.db.worker)
        .await
        .unwrap();
    sqlx::query("DELETE FROM session_devices")
        .execute(&t.db.worker)
        .await
        .unwrap();

    rebuild(&t.db.worker, projector).await.unwrap();
    for (table, before) in TABLES.iter().zip(&live) {
        assert_eq!(
            &table_contents(&t.db.worker, table).await,
            before,
            "{table} differs after rebuild"
        );
    }
    // The API still answers from the rebuilt tables, under RLS.
    assert_eq!(devices(&t, &accesses[0]).await.len(), 4);
    t.app.stop().await;
}
