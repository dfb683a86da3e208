//! Clients that hold connections without sending requests (slowloris, or a pool's idle
//! connection) lose them after `HTTP_HEADER_TIMEOUT_SECS` (src/api/serve.rs); a client
//! whose request head is in is not limited by it — a slow body, a long event stream.

use std::time::{Duration, Instant};

use chronicle::app::Mode;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestApp, bytes_of};

/// How long `conn` stays open without sending anything more; panics past `limit`.
async fn closed_after(conn: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let read = tokio::time::timeout(limit, conn.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("the connection was still open after {limit:?}"));
        match read {
            Ok(0) | Err(_) => return started.elapsed(),
            // The answer to a request sent before; keep reading until the close.
            Ok(_) => continue,
        }
    }
}

async fn connect(t: &TestApp) -> TcpStream {
    TcpStream::connect(t.app.addr.unwrap()).await.unwrap()
}

#[tokio::test]
async fn a_connection_that_sends_no_request_head_in_time_is_closed() {
    let t = TestApp::spawn(Mode::Serve, &[("HTTP_HEADER_TIMEOUT_SECS", "1")]).await;
    let limit = Duration::from_secs(10);

    // Half a request head, then nothing.
    let mut partial = connect(&t).await;
    partial
        .write_all(b"GET /health HTTP/1.1\r\nHost: chronicle\r\n")
        .await
        .unwrap();
    let held = closed_after(&mut partial, limit).await;
    assert!(held >= Duration::from_millis(900), "{held:?}");

    // Nothing at all.
    let mut silent = connect(&t).await;
    let held = closed_after(&mut silent, limit).await;
    assert!(held >= Duration::from_millis(900), "{held:?}");

    // An answered request, then an idle keep-alive connection.
    let mut idle = connect(&t).await;
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: chronicle\r\n\r\n")
        .await
        .unwrap();
    closed_after(&mut idle, limit).await;

    // The server itself is unharmed.
    let health = t.http.get(t.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_slow_body_and_a_long_event_stream_outlive_the_header_timeout() {
    let t = TestApp::spawn(
        Mode::Serve,
        &[
            ("HTTP_HEADER_TIMEOUT_SECS", "1"),
            ("WORKER_CONCURRENCY", "1"),
        ],
    )
    .await;
    let me = t.signup("slowpoke").await;

    // Live events, held open three times the header timeout before anything happens.
    let events = t
        .http
        .get(t.url("/v1/events"))
        .bearer_auth(&me.token)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut events = events.bytes_stream();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A multipart upload whose body trickles in over three seconds.
    let boundary = "slowboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend(bytes_of(9, 6000));
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let pieces: Vec<Vec<u8>> = body.chunks(1000).map(<[u8]>::to_vec).collect();
    let trickle = futures::stream::iter(pieces).then(|piece| async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok::<_, std::io::Error>(piece)
    });
    let started = Instant::now();
    let r = t
        .http
        .post(t.url("/v1/files"))
        .bearer_auth(&me.token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(trickle))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    assert!(started.elapsed() >= Duration::from_secs(2));
    let file: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        t.settled_status(file["file_id"].as_str().unwrap(), 1).await,
        "completed"
    );

    // The stream opened five seconds ago carries the upload's news.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("data:") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, events.next())
            .await
            .expect("an event within 20 s")
            .expect("the stream is still open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"file_name\":\"slow.bin\""), "{seen}");
}
