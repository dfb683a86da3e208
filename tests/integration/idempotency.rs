//! Idempotency keys: replays are byte-identical and cause no second effect; a reused
//! key with another body is refused; concurrent duplicates produce one effect; the key
//! is marked in the same transaction as the events.

use chronicle::aggregates::{File, FileCommand};
use chronicle::app::Mode;
use chronicle::commands;
use chronicle::ids::{TenantId, UserId};
use chronicle::store::idempotency::{self as keys, CURRENT, IdempotencyMarker};
use chronicle::store::{Actor, ChronicleStore, EventLog, EventMetadata};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, TestDb, median_of_three, raw_request, retried_after_hang_ups};

use crate::common::PASSWORD;

async fn admin(t: &TestApp) -> String {
    let r = t.http.post(t.url("/v1/auth/register"))
        .json(&json!({"tenant_name": "acme", "handle": "ada", "name": "Ada", "email": "ada@example.com", "password": PASSWORD}))
        .send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = t
        .http
        .post(t.url("/v1/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

async fn invitations(t: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'InvitationCreated'")
        .fetch_one(&t.db.owner)
        .await
        .unwrap()
}

fn invite(t: &TestApp, token: &str, key: &str, role: &str) -> reqwest::RequestBuilder {
    t.http
        .post(t.url("/v1/tenants/current/invitations"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({"role": role}))
}

#[tokio::test]
async fn a_replay_returns_the_same_bytes_and_changes_nothing() {
    let t = TestApp::spawn(Mode::Web, &[("AUTH_RATE_LIMIT_PER_MINUTE", "1000")]).await;
    let token = admin(&t).await;
    let first = invite(&t, &token, "key-1", "user").send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotency-replayed").is_none());
    let first_body = first.bytes().await.unwrap();

    let again = invite(&t, &token, "key-1", "user").send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first_body, "byte-identical");
    assert_eq!(invitations(&t).await, 1, "no second effect");

    // Same key, different request.
    let reused = invite(&t, &token, "key-1", "admin").send().await.unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = reused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    // A new key is a new request.
    assert_eq!(
        invite(&t, &token, "key-2", "user")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(invitations(&t).await, 2);
    // Keys are checked.
    let bad = invite(&t, &token, "has space", "user")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    t.app.stop().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_have_one_effect() {
    let t = TestApp::spawn(Mode::Web, &[("AUTH_RATE_LIMIT_PER_MINUTE", "1000")]).await;
    let token = admin(&t).await;
    let requests: Vec<_> = (0..12)
        .map(|_| invite(&t, &token, "same-key", "user").send())
        .collect();
    let responses = futures::future::join_all(requests).await;
    let mut bodies = Vec::new();
    for r in responses {
        let r = r.unwrap();
        match r.status() {
            StatusCode::CREATED => bodies.push(r.bytes().await.unwrap()),
            StatusCode::CONFLICT => {
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "idempotency_key_in_progress");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(!bodies.is_empty());
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every success is the same response"
    );
    assert_eq!(invitations(&t).await, 1, "exactly one effect");
    t.app.stop().await;
}

#[tokio::test]
async fn registration_with_a_key_creates_one_tenant() {
    let t = TestApp::spawn(Mode::Web, &[("AUTH_RATE_LIMIT_PER_MINUTE", "1000")]).await;
    let body = json!({"tenant_name": "acme", "handle": "ada", "name": "Ada", "email": "ada@example.com", "password": PASSWORD});
    let a = t
        .http
        .post(t.url("/v1/auth/register"))
        .header("idempotency-key", "reg-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    let b = t
        .http
        .post(t.url("/v1/auth/register"))
        .header("idempotency-key", "reg-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (a.status(), b.status()),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(a.bytes().await.unwrap(), b.bytes().await.unwrap());
    let tenants: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'TenantCreated'")
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    assert_eq!(tenants, 1);
    t.app.stop().await;
}

#[tokio::test]
async fn the_key_is_marked_in_the_same_transaction_as_the_events() {
    let db = TestDb::new().await;
    let tenant = TenantId::new();
    let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), tenant, 100);
    let m = EventMetadata::system(tenant, Actor::System("test"));
    for (key, conflicting) in [("k-ok", false), ("k-fail", true)] {
        let claim = uuid::Uuid::new_v4();
        sqlx::query("INSERT INTO idempotency_keys (scope, key, fingerprint, state, claim) VALUES ('s', $1, 'f', 'in_progress', $2)")
            .bind(key)
            .bind(claim)
            .execute(&db.owner)
            .await
            .unwrap();
        let marker = IdempotencyMarker {
            scope: "s".into(),
            key: key.into(),
            claim,
        };
        let command = if conflicting {
            // Fails in the domain: nothing is appended, so the key must stay in progress.
            FileCommand::Rename {
                display_name: "x".into(),
            }
        } else {
            FileCommand::Create {
                owner_id: UserId::new(),
                display_name: "a".into(),
            }
        };
        let id = uuid::Uuid::now_v7().to_string();
        let _ = CURRENT
            .scope(marker, commands::execute(&store, &id, command, &m, &()))
            .await;
        let state: String = sqlx::query_scalar("SELECT state FROM idempotency_keys WHERE key = $1")
            .bind(key)
            .fetch_one(&db.owner)
            .await
            .unwrap();
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
            .bind(&id)
            .fetch_one(&db.owner)
            .await
            .unwrap();
        assert_eq!(
            (state.as_str(), events),
            if conflicting {
                ("in_progress", 0)
            } else {
                ("committed", 1)
            }
        );
    }
}

/// A key whose lease lapsed while its request was slow, not dead, is taken over by the
/// retry; the slow request's commit then appends nothing — also when its append shares
/// a group commit with other writers', which all go through — and it can neither store
/// an answer for the key nor free it. One effect, the retry's.
#[tokio::test]
async fn a_request_whose_key_was_taken_over_after_its_lease_commits_nothing() {
    let db = TestDb::new().await;
    let tenant = TenantId::new();
    let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), tenant, 100);
    let m = EventMetadata::system(tenant, Actor::System("test"));
    let (slow, retry) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, state, claim, locked_until)
         VALUES ('s', 'k', 'f', 'in_progress', $1, now() - interval '1 second')",
    )
    .bind(slow)
    .execute(&db.owner)
    .await
    .unwrap();
    assert!(
        keys::take_over_lapsed(&db.app, "s", "k", retry, std::time::Duration::from_secs(60))
            .await
            .unwrap()
    );

    let marker = |claim| IdempotencyMarker {
        scope: "s".into(),
        key: "k".into(),
        claim,
    };
    let create = |name: &str| FileCommand::Create {
        owner_id: UserId::new(),
        display_name: name.into(),
    };
    let events_of = async |id: &str| -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
            .bind(id)
            .fetch_one(&db.owner)
            .await
            .unwrap()
    };
    let slow_id = uuid::Uuid::now_v7().to_string();
    let others: Vec<String> = (0..20).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let slow_commit = CURRENT.scope(
        marker(slow),
        commands::execute(&store, &slow_id, create("slow"), &m, &()),
    );
    let other_commits = futures::future::join_all(
        others
            .iter()
            .map(|id| commands::execute(&store, id, create("other"), &m, &())),
    );
    let (slow_result, other_results) = tokio::join!(slow_commit, other_commits);
    assert!(
        matches!(slow_result, Err(commands::CommandError::KeyTakenOver)),
        "{slow_result:?}"
    );
    assert_eq!(events_of(&slow_id).await, 0);
    for (id, result) in others.iter().zip(other_results) {
        result.unwrap();
        assert_eq!(events_of(id).await, 1);
    }

    // Alone in its commit, the same.
    let alone_id = uuid::Uuid::now_v7().to_string();
    let alone = CURRENT
        .scope(
            marker(slow),
            commands::execute(&store, &alone_id, create("slow"), &m, &()),
        )
        .await;
    assert!(
        matches!(alone, Err(commands::CommandError::KeyTakenOver)),
        "{alone:?}"
    );
    assert_eq!(events_of(&alone_id).await, 0);

    // The slow request's answer and release touch nothing of the retry's.
    keys::complete(&db.app, "s", "k", slow, 500, None, b"late")
        .await
        .unwrap();
    keys::release(&db.app, "s", "k", slow).await.unwrap();
    let retry_id = uuid::Uuid::now_v7().to_string();
    CURRENT
        .scope(
            marker(retry),
            commands::execute(&store, &retry_id, create("retry"), &m, &()),
        )
        .await
        .unwrap();
    assert_eq!(events_of(&retry_id).await, 1);
    let (state, status): (String, Option<i32>) =
        sqlx::query_as("SELECT state, status FROM idempotency_keys WHERE key = 'k'")
            .fetch_one(&db.owner)
            .await
            .unwrap();
    assert_eq!((state.as_str(), status), ("committed", None));
}

#[tokio::test]
async fn a_request_applied_before_a_crash_is_not_run_again() {
    let t = TestApp::spawn(Mode::Web, &[("AUTH_RATE_LIMIT_PER_MINUTE", "1000")]).await;
    let token = admin(&t).await;
    assert_eq!(
        invite(&t, &token, "crashy", "user")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    // Simulate a crash after the events committed but before the response was stored.
    sqlx::query("UPDATE idempotency_keys SET state = 'committed', status = NULL, body = NULL WHERE key = 'crashy'")
        .execute(&t.db.owner)
        .await
        .unwrap();
    let retry = invite(&t, &token, "crashy", "user").send().await.unwrap();
    assert_eq!(retry.status(), StatusCode::CONFLICT);
    assert_eq!(invitations(&t).await, 1, "the command did not run twice");
    t.app.stop().await;
}

/// Without credentials, a keyed request to an authenticated route is answered by its
/// handler (`401`), whatever other anonymous callers sent with the same key: anonymous
/// keys are neither claimed nor compared outside registration.
#[tokio::test]
async fn an_anonymous_keyed_request_gets_401_not_another_callers_key_state() {
    let t = TestApp::spawn(Mode::Web, &[("AUTH_RATE_LIMIT_PER_MINUTE", "1000")]).await;
    // Someone registers with the key first: that answer is stored for "anonymous".
    let registered = t
        .http
        .post(t.url("/v1/auth/register"))
        .header("Idempotency-Key", "shared-key")
        .json(
            &json!({"tenant_name": "Acme", "handle": "ada", "name": "Ada",
                      "email": "ada@example.com", "password": PASSWORD}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    for body in [
        json!({"email": "a@example.com", "role": "user"}),
        json!({"email": "b@example.com", "role": "admin"}),
    ] {
        let r = t
            .http
            .post(t.url("/v1/tenants/current/invitations"))
            .header("Idempotency-Key", "shared-key")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    let claimed: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&t.db.owner)
        .await
        .unwrap();
    assert_eq!(claimed, 1, "only the registration's key is claimed");
}

/// Keys belong to routes and methods that exist: a wrong method is `405` with `Allow`,
/// in the error shape, whatever key it carries — neither compared with the key's first
/// request (which would answer `422 idempotency_key_reused`) nor claimed.
#[tokio::test]
async fn a_wrong_method_with_a_key_is_405_and_claims_nothing() {
    let t = TestApp::spawn(Mode::Web, &[("AUTH_RATE_LIMIT_PER_MINUTE", "1000")]).await;
    let token = admin(&t).await;
    let first = invite(&t, &token, "key-1", "user").send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let keys = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM idempotency_keys")
            .fetch_one(&t.db.owner)
            .await
            .unwrap()
    };
    assert_eq!(keys().await, 1);

    for (method, key) in [
        (reqwest::Method::PUT, "key-1"),
        (reqwest::Method::DELETE, "key-2"),
        (reqwest::Method::PATCH, "key-3"),
    ] {
        let r = t
            .http
            .request(method.clone(), t.url("/v1/tenants/current/invitations"))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&json!({"role": "user"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {key}");
        assert_eq!(r.headers()["allow"], "POST", "{method}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed", "{method}");
    }
    assert_eq!(keys().await, 1, "no key claimed by a wrong method");
    assert_eq!(invitations(&t).await, 1);
    // The key still replays its own request.
    let again = invite(&t, &token, "key-1", "user").send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    t.app.stop().await;
}

#[tokio::test]
async fn a_client_that_hangs_up_gets_its_answer_when_it_retries_with_the_key() {
    // A client whose connection drops (a timeout, a mobile network) retries with its
    // key. Once its body is in, a keyed request runs claim, handler and the storing of
    // the answer to their end; awaited in the request, a hang-up left the key
    // `in_progress` for its 60 s lease, or `committed` without an answer, refusing every
    // retry for 24 hours ("applied, but its response was lost").
    let limits = [
        ("AUTH_RATE_LIMIT_PER_MINUTE", "1000"),
        ("RATE_LIMIT_PER_MINUTE", "1000000"),
    ];
    let t = TestApp::spawn(Mode::Web, &limits).await;
    let token = admin(&t).await;
    let bearer = format!("Bearer {token}");
    let request = |key: &str| {
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ];
        raw_request(
            &t,
            "POST /v1/tenants/current/invitations",
            &headers,
            br#"{"role":"user"}"#,
        )
    };
    let whole = median_of_three(&t, 201, async |i| request(&format!("timing-{i}"))).await;
    let cuts: Vec<Vec<u8>> = (0..60).map(|i| request(&format!("cut-{i}"))).collect();
    retried_after_hang_ups(&t, "invitations", whole, &cuts, 201).await;
    assert_eq!(invitations(&t).await, 3 + 60, "one invitation per key");
    t.app.stop().await;
}

#[tokio::test]
async fn a_keyed_body_that_cannot_be_read_is_400_and_one_over_the_limit_413() {
    // The key layer buffers the body before the handler: its refusals must be the ones
    // the handler's JSON extractor gives without a key, not "too large" for every
    // failure to read.
    let t = TestApp::spawn(
        Mode::Web,
        &[
            ("AUTH_RATE_LIMIT_PER_MINUTE", "1000"),
            ("MAX_JSON_BODY_BYTES", "1024"),
        ],
    )
    .await;
    let token = admin(&t).await;
    let host = t.base.trim_start_matches("http://").to_string();
    let send = async |key: Option<&str>, framing: &str, body: &[u8]| {
        let key = key
            .map(|k| format!("idempotency-key: {k}\r\n"))
            .unwrap_or_default();
        let mut request = format!(
            "POST /v1/tenants/current/invitations HTTP/1.1\r\nhost: {host}\r\n\
             authorization: Bearer {token}\r\ncontent-type: application/json\r\nconnection: close\r\n{key}{framing}\r\n"
        )
        .into_bytes();
        request.extend_from_slice(body);
        send_answer(&t, &request).await
    };
    let broken_chunks = "transfer-encoding: chunked\r\n";
    let bad = b"zz\r\n{\"role\":\"user\"}\r\n0\r\n\r\n";
    let big = format!("{{\"role\":\"user\",\"pad\":\"{}\"}}", "x".repeat(2000));
    let big_framing = format!("content-length: {}\r\n", big.len());
    for key in [None, Some("broken"), Some("big")] {
        let (status, body) = send(key, broken_chunks, bad).await;
        assert_eq!(status, 400, "broken chunks, key {key:?}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
        let (status, body) = send(key, &big_framing, big.as_bytes()).await;
        assert_eq!(status, 413, "over the limit, key {key:?}: {body}");
        assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    }
    assert_eq!(invitations(&t).await, 0, "nothing recorded");
    let claimed: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&t.db.owner)
        .await
        .unwrap();
    assert_eq!(claimed, 0, "no key claimed by a body never read");
    t.app.stop().await;
}

/// Sends a raw request on a connection of its own and reads the answer: its status and
/// its JSON body (`Content-Length` framed, as every error answer is).
async fn send_answer(t: &TestApp, request: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = t.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A keyed request slower than its key's lease keeps the key: the lease is renewed while
/// the request lives, so a retry sent after the lease alone would have lapsed is told the
/// request is still in progress instead of running it a second time, and once the first
/// has answered, the retry gets that stored answer. Without the renewal the retry took
/// the key over and ran the handler again (the claim's fence then kept a second effect
/// out of the event log, but the work ran twice and the first request answered `409`).
#[tokio::test]
async fn a_request_slower_than_its_keys_lease_keeps_its_key() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let t = TestApp::spawn(Mode::Serve, &[("IDEMPOTENCY_LEASE_SECS", "3")]).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let slow = axum::Router::new().route(
        "/v1/test/slow",
        axum::routing::post(move || {
            let calls = counted.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                // Two leases' worth: without renewals the key lapses half-way.
                tokio::time::sleep(std::time::Duration::from_secs(6)).await;
                (
                    axum::http::StatusCode::CREATED,
                    axum::Json(json!({ "done": true })),
                )
            }
        }),
    );
    let addr = crate::common::serve_test_routes(&t, slow).await;
    let me = t.signup("patient").await;
    let send = || {
        t.http
            .post(format!("http://{addr}/v1/test/slow"))
            .bearer_auth(&me.token)
            .header("idempotency-key", "slow-one")
            .json(&json!({ "n": 1 }))
            .send()
    };

    let first = tokio::spawn(send());
    // Past the 3 s lease, well before the first answers.
    tokio::time::sleep(std::time::Duration::from_millis(4500)).await;
    let retry = send().await.unwrap();
    assert_eq!(retry.status(), StatusCode::CONFLICT);
    let error: Value = retry.json().await.unwrap();
    assert_eq!(
        error["error"]["code"], "idempotency_key_in_progress",
        "{error}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the retry ran nothing");

    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let replay = send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
