//! Accounts and the edge of trust: registration, login, refresh rotation with reuse
//! detection, logout, bans and revocations taking effect on the next request, token
//! attacks, and tenants that cannot see each other.

use chronicle::app::Mode;
use chronicle::auth::TokenKeys;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestApp;

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
use crate::common::PASSWORD;

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

struct Account {
    tenant_id: String,
    user_id: String,
    access: String,
    refresh_cookie: String,
    session_id: String,
}

fn refresh_cookie(r: &reqwest::Response) -> String {
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly")
            && set.contains("Secure")
            && set.contains("SameSite=Lax")
            && set.contains("Path=/v1/auth"),
        "{set}"
    );
    set.split(';').next().unwrap().to_string()
}

async fn account(t: &TestApp, handle: &str) -> Account {
    let email = format!("{handle}@example.com");
    let r = t.register(json!({"tenant_name": format!("{handle} inc"), "handle": handle, "name": handle, "email": email, "password": PASSWORD})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let ids: Value = r.json().await.unwrap();
    signed_in(t, &email, &ids).await
}

async fn signed_in(t: &TestApp, email: &str, ids: &Value) -> Account {
    let r = t.login(email).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = refresh_cookie(&r);
    let body: Value = r.json().await.unwrap();
    Account {
        tenant_id: ids["tenant_id"].as_str().unwrap().into(),
        user_id: ids["user_id"].as_str().unwrap().into(),
        access: body["access_token"].as_str().unwrap().into(),
        refresh_cookie: cookie,
        session_id: body["session_id"].as_str().unwrap().into(),
    }
}

async fn get(t: &TestApp, path: &str, token: &str) -> reqwest::Response {
    t.http
        .get(t.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

async fn refresh(t: &TestApp, cookie: &str) -> reqwest::Response {
    t.http
        .post(t.url("/v1/auth/refresh"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn register_login_and_me() {
    let t = app().await;
    let a = account(&t, "ada").await;
    let me: Value = get(&t, "/v1/me", &a.access).await.json().await.unwrap();
    assert_eq!(me["id"], a.user_id.as_str());
    assert_eq!(me["tenant_id"], a.tenant_id.as_str());
    assert_eq!(me["handle"], "ada");
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["role"], "admin");
    assert_eq!(me["is_banned"], false);

    // Wrong password and unknown account look the same.
    let wrong = t
        .http
        .post(t.url("/v1/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": "not the password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(wrong).await,
        (StatusCode::UNAUTHORIZED, "invalid_credentials".into())
    );
    let unknown = t
        .http
        .post(t.url("/v1/auth/login"))
        .json(&json!({"email": "nobody@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(unknown).await,
        (StatusCode::UNAUTHORIZED, "invalid_credentials".into())
    );

    // The password hash is in no read table.
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND column_name LIKE '%password%' AND table_name <> 'credentials'",
    )
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(leaked, 0);
    let in_log: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%argon2%'")
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    assert_eq!(in_log, 0, "password hashes never enter the event log");
    t.app.stop().await;
}

#[tokio::test]
async fn bad_registrations_change_nothing() {
    let t = app().await;
    account(&t, "ada").await;
    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&t.db.owner)
        .await
        .unwrap();
    let cases = [
        (
            json!({"tenant_name": "x", "handle": "bob", "name": "Bob", "email": "ada@example.com", "password": PASSWORD}),
            StatusCode::CONFLICT,
            "already_exists",
        ),
        (
            json!({"tenant_name": "x", "handle": "bob", "name": "Bob", "email": "bob@example.com", "password": "short"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"tenant_name": "x", "handle": "B O B", "name": "Bob", "email": "bob@example.com", "password": PASSWORD}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"tenant_name": "x", "handle": "bob", "name": "Bob", "email": "not-an-email", "password": PASSWORD}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"handle": "bob", "name": "Bob", "email": "bob@example.com", "password": PASSWORD}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"tenant_name": "x", "handle": "bob"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"tenant_name": "x", "invitation_token": "forged", "handle": "bob", "name": "Bob", "email": "bob@example.com", "password": PASSWORD}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ];
    for (body, status, expected) in cases {
        let r = t.register(body.clone()).await;
        let got = code(r).await;
        assert_eq!(got, (status, expected.to_string()), "{body}");
    }
    let r = t
        .http
        .post(t.url("/v1/auth/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::BAD_REQUEST, "bad_request".into())
    );
    let r = t
        .http
        .post(t.url("/v1/auth/register"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type".into()
        )
    );

    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&t.db.owner)
        .await
        .unwrap();
    assert_eq!(events_after, events_before, "no partial writes");
    let credentials: i64 = sqlx::query_scalar("SELECT count(*) FROM credentials")
        .fetch_one(&t.db.owner)
        .await
        .unwrap();
    assert_eq!(credentials, 1);
    t.app.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_kills_the_whole_session() {
    let t = app().await;
    let a = account(&t, "ada").await;
    let r1 = refresh(&t, &a.refresh_cookie).await;
    assert_eq!(r1.status(), StatusCode::OK);
    let second = refresh_cookie(&r1);
    assert_ne!(second, a.refresh_cookie);
    let body: Value = r1.json().await.unwrap();
    let access2 = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(get(&t, "/v1/me", &access2).await.status(), StatusCode::OK);

    // The first token again: stolen or replayed. The session dies.
    let reuse = refresh(&t, &a.refresh_cookie).await;
    assert_eq!(
        code(reuse).await,
        (StatusCode::UNAUTHORIZED, "refresh_token_reused".into())
    );
    // Every token of the family is dead, on the very next request.
    assert_eq!(
        code(refresh(&t, &second).await).await,
        (StatusCode::UNAUTHORIZED, "session_revoked".into())
    );
    assert_eq!(
        code(get(&t, "/v1/me", &access2).await).await,
        (StatusCode::UNAUTHORIZED, "session_revoked".into())
    );
    assert_eq!(
        code(get(&t, "/v1/me", &a.access).await).await,
        (StatusCode::UNAUTHORIZED, "session_revoked".into())
    );
    // Garbage cookies are refused too.
    assert_eq!(
        code(refresh(&t, "refresh_token=garbage").await).await,
        (StatusCode::UNAUTHORIZED, "refresh_token_invalid".into())
    );
    t.app.stop().await;
}

#[tokio::test]
async fn logout_and_revoked_sessions_are_rejected_on_the_next_request() {
    let t = app().await;
    let a = account(&t, "ada").await;
    // A second login (another device).
    let ids = json!({"tenant_id": a.tenant_id, "user_id": a.user_id});
    let phone = signed_in(&t, "ada@example.com", &ids).await;

    let r = t
        .http
        .delete(t.url(&format!("/v1/sessions/{}", phone.session_id)))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        code(get(&t, "/v1/me", &phone.access).await).await,
        (StatusCode::UNAUTHORIZED, "session_revoked".into())
    );
    assert_eq!(
        get(&t, "/v1/me", &a.access).await.status(),
        StatusCode::OK,
        "the other session lives"
    );

    let r = t
        .http
        .post(t.url("/v1/auth/logout"))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        code(get(&t, "/v1/me", &a.access).await).await,
        (StatusCode::UNAUTHORIZED, "session_revoked".into())
    );
    assert_eq!(
        code(refresh(&t, &a.refresh_cookie).await).await,
        (StatusCode::UNAUTHORIZED, "session_revoked".into())
    );
    t.app.stop().await;
}

#[tokio::test]
async fn invitations_roles_and_bans() {
    let t = app().await;
    let admin = account(&t, "ada").await;
    let r = t
        .http
        .post(t.url("/v1/tenants/current/invitations"))
        .bearer_auth(&admin.access)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let invitation: Value = r.json().await.unwrap();
    let token = invitation["invitation_token"].as_str().unwrap();
    let body = json!({"invitation_token": token, "handle": "bob", "name": "Bob", "email": "bob@example.com", "password": PASSWORD});
    let r = t.register(body.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let ids: Value = r.json().await.unwrap();
    assert_eq!(
        ids["tenant_id"],
        admin.tenant_id.as_str(),
        "joined the inviting tenant"
    );
    // An invitation works once.
    let again = t.register(json!({"invitation_token": token, "handle": "eve", "name": "Eve", "email": "eve@example.com", "password": PASSWORD})).await;
    assert_eq!(code(again).await.0, StatusCode::UNPROCESSABLE_ENTITY);

    let bob = signed_in(&t, "bob@example.com", &ids).await;
    let me: Value = get(&t, "/v1/me", &bob.access).await.json().await.unwrap();
    assert_eq!(me["role"], "user");

    // A plain user may not administer.
    let r = t
        .http
        .post(t.url(&format!("/v1/users/{}/ban", admin.user_id)))
        .bearer_auth(&bob.access)
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (StatusCode::FORBIDDEN, "forbidden".into()));
    let r = t
        .http
        .post(t.url("/v1/tenants/current/invitations"))
        .bearer_auth(&bob.access)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The admin changes Bob's role, then bans him: his live token dies at once.
    let r = t
        .http
        .put(t.url(&format!("/v1/users/{}/role", bob.user_id)))
        .bearer_auth(&admin.access)
        .json(&json!({"role": "auditor"}))
        .send()
        .await
        .unwrap();
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["role"], "auditor");
    let r = t
        .http
        .post(t.url(&format!("/v1/users/{}/ban", bob.user_id)))
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        code(get(&t, "/v1/me", &bob.access).await).await,
        (StatusCode::UNAUTHORIZED, "user_banned".into())
    );
    assert_eq!(
        code(t.login("bob@example.com").await).await,
        (StatusCode::UNAUTHORIZED, "user_banned".into())
    );
    assert_eq!(
        code(refresh(&t, &bob.refresh_cookie).await).await,
        (StatusCode::UNAUTHORIZED, "user_banned".into())
    );
    let r = t
        .http
        .post(t.url(&format!("/v1/users/{}/unban", bob.user_id)))
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        get(&t, "/v1/me", &bob.access).await.status(),
        StatusCode::OK
    );
    t.app.stop().await;
}

#[tokio::test]
async fn every_token_attack_is_refused_with_its_own_code() {
    let t = app().await;
    let a = account(&t, "ada").await;
    let keys = TokenKeys::new(SECRET);
    let other_keys = TokenKeys::new(&"f".repeat(64));
    let now = chrono::Utc::now().timestamp();
    let claims = |purpose: &str, exp: i64| json!({"sub": a.user_id, "tenant": a.tenant_id, "role": "admin", "sid": a.session_id, "purpose": purpose, "iat": now, "exp": exp});
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none_token = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims("access", now + 600))
    );
    let hs512 = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "HS512", "typ": "JWT"})),
        b64(&claims("access", now + 600)),
        "c2ln"
    );
    let cases: Vec<(String, &str)> = vec![
        (none_token, "token_algorithm_invalid"),
        (hs512, "token_algorithm_invalid"),
        (
            other_keys.sign(&claims("access", now + 600)).unwrap(),
            "token_signature_invalid",
        ),
        (
            keys.sign(&claims("access", now - 10)).unwrap(),
            "token_expired",
        ),
        (
            keys.sign(&claims("refresh", now + 600)).unwrap(),
            "token_purpose_invalid",
        ),
        (
            keys.sign(&json!({"sub": a.user_id, "exp": now + 600}))
                .unwrap(),
            "token_purpose_invalid",
        ),
        ("not.a.jwt".to_string(), "token_malformed"),
        ("garbage".to_string(), "token_malformed"),
    ];
    for (token, expected) in cases {
        assert_eq!(
            code(get(&t, "/v1/me", &token).await).await,
            (StatusCode::UNAUTHORIZED, expected.to_string()),
            "{token}"
        );
    }
    assert_eq!(
        code(t.http.get(t.url("/v1/me")).send().await.unwrap()).await,
        (StatusCode::UNAUTHORIZED, "token_missing".into())
    );
    let r = t
        .http
        .get(t.url("/v1/me"))
        .header("authorization", format!("Basic {}", a.access))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::UNAUTHORIZED, "token_malformed".into())
    );
    // A token we minted, with the right key, still works.
    let good = keys.sign(&claims("access", now + 600)).unwrap();
    assert_eq!(get(&t, "/v1/me", &good).await.status(), StatusCode::OK);
    t.app.stop().await;
}

#[tokio::test]
async fn tenants_cannot_reach_each_other() {
    let t = app().await;
    let a = account(&t, "ada").await;
    let b = account(&t, "bob").await;
    // Every endpoint that takes an id, called by A with B's ids: 404, never data, never 403.
    let probes = [
        t.http
            .put(t.url(&format!("/v1/users/{}/role", b.user_id)))
            .bearer_auth(&a.access)
            .json(&json!({"role": "user"})),
        t.http
            .post(t.url(&format!("/v1/users/{}/ban", b.user_id)))
            .bearer_auth(&a.access),
        t.http
            .post(t.url(&format!("/v1/users/{}/unban", b.user_id)))
            .bearer_auth(&a.access),
        t.http
            .delete(t.url(&format!("/v1/sessions/{}", b.session_id)))
            .bearer_auth(&a.access),
    ];
    for probe in probes {
        let r = probe.send().await.unwrap();
        assert_eq!(code(r).await.0, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        get(&t, "/v1/me", &b.access).await.status(),
        StatusCode::OK,
        "B untouched"
    );

    // Listing shows only the caller's own sessions (wait for the projector).
    let list = crate::common::eventually_some("A's session is projected", async || {
        let sessions: Value = get(&t, "/v1/sessions", &a.access)
            .await
            .json()
            .await
            .unwrap();
        let list = sessions.as_array().unwrap().clone();
        assert!(
            list.iter().all(|s| s["id"] != b.session_id.as_str()),
            "B's session leaked"
        );
        (list.len() == 1).then_some(list)
    })
    .await;
    assert_eq!(list[0]["id"], a.session_id.as_str());
    assert_eq!(list[0]["current"], true);

    // Wait until B's rows exist, so the check below is not vacuous.
    crate::common::eventually("B's user row is projected", async || {
        let rows_of_b: i64 =
            sqlx::query_scalar("SELECT count(*) FROM users WHERE tenant_id = $1::uuid")
                .bind(&b.tenant_id)
                .fetch_one(&t.db.worker)
                .await
                .unwrap();
        rows_of_b == 1
    })
    .await;
    // Raw SQL as the API's role, under A's tenant: no row of B in any read table.
    for table in ["tenants", "users", "sessions", "audit_logs", "stream_heads"] {
        let mut tx = t.db.app.begin().await.unwrap();
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(&a.tenant_id)
            .execute(&mut *tx)
            .await
            .unwrap();
        let foreign: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} WHERE tenant_id <> $1::uuid"
        ))
        .bind(&a.tenant_id)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(foreign, 0, "{table} shows another tenant's rows");
    }
    t.app.stop().await;
}

#[tokio::test]
async fn password_guessing_is_rate_limited_per_account_and_per_ip() {
    let t = TestApp::spawn(
        Mode::Serve,
        &[("JWT_SECRET", SECRET), ("AUTH_RATE_LIMIT_PER_MINUTE", "4")],
    )
    .await;
    let r = t.register(json!({"tenant_name": "x", "handle": "ada", "name": "Ada", "email": "ada@example.com", "password": PASSWORD})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let guess = || {
        t.http
            .post(t.url("/v1/auth/login"))
            .json(&json!({"email": "ADA@example.com ", "password": "guess guess guess"}))
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(guess().await.unwrap().status());
    }
    // register + 3 guesses fit the per-IP budget of 4; the next request does not.
    assert_eq!(&statuses[..3], &[StatusCode::UNAUTHORIZED; 3]);
    let limited = guess().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(code(limited).await.1, "rate_limited");
    t.app.stop().await;
}

#[tokio::test]
async fn a_demotion_takes_effect_on_the_next_request() {
    let t = app().await;
    let ada = account(&t, "ada").await;
    let r = t
        .http
        .post(t.url("/v1/tenants/current/invitations"))
        .bearer_auth(&ada.access)
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    let invitation: Value = r.json().await.unwrap();
    let body = json!({"invitation_token": invitation["invitation_token"], "handle": "bob", "name": "Bob", "email": "bob@example.com", "password": PASSWORD});
    let ids: Value = t.register(body).await.json().await.unwrap();
    let bob = signed_in(&t, "bob@example.com", &ids).await;
    let invite = |token: &str| {
        t.http
            .post(t.url("/v1/tenants/current/invitations"))
            .bearer_auth(token.to_string())
            .json(&json!({}))
            .send()
    };
    assert_eq!(
        invite(&bob.access).await.unwrap().status(),
        StatusCode::CREATED,
        "Bob is an admin"
    );

    let r = t
        .http
        .put(t.url(&format!("/v1/users/{}/role", bob.user_id)))
        .bearer_auth(&ada.access)
        .json(&json!({"role": "user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Bob's access token still says "admin"; the log says otherwise, and the log wins.
    assert_eq!(
        code(invite(&bob.access).await.unwrap()).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    t.app.stop().await;
}
