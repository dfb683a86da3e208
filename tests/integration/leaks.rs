//! Leaks and bypasses inside one tenant (issue 11, defect 7): a session borrowed by
//! another user's token, idempotent replays served before authentication, another
//! user's file revealed by `duplicate_of`, a purged file's past, and registration
//! telling anyone which emails have accounts.

use chronicle::aggregates::FileCommand;
use chronicle::aggregates::file::{NewVersion, Original};
use chronicle::auth::TokenKeys;
use chronicle::ids::FileId;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::files_api::{Caller, World};

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The claims of an access token (its signature is the server's business).
fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_token_naming_another_users_session_is_refused() {
    let w = World::new(&[]).await;
    let bob = w.join("bob", "user").await;
    let ada = claims(&w.admin.token);
    let mut forged = claims(&bob.token);
    // Signed with the real key: only the session is someone else's (the admin's).
    forged["sid"] = ada["sid"].clone();
    forged["role"] = json!("admin");
    let token = TokenKeys::new(SECRET).sign(&forged).unwrap();
    let thief = Caller { id: bob.id, token };
    let (status, body) = w.send("GET", "/v1/me", &thief).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "session_revoked"),
        "{body}"
    );
    // The same token machinery with Bob's own session still works.
    let mut own = claims(&bob.token);
    own["exp"] = json!(chrono::Utc::now().timestamp() + 600);
    let token = TokenKeys::new(SECRET).sign(&own).unwrap();
    let (status, _) = w.send("GET", "/v1/me", &Caller { id: bob.id, token }).await;
    assert_eq!(status, StatusCode::OK);
    w.t.app.stop().await;
}

fn invite(w: &World, who: &Caller, key: &str) -> reqwest::RequestBuilder {
    w.t.http
        .post(w.t.url("/v1/tenants/current/invitations"))
        .bearer_auth(&who.token)
        .header("idempotency-key", key)
        .json(&json!({"role": "user"}))
}

async fn status_and_code(r: reqwest::RequestBuilder) -> (StatusCode, String) {
    let r = r.send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, code(&body).to_string())
}

#[tokio::test]
async fn a_replay_is_served_only_to_a_live_session_of_the_same_principal_and_role() {
    let w = World::new(&[]).await;
    let invitations = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE event_type = 'InvitationCreated'",
        )
        .fetch_one(&w.t.db.owner)
        .await
        .unwrap();
        n
    };
    let (bob, carol, dave, eve) = (
        w.join("bob", "admin").await,
        w.join("carol", "admin").await,
        w.join("dave", "admin").await,
        w.join("eve", "admin").await,
    );
    let before = invitations().await;
    for who in [&bob, &carol, &dave] {
        assert_eq!(
            invite(&w, who, "k-1").send().await.unwrap().status(),
            StatusCode::CREATED
        );
    }
    // A replay while everything is fine.
    let again = invite(&w, &bob, "k-1").send().await.unwrap();
    assert_eq!(again.headers()["idempotency-replayed"], "true");

    // Logged out: the session is dead, and so is the replay.
    let r =
        w.t.http
            .post(w.t.url("/v1/auth/logout"))
            .bearer_auth(&bob.token);
    assert_eq!(r.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(
        status_and_code(invite(&w, &bob, "k-1")).await,
        (StatusCode::UNAUTHORIZED, "session_revoked".into())
    );
    // Banned.
    let (status, _) = w
        .send("POST", &format!("/v1/users/{}/ban", carol.id), &w.admin)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        status_and_code(invite(&w, &carol, "k-1")).await,
        (StatusCode::UNAUTHORIZED, "user_banned".into())
    );
    // Demoted: an admin's answer is not replayed to a user.
    let path = format!("/v1/users/{}/role", dave.id);
    let (status, _) = w
        .send_json("PUT", &path, &w.admin, Some(json!({"role": "user"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        status_and_code(invite(&w, &dave, "k-1")).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    // Another principal with the same key and body runs its own request.
    let r = invite(&w, &eve, "k-1").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("idempotency-replayed").is_none());
    assert_eq!(
        invitations().await,
        before + 4,
        "bob, carol, dave, eve once each"
    );
    // A refusal is not stored: the same key works once the caller may act again.
    let (status, _) = w
        .send_json("PUT", &path, &w.admin, Some(json!({"role": "admin"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let r = invite(&w, &dave, "k-2").json(&json!({"role": "admin"}));
    assert_eq!(r.send().await.unwrap().status(), StatusCode::CREATED);
    w.t.app.stop().await;
}

#[tokio::test]
async fn duplicate_of_names_another_file_only_to_those_who_may_read_it() {
    let w = World::new(&[]).await;
    let (bob, carol) = (w.join("bob", "user").await, w.join("carol", "user").await);
    let auditor = w.join("audrey", "auditor").await;
    let bobs = w.create(&bob, "bob.pdf").await;
    w.complete(bobs, 1, "same bytes").await;
    // Carol uploads the same bytes; the worker finds Bob's file as the original.
    let carols = w.create(&carol, "carol.pdf").await;
    let sha256 = format!("{:0>64}", "same bytes");
    let steps = [
        FileCommand::Upload(NewVersion {
            filename: "carol.pdf".into(),
            declared_mime: "application/pdf".into(),
            size_bytes: 10,
            temp_location: "tmp/carol".into(),
            sha256: sha256.clone(),
        }),
        FileCommand::StartProcessing {
            version_number: 1,
            attempt: 1,
        },
        FileCommand::RecordHash {
            version_number: 1,
            sha256,
        },
        FileCommand::RecordDuplicate {
            version_number: 1,
            original: Original::OtherFile {
                file_id: FileId(bobs),
                version_number: 1,
            },
        },
    ];
    for step in steps {
        w.run(carols, step).await;
    }
    w.settled().await;
    let path = format!("/v1/files/{carols}/versions");
    let shown = |body: &Value| body[0]["duplicate_of"].clone();
    let (status, body) = w.send("GET", &path, &carol).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        shown(&body),
        Value::Null,
        "Carol may not read Bob's file: {body}"
    );
    assert!(!body.to_string().contains(&bobs.to_string()));
    for reader in [&w.admin, &auditor] {
        let (status, body) = w.send("GET", &path, reader).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(shown(&body)["file_id"], bobs.to_string(), "{body}");
        assert_eq!(shown(&body)["version_number"], 1);
    }
    w.t.app.stop().await;
}

#[tokio::test]
async fn a_purged_files_past_is_gone_for_its_owner_and_kept_for_auditors() {
    let w = World::new(&[]).await;
    let bob = w.join("bob", "user").await;
    let auditor = w.join("audrey", "auditor").await;
    let file = w.create(&bob, "secret-plans.pdf").await;
    w.complete(file, 1, "plans").await;
    let at = format!("/v1/files/{file}?at_version=2");
    let as_of = format!(
        "/v1/files/{file}?as_of={}",
        (chrono::Utc::now() + chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            .replace('+', "%2B")
    );
    let history = format!("/v1/files/{file}/history");
    assert_eq!(w.send("GET", &at, &bob).await.0, StatusCode::OK);
    let (status, _) = w
        .send("DELETE", &format!("/v1/files/{file}?purge=true"), &bob)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The owner: gone from every read, its past included.
    for path in [&at, &format!("/v1/files/{file}?at_version=1")] {
        let (status, body) = w.send("GET", path, &bob).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}: {body}"
        );
        assert!(!body.to_string().contains("secret-plans"));
    }
    let (status, body) = w.send("GET", &as_of, &bob).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = w.send("GET", &history, &bob).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Auditors and admins keep the audit trail: history and time travel before the purge.
    for reader in [&auditor, &w.admin] {
        let (status, body) = w.send("GET", &at, reader).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["display_name"], "secret-plans.pdf");
        let (status, body) = w.send("GET", &history, reader).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // After the purge the file is gone for them too, like the live file.
        let (status, _) = w.send("GET", &as_of, reader).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    w.t.app.stop().await;
}

#[tokio::test]
async fn registration_tells_only_a_few_times_per_hour_which_emails_are_taken() {
    let w = World::new(&[("TRUST_PROXY_HEADERS", "true")]).await;
    let register = |email: &str, from: &str| {
        let body = json!({"tenant_name": "probe", "handle": "probe", "name": "Probe", "email": email, "password": "correct horse battery staple"});
        w.t.http
            .post(w.t.url("/v1/auth/register"))
            .header("x-forwarded-for", from)
            .json(&body)
    };
    let prober = "203.0.113.7";
    // A person who forgot their account is told (ada@example.com exists).
    for _ in 0..5 {
        assert_eq!(
            status_and_code(register("ada@example.com", prober)).await,
            (StatusCode::CONFLICT, "already_exists".into())
        );
    }
    // Beyond that, the address learns nothing more: taken or not, it waits.
    for email in ["ada@example.com", "nobody-yet@example.com"] {
        let r = register(email, prober).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{email}");
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&retry), "{retry}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(code(&body), "rate_limited");
    }
    let created: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM credentials WHERE email = 'nobody-yet@example.com'",
    )
    .fetch_one(&w.t.db.owner)
    .await
    .unwrap();
    assert_eq!(created, 0, "nothing recorded");
    // Other addresses, and new emails, are not affected.
    let r = register("nobody-yet@example.com", "198.51.100.2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    w.t.app.stop().await;
}
