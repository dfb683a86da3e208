//! Every route of the router, read from /openapi.json (which a unit test keeps equal to
//! the router's `.route(` calls, so a new route cannot escape), gets a malformed id and
//! a malformed query as an admin: each answers 4xx in the error shape, never 5xx, never
//! axum's `text/plain`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::files_api::World;

/// `path` with every `{param}` replaced by `value`.
fn fill(path: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').unwrap() + open;
        out.push_str(value);
        rest = &rest[close + 1..];
    }
    out + rest
}

/// The answer must be a 4xx in the error shape (HEAD: 4xx with a JSON content type).
async fn assert_shaped(w: &World, method: &Method, url: &str, failures: &mut Vec<String>) {
    // A route that accepted the request may stream forever (/v1/events): bounded.
    let sent =
        w.t.http
            .request(method.clone(), w.t.url(url))
            .bearer_auth(&w.admin.token)
            .header("Tus-Resumable", "1.0.0")
            .timeout(Duration::from_secs(10))
            .send()
            .await;
    let r = match sent {
        Ok(r) => r,
        Err(err) => return failures.push(format!("{method} {url}: no answer: {err}")),
    };
    let status = r.status();
    let json = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let text = r
        .text()
        .await
        .unwrap_or_else(|e| format!("(body cut: {e})"));
    let shaped = *method == Method::HEAD
        || serde_json::from_str::<Value>(&text)
            .is_ok_and(|b| b["error"]["code"].is_string() && b["error"]["message"].is_string());
    if !status.is_client_error() || !json || !shaped {
        failures.push(format!("{method} {url}: {status} {text:?}"));
    }
}

#[tokio::test]
async fn every_route_answers_a_malformed_id_and_query_in_the_error_shape() {
    let w = World::new(&[]).await;
    let doc: Value =
        w.t.http
            .get(w.t.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) {
                operations.push((path.clone(), method));
            }
        }
    }
    // Logout last: should it run, the admin's session ends and 401s would mask the rest.
    operations.sort_by_key(|(path, _)| path == "/v1/auth/logout");
    let mut failures = Vec::new();
    // A malformed id. OPTIONS describes what the URL accepts, whatever the id.
    for (path, method) in &operations {
        if path.contains('{') && method != Method::OPTIONS {
            for id in ["not-a-uuid", "%00", "%FF"] {
                assert_shaped(&w, method, &fill(path, id), &mut failures).await;
            }
        }
    }
    // A malformed query, on a path naming a resource that may exist.
    for (path, method) in &operations {
        let some_id = fill(path, &Uuid::now_v7().to_string());
        for query in ["filter=%00", "limit=%FF%FE", "name=a%0Ab&cursor=%00"] {
            assert_shaped(&w, method, &format!("{some_id}?{query}"), &mut failures).await;
        }
    }
    let operations = operations.len();
    assert!(
        operations > 40,
        "only {operations} operations in /openapi.json"
    );
    assert!(
        failures.is_empty(),
        "{} answers outside the error shape:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Still a working API: the admin's own session is alive.
    let (status, _) = w.send("GET", "/v1/me", &w.admin).await;
    assert_eq!(status, StatusCode::OK);
}
