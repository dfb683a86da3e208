//! Operations endpoints and the error contract over real HTTP.

use chronicle::app::Mode;
use serde_json::Value;

use crate::common::TestApp;

#[tokio::test]
async fn health_ready_metrics_and_openapi() {
    let t = TestApp::spawn(Mode::Serve, &[]).await;
    let r = t.http.get(t.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));

    let r = t.http.get(t.url("/health/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let r = t.http.get(t.url("/openapi.json")).send().await.unwrap();
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // Every route the router serves (keep in step with api::router).
    for (path, method) in [
        ("/health", "get"),
        ("/health/ready", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/v1/auth/register", "post"),
        ("/v1/auth/login", "post"),
        ("/v1/auth/refresh", "post"),
        ("/v1/auth/logout", "post"),
        ("/v1/tenants/current/invitations", "post"),
        ("/v1/me", "get"),
        ("/v1/users/{id}/role", "put"),
        ("/v1/users/{id}/ban", "post"),
        ("/v1/users/{id}/unban", "post"),
        ("/v1/sessions", "get"),
        ("/v1/sessions/{id}", "delete"),
        ("/v1/devices", "get"),
        ("/v1/notifications", "get"),
        ("/v1/notifications/{id}/read", "post"),
        ("/v1/events", "get"),
    ] {
        assert!(
            doc["paths"][path].get(method).is_some(),
            "{method} {path} missing from OpenAPI"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // The document offers Idempotency-Key where the key layer takes it: not on a tus
    // chunk (streamed, and safe to repeat by its offset), yet on a tus creation and a
    // multipart upload.
    let takes_key = |path: &str, method: &str| {
        let operation = &doc["paths"][path][method];
        assert!(
            operation.is_object(),
            "{method} {path} missing from OpenAPI"
        );
        operation["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key"))
    };
    assert!(takes_key("/v1/tenants/current/invitations", "post"));
    assert!(takes_key("/v1/uploads", "post"));
    assert!(
        takes_key("/v1/files", "post"),
        "a multipart upload takes a key"
    );
    assert!(!takes_key("/v1/uploads/{id}", "patch"));
    assert!(!takes_key("/v1/auth/login", "post"));

    let text = t.metrics().await;
    assert!(
        text.contains(
            r#"chronicle_http_requests_total{method="GET",route="/health",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("chronicle_http_request_duration_seconds_bucket"));
    assert!(text.contains("chronicle_events_appended_total"));
    assert!(
        text.contains(r#"chronicle_projection_lag_events{projector="audit_logs"}"#),
        "{text}"
    );
    assert!(text.contains(r#"chronicle_projection_lag_seconds{projector="stream_heads"}"#));
    t.app.stop().await;
}

#[tokio::test]
async fn readiness_names_the_dependency_that_is_down() {
    // Nothing listens on port 1.
    let t = TestApp::spawn(Mode::Web, &[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let r = t.http.get(t.url("/health/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("redis") && !message.contains("postgres"),
        "{message}"
    );
    // Liveness does no I/O, so it stays green.
    assert_eq!(
        t.http.get(t.url("/health")).send().await.unwrap().status(),
        200
    );
    t.app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_one_error_shape() {
    let t = TestApp::spawn(Mode::Web, &[]).await;
    let r = t.http.get(t.url("/v1/nothing-here")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": {"code": "not_found", "message": "no such route"}})
    );

    let r = t.http.delete(t.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");

    // A caller's request id is echoed back, so logs and responses can be matched.
    let r = t
        .http
        .get(t.url("/health"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    t.app.stop().await;
}
