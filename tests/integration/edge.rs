//! The HTTP edge over real HTTP and a real Redis: rate limits (shared across instances,
//! exemptions, the Redis-down fallback), CORS and security headers. The JSON body limit is
//! tested in `api::json` (no product route takes JSON yet).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use chronicle::api::edge::ratelimit::{RateLimitLayer, auth_policy};
use chronicle::app::{App, Mode};
use chronicle::commands::accounts::guard::{account_key, check_auth_attempt};
use chronicle::error::AppError;
use chronicle::ratelimit::{RateLimiter, connection_manager};
use reqwest::Response;
use serde_json::Value;
use tower::ServiceExt;

use crate::common::{TempDir, TestApp, answer_on, redis_url, test_config, unique_redis_prefix};

const DEAD_REDIS: &str = "redis://127.0.0.1:1";

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

fn number(r: &Response, name: &str) -> u64 {
    header(r, name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .parse()
        .unwrap()
}

async fn get(t: &TestApp, path: &str) -> Response {
    t.http.get(t.url(path)).send().await.unwrap()
}

#[tokio::test]
async fn the_101st_request_in_a_window_is_refused_with_429_and_ratelimit_headers() {
    let t = TestApp::spawn(Mode::Web, &[]).await;
    for n in 1..=100u64 {
        let r = get(&t, "/openapi.json").await;
        assert_eq!(r.status(), 200, "request {n}");
        assert_eq!(number(&r, "ratelimit-limit"), 100);
        assert_eq!(number(&r, "ratelimit-remaining"), 100 - n);
        assert!((1..=60).contains(&number(&r, "ratelimit-reset")));
    }
    let r = get(&t, "/openapi.json").await;
    assert_eq!(r.status(), 429);
    let retry_after = number(&r, "retry-after");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(number(&r, "ratelimit-limit"), 100);
    assert_eq!(number(&r, "ratelimit-remaining"), 0);
    assert_eq!(number(&r, "ratelimit-reset"), retry_after);
    assert_eq!(header(&r, "ratelimit-policy"), Some("100;w=60"));
    assert_eq!(header(&r, "x-content-type-options"), Some("nosniff"));
    assert!(r.headers().contains_key("x-request-id"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["message"].is_string());
    // Unknown routes count too: scanners are limited like everyone else.
    assert_eq!(get(&t, "/v1/nothing").await.status(), 429);
    t.app.stop().await;
}

#[tokio::test]
async fn requests_pass_again_once_the_window_is_over() {
    let t = TestApp::spawn(
        Mode::Web,
        &[
            ("RATE_LIMIT_PER_MINUTE", "3"),
            ("RATE_LIMIT_WINDOW_SECS", "2"),
        ],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(get(&t, "/openapi.json").await.status(), 200);
    }
    let refused = get(&t, "/openapi.json").await;
    assert_eq!(refused.status(), 429);
    assert!(number(&refused, "retry-after") <= 2);

    let fresh = crate::common::eventually_within(
        "the limit lifts when its window ends",
        Duration::from_secs(10),
        async || {
            let r = get(&t, "/openapi.json").await;
            if r.status() == 200 {
                return Some(r);
            }
            assert_eq!(r.status(), 429);
            None
        },
    )
    .await;
    assert_eq!(number(&fresh, "ratelimit-remaining"), 2, "a fresh window");
    t.app.stop().await;
}

#[tokio::test]
async fn two_instances_on_one_redis_share_the_budget() {
    let prefix = unique_redis_prefix();
    let overrides = [
        ("RATE_LIMIT_PER_MINUTE", "4"),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    let a = TestApp::spawn(Mode::Web, &overrides).await;
    let dir = TempDir::new();
    let b = App::start(test_config(&a.db.url, &dir.0, &overrides), Mode::Web)
        .await
        .unwrap();
    let b_url = format!("http://{}/openapi.json", b.addr.unwrap());

    for _ in 0..2 {
        assert_eq!(get(&a, "/openapi.json").await.status(), 200);
        let r = a.http.get(&b_url).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Four spent across both instances: each refuses now.
    assert_eq!(get(&a, "/openapi.json").await.status(), 429);
    assert_eq!(a.http.get(&b_url).send().await.unwrap().status(), 429);

    // Another deployment (another prefix) on the same Redis has its own budget.
    let other = TestApp::spawn(Mode::Web, &[("RATE_LIMIT_PER_MINUTE", "4")]).await;
    assert_eq!(get(&other, "/openapi.json").await.status(), 200);

    b.stop().await;
    other.app.stop().await;
    a.app.stop().await;
}

#[tokio::test]
async fn health_and_metrics_are_never_limited() {
    let t = TestApp::spawn(Mode::Web, &[("RATE_LIMIT_PER_MINUTE", "1")]).await;
    assert_eq!(get(&t, "/openapi.json").await.status(), 200);
    assert_eq!(get(&t, "/openapi.json").await.status(), 429);
    for _ in 0..3 {
        for path in ["/health", "/health/ready", "/metrics"] {
            let r = get(&t, path).await;
            assert_eq!(r.status(), 200, "{path}");
            assert!(!r.headers().contains_key("ratelimit-limit"), "{path}");
        }
    }
    t.app.stop().await;
}

#[tokio::test]
async fn without_redis_requests_are_still_served_quickly_and_auth_attempts_refused() {
    // A limit of 1 would refuse the second request if Redis answered.
    let t = TestApp::spawn(
        Mode::Web,
        &[("REDIS_URL", DEAD_REDIS), ("RATE_LIMIT_PER_MINUTE", "1")],
    )
    .await;
    for _ in 0..5 {
        let started = Instant::now();
        let r = get(&t, "/openapi.json").await;
        assert_eq!(r.status(), 200, "reads fail open");
        assert!(!r.headers().contains_key("ratelimit-limit"));
        assert!(started.elapsed() < Duration::from_secs(2), "no hang");
    }
    // Other writes fail open too (this route answers 405: it was served, not refused).
    let r = t.http.post(t.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 405);

    // A login's per-account check must not run unlimited: 503, not a pass.
    let err = check_auth_attempt(&t.app.state, &account_key("ada@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Unavailable(_)), "{err:?}");

    // Still alive.
    assert_eq!(get(&t, "/health").await.status(), 200);
    t.app.stop().await;
}

#[tokio::test]
async fn per_account_auth_attempts_are_limited() {
    let t = TestApp::spawn(Mode::Web, &[("AUTH_RATE_LIMIT_PER_MINUTE", "3")]).await;
    for n in 1..=3 {
        let d = check_auth_attempt(&t.app.state, &account_key("Ada@Example.com"))
            .await
            .unwrap_or_else(|e| panic!("attempt {n}: {e:?}"));
        assert_eq!(d.remaining, 3 - n);
    }
    // Same account spelled differently: same budget, now spent.
    let err = check_auth_attempt(&t.app.state, &account_key(" ada@example.com"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppError::RateLimited { retry_after_secs } if (1..=60).contains(&retry_after_secs)),
        "{err:?}"
    );
    // Another account is unaffected.
    assert!(
        check_auth_attempt(&t.app.state, &account_key("bob@example.com"))
            .await
            .is_ok()
    );
    t.app.stop().await;
}

/// An auth router as `/v1/auth` will use it, on a real Redis.
fn auth_router(redis: &str, limit: u64) -> Router {
    let limiter = RateLimiter::new(connection_manager(redis).unwrap(), &unique_redis_prefix());
    Router::new()
        .route(
            "/v1/auth/login",
            post(|| async { "ok" }).get(|| async { "ok" }),
        )
        .layer(RateLimitLayer::new(
            limiter,
            auth_policy(limit, Duration::from_secs(60)),
            false,
        ))
}

async fn call(router: &Router, method: &str, ip: [u8; 4]) -> axum::response::Response {
    let mut request = Request::builder()
        .method(method)
        .uri("/v1/auth/login")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    router.clone().oneshot(request).await.unwrap()
}

#[tokio::test]
async fn auth_routes_have_a_per_ip_budget() {
    let router = auth_router(&redis_url(), 3);
    for _ in 0..3 {
        assert_eq!(call(&router, "POST", [192, 0, 2, 1]).await.status(), 200);
    }
    let r = call(&router, "POST", [192, 0, 2, 1]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["ratelimit-limit"], "3");
    // Another client IP has its own budget.
    assert_eq!(call(&router, "POST", [192, 0, 2, 2]).await.status(), 200);
}

#[tokio::test]
async fn auth_routes_fail_closed_for_writes_when_redis_is_down() {
    let router = auth_router(DEAD_REDIS, 3);
    let started = Instant::now();
    let r = call(&router, "POST", [192, 0, 2, 1]).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert_eq!(call(&router, "GET", [192, 0, 2, 1]).await.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2), "no hang");
}

const FRONTEND: &str = "https://app.example.com";

fn has_cors_headers(r: &Response) -> bool {
    r.headers()
        .keys()
        .any(|k| k.as_str().starts_with("access-control-"))
}

#[tokio::test]
async fn cors_allows_only_the_frontend_origin_with_credentials() {
    let t = TestApp::spawn(Mode::Web, &[("FRONTEND_URL", "https://app.example.com/")]).await;

    let r = t
        .http
        .get(t.url("/health"))
        .header("origin", FRONTEND)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(FRONTEND));
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    assert!(
        header(&r, "access-control-expose-headers")
            .unwrap()
            .contains("ratelimit-remaining")
    );
    assert!(
        header(&r, "vary")
            .unwrap()
            .to_lowercase()
            .contains("origin")
    );

    let r = t
        .http
        .get(t.url("/health"))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!has_cors_headers(&r), "{:?}", r.headers());

    let preflight = |origin: &'static str| {
        t.http
            .request(reqwest::Method::OPTIONS, t.url("/openapi.json"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let r = preflight(FRONTEND).await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(FRONTEND));
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    assert!(
        header(&r, "access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    let allowed_headers = header(&r, "access-control-allow-headers").unwrap();
    assert!(allowed_headers.contains("authorization") && allowed_headers.contains("content-type"));
    assert!(header(&r, "access-control-max-age").is_some());

    let r = preflight("https://evil.example.com").await.unwrap();
    assert!(!r.status().is_success(), "{}", r.status());
    assert!(!has_cors_headers(&r), "{:?}", r.headers());
    t.app.stop().await;
}

const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("content-security-policy", "default-src 'none'"),
];

fn assert_security_headers(r: &Response) {
    for (name, expected) in SECURITY_HEADERS {
        let value = header(r, name).unwrap_or_else(|| panic!("{name} missing on {}", r.status()));
        assert!(value.starts_with(expected), "{name}: {value}");
    }
    assert!(
        header(r, "content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
}

#[tokio::test]
async fn security_headers_on_every_response_and_no_cors_without_a_frontend() {
    let t = TestApp::spawn(Mode::Web, &[]).await;
    let ok = t
        .http
        .get(t.url("/health"))
        .header("origin", FRONTEND)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_security_headers(&ok);
    assert!(!has_cors_headers(&ok), "no FRONTEND_URL, no CORS");
    assert!(
        !ok.headers().contains_key("strict-transport-security"),
        "HSTS only in production"
    );
    let missing = get(&t, "/no/such/route").await;
    assert_eq!(missing.status(), 404);
    assert_security_headers(&missing);
    t.app.stop().await;
}

#[tokio::test]
async fn production_adds_strict_transport_security() {
    let secret = "ab".repeat(32);
    let t = TestApp::spawn(
        Mode::Web,
        &[
            ("APP_ENV", "production"),
            ("JWT_SECRET", secret.as_str()),
            // Production also requires the checkpoint and event signing keys.
            (
                "CHECKPOINT_SIGNING_KEY",
                "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
            ),
            (
                "EVENT_SIGNING_KEY",
                "k1:BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU=",
            ),
        ],
    )
    .await;
    for path in ["/health", "/no/such/route"] {
        let r = get(&t, path).await;
        assert_security_headers(&r);
        let hsts = header(&r, "strict-transport-security").expect("HSTS in production");
        assert!(hsts.contains("max-age=") && hsts.contains("includeSubDomains"));
    }
    t.app.stop().await;
}

/// An upload refused before its body is read (`401`: no token) leaves its connection
/// usable when the rest of the body is small, and says `Connection: close` when it is
/// not; a client waiting for `100 Continue` is answered at once. Without the layer that
/// finishes unread bodies (src/api/edge/unread.rs), the server closed the connection
/// after a `401` to a 50 KB upload without saying so, and the next request on it went
/// unanswered — what a client reusing pooled connections sees as a transport error.
#[tokio::test]
async fn a_request_refused_before_its_body_is_read_leaves_its_connection_usable() {
    use tokio::io::{AsyncWriteExt, BufReader};
    let t = TestApp::spawn(Mode::Web, &[]).await;
    let addr = t.base.trim_start_matches("http://").to_string();
    let upload_head = |length: &str, extra: &str| {
        format!(
            "POST /v1/files HTTP/1.1\r\nhost: {addr}\r\n\
             content-type: multipart/form-data; boundary=b\r\n{length}{extra}\r\n"
        )
    };
    let health = format!("GET /health HTTP/1.1\r\nhost: {addr}\r\n\r\n");

    // Small bodies, declared or chunked: refused, then the next request is answered.
    let chunk = vec![b'x'; 10_000];
    let mut chunked = Vec::new();
    for _ in 0..5 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let small = [
        (
            upload_head("content-length: 50000\r\n", ""),
            vec![b'x'; 50_000],
        ),
        (upload_head("transfer-encoding: chunked\r\n", ""), chunked),
    ];
    for (head, body) in small {
        let mut conn = BufReader::new(tokio::net::TcpStream::connect(&addr).await.unwrap());
        conn.get_mut().write_all(head.as_bytes()).await.unwrap();
        conn.get_mut().write_all(&body).await.unwrap();
        let (status, headers, _) = answer_on(&mut conn).await;
        assert_eq!(status, "http/1.1 401 unauthorized", "{head}");
        assert!(
            !headers.contains(&"connection: close".into()),
            "{headers:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        conn.get_mut().write_all(health.as_bytes()).await.unwrap();
        let (status, _, _) = answer_on(&mut conn).await;
        assert_eq!(status, "http/1.1 200 ok", "the request after {head}");
    }

    // 3 MB: not read; the answer says the connection closes, and it does.
    let mut conn = BufReader::new(tokio::net::TcpStream::connect(&addr).await.unwrap());
    let head = upload_head("content-length: 3000000\r\n", "");
    conn.get_mut().write_all(head.as_bytes()).await.unwrap();
    let _ = conn.get_mut().write_all(&vec![b'x'; 3_000_000]).await;
    let (status, headers, _) = answer_on(&mut conn).await;
    assert_eq!(status, "http/1.1 401 unauthorized");
    assert!(headers.contains(&"connection: close".into()), "{headers:?}");
    let mut after = Vec::new();
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut after),
    )
    .await;
    assert!(
        closed.is_ok(),
        "the connection stayed open after Connection: close"
    );
    assert!(after.is_empty(), "{} bytes after the answer", after.len());

    // Waiting for `100 Continue`, with a body small enough to be drained otherwise: the
    // body is never asked for (reading it would make hyper send `100 Continue` first, and
    // this status line would be that), and the answer closes the connection.
    let mut conn = BufReader::new(tokio::net::TcpStream::connect(&addr).await.unwrap());
    let head = upload_head("content-length: 50000\r\n", "expect: 100-continue\r\n");
    conn.get_mut().write_all(head.as_bytes()).await.unwrap();
    let (status, headers, _) = answer_on(&mut conn).await;
    assert_eq!(status, "http/1.1 401 unauthorized");
    assert!(headers.contains(&"connection: close".into()), "{headers:?}");

    // A client with a connection pool: refusals and other requests, one after another,
    // every one answered.
    for i in 0..20 {
        let refused = t
            .http
            .post(t.url("/v1/files"))
            .header("content-type", "multipart/form-data; boundary=b")
            .body(vec![b'x'; 60_000])
            .send()
            .await
            .unwrap_or_else(|e| panic!("upload {i}: {e}"));
        assert_eq!(refused.status(), 401);
        let r = t
            .http
            .get(t.url("/health"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("health after upload {i}: {e}"));
        assert_eq!(r.status(), 200);
    }
}
