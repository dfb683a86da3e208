//! A handler that panics is a bug, but it must not cost more than its own request:
//! the answer is `500` in the one error shape (the panic's message stays in the log),
//! the connection stays usable, and a keyed request's `Idempotency-Key` is freed so the
//! client's retry runs instead of meeting `409 idempotency_key_in_progress` for the
//! key's one-minute lease. The panicking routes are the test's own, served behind the
//! API's edge (`api::router_with`) and idempotency layer, as the real routes are.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chronicle::app::Mode;
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::{TestApp, answer_on, serve_test_routes};

const SECRET: &str = "the handler's private detail";

/// The API with two routes of the test's: one that always panics, one that panics on
/// its first call only (counted in `calls`).
async fn serve_with_panicking_routes(t: &TestApp, calls: Arc<AtomicUsize>) -> SocketAddr {
    let extra = Router::new()
        .route("/v1/test/panics", get(always_panics))
        .route(
            "/v1/test/panics-once",
            post(move || {
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("{SECRET}");
                    }
                    (StatusCode::CREATED, axum::Json(json!({ "done": true })))
                }
            }),
        );
    serve_test_routes(t, extra).await
}

async fn always_panics() -> StatusCode {
    panic!("{SECRET}")
}

/// The answer on `conn` to the request just written, within 10 s: (status line,
/// headers joined, body); an empty status line means the server closed the connection.
async fn answer(conn: &mut BufReader<TcpStream>) -> (String, String, String) {
    let (status, headers, body) = tokio::time::timeout(Duration::from_secs(10), answer_on(conn))
        .await
        .expect("an answer within 10 s");
    (status, headers.join("\n"), body)
}

#[tokio::test]
async fn a_panicking_handler_is_answered_500_in_the_error_shape_on_a_connection_that_stays_usable()
{
    let t = TestApp::spawn(Mode::Serve, &[]).await;
    let addr = serve_with_panicking_routes(&t, Arc::default()).await;

    let mut conn = BufReader::new(TcpStream::connect(addr).await.unwrap());
    conn.get_mut()
        .write_all(b"GET /v1/test/panics HTTP/1.1\r\nHost: chronicle\r\n\r\n")
        .await
        .unwrap();
    let (status, head, body) = answer(&mut conn).await;
    assert_eq!(
        status, "http/1.1 500 internal server error",
        "{head}\n{body}"
    );
    let error: Value = serde_json::from_str(&body).expect("the JSON error shape");
    assert_eq!(error["error"]["code"], "internal_error", "{body}");
    assert!(!body.contains(SECRET) && !body.contains("panic"), "{body}");
    assert!(head.contains("x-request-id:"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");

    // The same connection serves the next request.
    conn.get_mut()
        .write_all(b"GET /health HTTP/1.1\r\nHost: chronicle\r\n\r\n")
        .await
        .unwrap();
    let (status, head, _) = answer(&mut conn).await;
    assert_eq!(status, "http/1.1 200 ok", "{head}");

    // Counted like any other answer.
    let metrics = t.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("route=\"/v1/test/panics\"")
                && l.contains("status=\"500\"")
                && l.starts_with("chronicle_http_requests_total")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_keyed_request_whose_handler_panicked_frees_its_key_for_the_retry() {
    let t = TestApp::spawn(Mode::Serve, &[]).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let addr = serve_with_panicking_routes(&t, calls.clone()).await;
    let me = t.signup("panicky").await;
    let send = || {
        t.http
            .post(format!("http://{addr}/v1/test/panics-once"))
            .bearer_auth(&me.token)
            .header("idempotency-key", "retry-me")
            .json(&json!({ "n": 1 }))
            .send()
    };

    let first = send().await.unwrap();
    assert_eq!(first.status(), 500);
    let body = first.text().await.unwrap();
    assert!(!body.contains(SECRET), "{body}");

    // The key is freed as the panicking task unwinds, on a task of its own: a retry
    // sent at once may still find it held (`409`, "retry later"), but within moments,
    // not the lease's 60 s, the retry runs.
    let started = Instant::now();
    let retried = loop {
        let r = send().await.unwrap();
        if r.status() != StatusCode::CONFLICT {
            break r;
        }
        let error: Value = r.json().await.unwrap();
        assert_eq!(
            error["error"]["code"], "idempotency_key_in_progress",
            "{error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the key is still held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(retried.status(), 201);
    assert_eq!(
        retried.json::<Value>().await.unwrap(),
        json!({ "done": true })
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the panic and the retry, no more"
    );

    // From now on the key answers with the stored answer and runs nothing.
    let replay = send().await.unwrap();
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
