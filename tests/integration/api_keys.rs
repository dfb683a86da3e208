//! API keys against the real services (docs/api-keys.md): an admin creates a key, the
//! key uploads as its own actor, and revocation, expiry and the creator's demotion are
//! refused on the very next request; scopes narrow a key; keys never manage keys; each
//! key has its own rate-limit budget; bad input is refused with nothing recorded.

use std::time::Duration;

use chronicle::app::Mode;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::common::{
    TestApp, hang_up_over, median_of_three, no_standing_change_pending, raw_request,
};

async fn app(overrides: &[(&str, &str)]) -> TestApp {
    let mut all = vec![("AUTH_RATE_LIMIT_PER_MINUTE", "1000")];
    all.extend_from_slice(overrides);
    TestApp::spawn(Mode::Serve, &all).await
}

/// A new tenant's first user (an admin): its access token.
async fn admin(t: &TestApp, handle: &str) -> String {
    t.signup(handle).await.token
}

async fn create_key(t: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    let r = t
        .http
        .post(t.url("/v1/api-keys"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn new_key(t: &TestApp, token: &str, body: Value) -> (String, String) {
    let (status, created) = create_key(t, token, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    )
}

async fn upload(t: &TestApp, key: &str, name: &str) -> reqwest::Response {
    let form = Form::new().part(
        "file",
        Part::bytes(format!("hello from {name}").into_bytes()).file_name(name.to_string()),
    );
    t.http
        .post(t.url("/v1/files"))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap()
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
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or_default();
    (status, code.to_string())
}

/// Polls `path` (as `token`) until `done` holds for its JSON, for read tables.
async fn poll_json(t: &TestApp, path: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let body: Value = get(t, path, token).await.json().await.unwrap();
        if done(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never got there");
}

#[tokio::test]
async fn a_key_uploads_as_itself_until_it_is_revoked() {
    let t = app(&[]).await;
    let ada = admin(&t, "ada").await;
    let (id, key) = new_key(&t, &ada, json!({"name": "backup job"})).await;
    assert!(key.starts_with("chk_"));

    let r = upload(&t, &key, "a.txt").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let file: Value = r.json().await.unwrap();
    let file_id = file["file_id"].as_str().unwrap().to_string();
    // The key owns what it uploads: it reads it back (once the read table has it); the
    // log names the key.
    let listed = poll_json(&t, "/v1/files", &key, |b| {
        b["items"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    assert_eq!(listed["items"][0]["id"], file_id.as_str());
    assert_eq!(
        get(&t, &format!("/v1/files/{file_id}"), &key)
            .await
            .status(),
        StatusCode::OK
    );
    let actor = format!("key:{id}");
    let audit = poll_json(
        &t,
        &format!("/v1/audit?target_type=file&target_id={file_id}"),
        &ada,
        |b| b["items"].as_array().is_some_and(|i| !i.is_empty()),
    )
    .await;
    let first = &audit["items"][0];
    assert_eq!(first["actor"], actor.as_str(), "{audit}");
    assert_eq!(first["actor_type"], "api_key");
    // The listing shows it (never the secret), with its last use.
    let keys = poll_json(&t, "/v1/api-keys", &ada, |b| {
        b[0]["last_used_at"].is_string()
    })
    .await;
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let listed = &keys[0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["name"], "backup job");
    assert_eq!(listed["role"], "user");
    assert!(listed["scopes"].is_null());
    assert!(key.starts_with(listed["prefix"].as_str().unwrap()));
    assert_eq!(listed["prefix"].as_str().unwrap().len(), 12);
    assert!(!keys.to_string().contains(&key[4..20]), "the secret leaks");

    // Revoked: the very next request is refused, whatever the read tables say.
    let r = t
        .http
        .delete(t.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        code(upload(&t, &key, "b.txt").await).await,
        (StatusCode::UNAUTHORIZED, "api_key_revoked".into())
    );
    assert_eq!(
        code(get(&t, "/v1/files", &key).await).await,
        (StatusCode::UNAUTHORIZED, "api_key_revoked".into())
    );
    // Revoking again is a no-op; the listing shows when.
    let again = t
        .http
        .delete(t.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    poll_json(&t, "/v1/api-keys", &ada, |b| b[0]["revoked_at"].is_string()).await;
}

#[tokio::test]
async fn scopes_narrow_a_key_and_keys_never_manage_keys() {
    let t = app(&[]).await;
    let ada = admin(&t, "ada").await;
    let (_, reader) = new_key(
        &t,
        &ada,
        json!({"name": "reader", "scopes": ["files:read"]}),
    )
    .await;
    assert_eq!(
        code(upload(&t, &reader, "a.txt").await).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    assert_eq!(get(&t, "/v1/files", &reader).await.status(), StatusCode::OK);

    let (_, writer) = new_key(
        &t,
        &ada,
        json!({"name": "drop box", "scopes": ["files:write"]}),
    )
    .await;
    assert_eq!(
        upload(&t, &writer, "a.txt").await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        code(get(&t, "/v1/files", &writer).await).await.0,
        StatusCode::FORBIDDEN
    );

    // An admin key narrowed to reading files: every file of the tenant, nothing else.
    let (_, admin_reader) = new_key(
        &t,
        &ada,
        json!({"name": "indexer", "role": "admin", "scopes": ["files:read"]}),
    )
    .await;
    assert_eq!(
        get(&t, "/v1/files", &admin_reader).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        code(get(&t, "/v1/audit", &admin_reader).await).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        code(get(&t, "/v1/jobs", &admin_reader).await).await.0,
        StatusCode::FORBIDDEN
    );

    // An auditor key with audit:read reads the log.
    let (_, auditor) = new_key(
        &t,
        &ada,
        json!({"name": "siem", "role": "auditor", "scopes": ["audit:read"]}),
    )
    .await;
    assert_eq!(
        get(&t, "/v1/audit", &auditor).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        code(upload(&t, &auditor, "x.txt").await).await.0,
        StatusCode::FORBIDDEN
    );

    // Even an unrestricted admin key administers the tenant but manages no keys.
    let (_, admin_key) = new_key(&t, &ada, json!({"name": "ops", "role": "admin"})).await;
    assert_eq!(
        get(&t, "/v1/jobs", &admin_key).await.status(),
        StatusCode::OK
    );
    let (status, body) = create_key(&t, &admin_key, json!({"name": "child"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        code(get(&t, "/v1/api-keys", &admin_key).await).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn expiry_and_the_creators_demotion_bite_on_the_next_request() {
    let t = app(&[]).await;
    let ada = admin(&t, "ada").await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (_, short) = new_key(&t, &ada, json!({"name": "short", "expires_at": soon})).await;
    assert_eq!(get(&t, "/v1/files", &short).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        code(get(&t, "/v1/files", &short).await).await,
        (StatusCode::UNAUTHORIZED, "api_key_expired".into())
    );

    // The creator stops being an admin: their keys stop with them. (A second admin joins
    // first: a tenant's last admin cannot step down.)
    t.join(&ada, "bea", "admin").await;
    let (_, key) = new_key(&t, &ada, json!({"name": "ops"})).await;
    assert_eq!(get(&t, "/v1/files", &key).await.status(), StatusCode::OK);
    let me: Value = get(&t, "/v1/me", &ada).await.json().await.unwrap();
    let r = t
        .http
        .put(t.url(&format!("/v1/users/{}/role", me["id"].as_str().unwrap())))
        .bearer_auth(&ada)
        .json(&json!({"role": "user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        code(get(&t, "/v1/files", &key).await).await,
        (StatusCode::UNAUTHORIZED, "api_key_creator_removed".into())
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_records_nothing() {
    let t = app(&[]).await;
    let ada = admin(&t, "ada").await;
    let past = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    for (body, status) in [
        (
            json!({"name": "x", "scopes": ["files:delete"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x", "scopes": ["audit:read"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x", "role": "auditor", "scopes": ["files:write"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x", "scopes": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"name": "   "}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"name": "a".repeat(101)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x", "role": "system_worker"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x", "expires_at": past}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x", "expires_at": "tomorrow"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x", "secret": "mine"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (got, answer) = create_key(&t, &ada, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(
            answer["error"]["code"], "validation_failed",
            "{body}: {answer}"
        );
    }
    let keys: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'api_key'")
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    assert_eq!(keys, 0, "a refused key left events");

    // A user (not an admin) manages no keys; an unknown key cannot be revoked.
    let unknown = uuid::Uuid::now_v7();
    let r = t
        .http
        .delete(t.url(&format!("/v1/api-keys/{unknown}")))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await.0, StatusCode::NOT_FOUND);

    // Forged and mangled keys are refused, one code for all.
    let (_, key) = new_key(&t, &ada, json!({"name": "real"})).await;
    let (secret, ids) = key.split_once('.').unwrap();
    let other_secret = format!("chk_{}", "A".repeat(43));
    for bad in [
        format!("{other_secret}.{ids}"),
        format!("{secret}.{}", "A".repeat(43)),
        secret.to_string(),
        "chk_".to_string(),
        format!("{key}x"),
    ] {
        assert_eq!(
            code(get(&t, "/v1/files", &bad).await).await,
            (StatusCode::UNAUTHORIZED, "api_key_invalid".into()),
            "{bad}"
        );
    }
    // Another tenant's admin cannot see or revoke it.
    let bob = admin(&t, "bob").await;
    let listed: Value = get(&t, "/v1/api-keys", &bob).await.json().await.unwrap();
    assert_eq!(listed, json!([]));
    let key_id = poll_json(&t, "/v1/api-keys", &ada, |b| b[0]["id"].is_string()).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = t
        .http
        .delete(t.url(&format!("/v1/api-keys/{key_id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&t, "/v1/files", &key).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn each_key_spends_its_own_rate_limit_budget() {
    let t = app(&[("RATE_LIMIT_PER_MINUTE", "5")]).await;
    let ada = admin(&t, "ada").await;
    let (_, key) = new_key(&t, &ada, json!({"name": "busy"})).await;
    let (_, other) = new_key(&t, &ada, json!({"name": "quiet"})).await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(get(&t, "/v1/files", &key).await.status());
    }
    assert!(
        statuses[..3].iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(
        *statuses.last().unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "{statuses:?}"
    );
    // Neither the other key nor the admin who made them is held back.
    assert_eq!(get(&t, "/v1/files", &other).await.status(), StatusCode::OK);
    assert_eq!(get(&t, "/v1/files", &ada).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_revocation_whose_client_hangs_up_still_ends_its_announcement() {
    // A revocation changes someone's standing, so every instance must see it on its next
    // request: it is announced (the tenant's standing epoch: `pending` + 1), committed,
    // then ended (`pending` - 1; docs/auth-cache.md). A client that hangs up makes hyper
    // drop its request wherever it waits; dropped between the announcement and its end,
    // the tenant's epoch stayed pending for five minutes (`PENDING_TTL`), and every
    // request of the tenant read the log instead of what the instances remember.
    const CUTS: usize = 60;
    let t = app(&[("RATE_LIMIT_PER_MINUTE", "100000")]).await;
    let ada = t.signup("ada").await;
    let mut ids = Vec::new();
    for i in 0..3 + CUTS {
        let (id, _) = new_key(
            &t,
            &ada.token,
            json!({"name": format!("k{i}"), "role": "user"}),
        )
        .await;
        ids.push(id);
    }
    let bearer = format!("Bearer {}", ada.token);
    let revocation = |id: &str| {
        let line = format!("DELETE /v1/api-keys/{id}");
        raw_request(&t, &line, &[("authorization", bearer.as_str())], b"")
    };
    let whole = median_of_three(&t, 204, async |i| revocation(&ids[i as usize])).await;
    let requests: Vec<_> = ids[3..].iter().map(|id| revocation(id)).collect();
    let answered = hang_up_over(&t, "revocations", (whole, Duration::ZERO), &requests).await;

    no_standing_change_pending(&t, &ada.tenant_id).await;
    let revoked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'ApiKeyRevoked'")
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    assert!(
        revoked >= 3 + answered,
        "every answered revocation committed"
    );
}
