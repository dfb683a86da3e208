//! Bad input at the edge (issue 11): text breaking the text rule (NUL and other control
//! characters, invalid UTF-8) is refused with 400 `bad_request` and records nothing,
//! wherever it comes from; the User-Agent is recorded sanitized instead. `ranges`:
//! overflowing `Range` headers; `routes`: every route's rejections in the error shape.

mod ranges;
mod routes;

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::files_api::World;
use crate::tus::{create, meta, tus};

use crate::common::PASSWORD;

/// Every event of the test's database (one tenant, nothing else writes).
async fn events(w: &World) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&w.t.db.owner)
        .await
        .unwrap()
}

/// Files under the server's temporary storage (tus temp files, multipart uploads).
fn temp_files(w: &World) -> Vec<String> {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &w.t.app.state.config.data_dir.join("objects/tmp"),
        &mut found,
    );
    found
}

/// A 400 `bad_request` in the error shape.
async fn assert_refused(r: reqwest::Response, what: &str) {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["error"]["code"], "bad_request", "{what}: {body}");
    assert!(body["error"]["message"].is_string(), "{what}: {body}");
}

#[tokio::test]
async fn tus_metadata_breaking_the_text_rule_is_refused_and_records_nothing() {
    let w = World::new(&[]).await;
    let before = events(&w).await;
    let values: [&[u8]; 5] = [
        b"\0nul.txt",
        b"tab\there.txt",
        b"new\nline.txt",
        b"\xff\xfebad.txt",
        "c1\u{85}.txt".as_bytes(),
    ];
    let mut headers: Vec<String> = values
        .iter()
        .map(|v| format!("filename {}", STANDARD.encode(v)))
        .collect();
    // The report's header, verbatim ("\0nul.txt").
    headers.push("filename AG51bC50eHQ=".into());
    for metadata in headers {
        let r = tus(w.t.http.post(w.t.url("/v1/uploads")), &w.admin)
            .header("Upload-Length", 10)
            .header("Upload-Metadata", &metadata)
            .send()
            .await
            .unwrap();
        assert_refused(r, &metadata).await;
    }
    assert_eq!(events(&w).await, before, "an upload was recorded");
    assert!(temp_files(&w).is_empty(), "{:?}", temp_files(&w));
    // A clean name is still accepted.
    create(&w, &w.admin, 10, &meta(&[("filename", "ok é.txt")])).await;
}

#[tokio::test]
async fn nul_or_bad_utf8_in_filters_and_login_answers_400_not_500() {
    let w = World::new(&[]).await;
    for path in [
        "/v1/files?name=%00",
        "/v1/files?tag=%00",
        "/v1/files?name=%FF",
        "/v1/files?name=a%0Ab",
        "/v1/audit?actor=%00",
        "/v1/audit?action=%00",
        "/v1/audit?target_type=file&target_id=%00",
        "/v1/jobs?status=%00",
        "/v1/notifications?cursor=%00",
    ] {
        let r = w.t.http.get(w.t.url(path)).bearer_auth(&w.admin.token);
        assert_refused(r.send().await.unwrap(), path).await;
    }
    let before = events(&w).await;
    for email in ["ada\u{0}@example.com", "ada@example.com\u{1}"] {
        let r = w.t.http.post(w.t.url("/v1/auth/login"));
        let r = r.json(&json!({"email": email, "password": PASSWORD}));
        assert_refused(r.send().await.unwrap(), email).await;
    }
    let r = w.t.http.post(w.t.url("/v1/auth/register")).json(&json!({
        "tenant_name": "bad\u{0}inc", "handle": "bob", "name": "bob",
        "email": "bob@example.com", "password": PASSWORD,
    }));
    assert_refused(r.send().await.unwrap(), "register").await;
    assert_eq!(events(&w).await, before, "something was recorded");
}

#[tokio::test]
async fn json_and_multipart_text_breaking_the_rule_records_nothing() {
    let w = World::new(&[]).await;
    let file = w.create(&w.admin, "report").await;
    w.settled().await;
    let before = events(&w).await;
    let path = format!("/v1/files/{file}");
    for name in ["re\u{0}port", "tab\there"] {
        let (status, body) = w
            .send_json(
                "PATCH",
                &path,
                &w.admin,
                Some(json!({"display_name": name})),
            )
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (StatusCode::BAD_REQUEST, &json!("bad_request"))
        );
    }
    let tag = format!("{path}/tags/a%00b");
    let (status, body) = w.send("PUT", &tag, &w.admin).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("bad_request"))
    );

    // Multipart: a text field before and after the file, a filename with a control byte.
    let file_part = |filename: &[u8]| {
        let mut part =
            b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"".to_vec();
        part.extend_from_slice(filename);
        part.extend_from_slice(b"\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n");
        part
    };
    let field = |name: &str, value: &[u8]| {
        let mut part =
            format!("--B\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").into_bytes();
        part.extend_from_slice(value);
        part.extend_from_slice(b"\r\n");
        part
    };
    let bodies = [
        [field("display_name", b"a\0b"), file_part(b"a.txt")].concat(),
        [file_part(b"a.txt"), field("display_name", b"a\x01b")].concat(),
        [file_part(b"a.txt"), field("tags", b"ok,\xff\xfe")].concat(),
        file_part(b"a\x01b.txt"),
        file_part(b"\xffb.txt"),
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let body = [body, b"--B--\r\n".to_vec()].concat();
        let r =
            w.t.http
                .post(w.t.url("/v1/files"))
                .bearer_auth(&w.admin.token);
        let r = r
            .header("content-type", "multipart/form-data; boundary=B")
            .body(body);
        assert_refused(r.send().await.unwrap(), &format!("multipart body {i}")).await;
    }
    assert_eq!(events(&w).await, before, "something was recorded");
    assert!(temp_files(&w).is_empty(), "{:?}", temp_files(&w));
}

/// Decision: JSON bodies are closed (`additionalProperties: false` in /openapi.json): a
/// field a body does not define is `422 validation_failed`, not ignored, on every route
/// that takes one, and nothing is recorded.
#[tokio::test]
async fn unknown_json_fields_are_refused_and_record_nothing() {
    let w = World::new(&[]).await;
    let file = w.create(&w.admin, "report").await;
    w.settled().await;
    let before = events(&w).await;
    let user = w.admin.id;
    let requests = [
        (
            "PATCH",
            format!("/v1/files/{file}"),
            json!({"display_name": "x", "dispaly_name": "y"}),
            true,
        ),
        (
            "POST",
            "/v1/tenants/current/invitations".into(),
            json!({"role": "user", "email": "b@example.com"}),
            true,
        ),
        (
            "PUT",
            format!("/v1/users/{user}/role"),
            json!({"role": "admin", "reason": "x"}),
            true,
        ),
        (
            "POST",
            "/v1/auth/login".into(),
            json!({"email": "ada@example.com", "password": PASSWORD, "remember": true}),
            false,
        ),
        (
            "POST",
            "/v1/auth/register".into(),
            json!({"tenant_name": "Beta", "handle": "bea", "name": "Bea",
            "email": "bea@example.com", "password": PASSWORD, "plan": "free"}),
            false,
        ),
    ];
    for (method, path, body, authenticated) in requests {
        let mut r =
            w.t.http
                .request(method.parse().unwrap(), w.t.url(&path))
                .json(&body);
        if authenticated {
            r = r.bearer_auth(&w.admin.token);
        }
        let r = r.send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (status, &body["error"]["code"]),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!("validation_failed")
            ),
            "{method} {path}: {body}"
        );
    }
    assert_eq!(events(&w).await, before, "something was recorded");
}

/// Decision: a User-Agent is not refused (clients rarely choose it); it is recorded with
/// invalid UTF-8 and control characters replaced by U+FFFD. A client-chosen X-Request-Id,
/// recorded in every event's metadata, is refused like any other text.
#[tokio::test]
async fn a_user_agent_is_recorded_sanitized_and_a_bad_request_id_refused() {
    let w = World::new(&[]).await;
    let agent = reqwest::header::HeaderValue::from_bytes(b"probe/1\t(\xff)").unwrap();
    let r =
        w.t.http
            .post(w.t.url("/v1/auth/login"))
            .header("user-agent", agent);
    let r = r.json(&json!({"email": "ada@example.com", "password": PASSWORD}));
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let sessions = w
        .get_until("/v1/sessions", &w.admin, |s| {
            s.to_string().contains("probe")
        })
        .await;
    let agents: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["user_agent"].as_str().unwrap())
        .collect();
    assert!(agents.contains(&"probe/1\u{FFFD}(\u{FFFD})"), "{agents:?}");

    let before = events(&w).await;
    let r = w.t.http.post(w.t.url("/v1/tenants/current/invitations"));
    let r = r
        .bearer_auth(&w.admin.token)
        .header("x-request-id", "req\tid");
    let r = r.json(&json!({"role": "user"})).send().await.unwrap();
    assert_refused(r, "x-request-id").await;
    assert_eq!(events(&w).await, before, "something was recorded");
}
