//! Issue 11, defect 4: while Postgres was unreachable requests hung 5 s and answered 500.
//! They must fail within 1 s with `503 service_unavailable` and `Retry-After`, and the
//! service recover by itself once the database is back. Same for Redis where a route
//! depends on it (the auth routes' rate limiter).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::{Chronicle, Deployment, unique_bytes};
use crate::common::{PATIENCE, TempDir, eventually_explained};
use crate::services::{OwnPostgres, OwnRedis};

/// The bound for a refusal during an outage.
const FAST: Duration = Duration::from_secs(1);

/// Sends `request`; asserts a 503 in the error shape with `Retry-After`, within 1 s.
async fn refused_fast(what: &str, request: reqwest::RequestBuilder) {
    let started = Instant::now();
    let r = request.send().await.unwrap();
    let elapsed = started.elapsed();
    let status = r.status();
    let retry_after = r.headers().get("retry-after").cloned();
    let body: Value = r.json().await.unwrap_or_default();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {body}");
    assert_eq!(
        body["error"]["code"], "service_unavailable",
        "{what}: {body}"
    );
    assert!(body["error"]["message"].is_string(), "{what}: {body}");
    assert!(retry_after.is_some(), "{what}: no Retry-After");
    assert!(elapsed <= FAST, "{what} took {elapsed:?}");
}

/// Sends a 50 KB upload and then a listing on one keep-alive connection, and returns
/// the two answers' status lines ("" for one that never came). A refusal that leaves the
/// upload's body unread makes the server close the connection after answering, without
/// saying so (`Connection: close`): a client that reuses the connection for its next
/// request, as clients' pools do, races the close and gets a transport error.
async fn two_on_one_connection(c: &Chronicle, token: &str) -> (String, String) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let base = c.url("");
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let body = vec![b'x'; 50_000];
    let upload = format!(
        "POST /v1/files HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: multipart/form-data; boundary=b\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let listing = format!(
        "GET /v1/files?limit=7 HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         connection: close\r\n\r\n"
    );
    let mut conn = BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    conn.get_mut().write_all(upload.as_bytes()).await.unwrap();
    conn.get_mut().write_all(&body).await.unwrap();
    // The first answer: its head, then its body by Content-Length.
    let (mut first, mut length) = (String::new(), 0usize);
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if first.is_empty() {
            first = line.trim_end().to_string();
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut answer = vec![0u8; length];
    conn.read_exact(&mut answer).await.unwrap();
    // The next request on the same connection, a moment later.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = conn.get_mut().write_all(listing.as_bytes()).await;
    let mut second = String::new();
    let _ = conn.read_line(&mut second).await;
    (first, second.trim_end().to_string())
}

/// Polls `probe` until it answers `expected` (the service recovers by itself).
async fn recovers(what: &str, expected: StatusCode, probe: impl AsyncFn() -> reqwest::Response) {
    eventually_explained(what, PATIENCE, async || {
        let status = probe().await.status();
        (status == expected)
            .then_some(())
            .ok_or_else(|| format!("still {status}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_redis_outages_answer_503_fast_and_the_service_recovers_by_itself() {
    let pg = OwnPostgres::start();
    let mut redis = OwnRedis::start();
    let data = TempDir::new();
    let deployment = Deployment {
        database_url: pg.url("chronicle"),
        redis_url: redis.url(),
        redis_prefix: "outage:".into(),
        data_dir: data.0.clone(),
    };
    let c: Chronicle = deployment.start_http("serve", &[]).await;
    let token = c.account("ada").await;
    let r = c
        .upload(&token, "a.bin", unique_bytes(1, 1000))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let file_id = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    let read = || c.http.get(c.url("/v1/files")).bearer_auth(&token);
    // A listing this instance has not answered before: it needs Postgres. (One it has
    // answered may come from its memory, which is current while nothing can commit:
    // docs/listing-cache.md.)
    let unasked = || c.http.get(c.url("/v1/files?limit=7")).bearer_auth(&token);
    let one = || {
        c.http
            .get(c.url(&format!("/v1/files/{file_id}")))
            .bearer_auth(&token)
    };
    let form = || {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(unique_bytes(2, 1000))
                .file_name("b.bin")
                .mime_str("application/octet-stream")
                .unwrap(),
        )
    };
    let write = || {
        c.http
            .post(c.url("/v1/files"))
            .bearer_auth(&token)
            .multipart(form())
    };
    let login = || {
        c.http.post(c.url("/v1/auth/login")).json(
            &serde_json::json!({"email": "ada@example.com", "password": "correct horse battery staple"}),
        )
    };
    assert_eq!(read().send().await.unwrap().status(), StatusCode::OK);

    // Postgres down: a read, a write, a login, each twice (the first meets the pool's
    // dead connections, the second a pool that must connect).
    tokio::task::block_in_place(|| pg.stop());
    for _ in 0..2 {
        refused_fast("GET /v1/files?limit=7", unasked()).await;
        refused_fast("GET /v1/files/{id}", one()).await;
        refused_fast("POST /v1/files", write()).await;
        refused_fast("POST /v1/auth/login", login()).await;
    }
    let ready = c.http.get(c.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (first, second) = two_on_one_connection(&c, &token).await;
    assert!(first.starts_with("HTTP/1.1 503"), "{first}");
    assert!(
        second.starts_with("HTTP/1.1 503"),
        "the connection still serves after a refused upload: {second:?}"
    );

    // Back: the same process serves again.
    tokio::task::block_in_place(|| pg.resume());
    recovers("GET /v1/files", StatusCode::OK, async || {
        read().send().await.unwrap()
    })
    .await;
    recovers("POST /v1/auth/login", StatusCode::OK, async || {
        login().send().await.unwrap()
    })
    .await;
    recovers("POST /v1/files", StatusCode::ACCEPTED, async || {
        write().send().await.unwrap()
    })
    .await;

    // The file as projected again once Postgres is back (its projector retries the
    // batch the outage failed): what the Redis outage below must not take away.
    recovers("GET /v1/files/{id}", StatusCode::OK, async || {
        one().send().await.unwrap()
    })
    .await;

    // Redis down: the auth routes' writes depend on it (rate limiter) → fast 503;
    // reads of files do not (served from Postgres, limits fall back).
    redis.stop();
    for _ in 0..2 {
        refused_fast("POST /v1/auth/login (redis down)", login()).await;
        let started = Instant::now();
        let r = one().send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "a file read without Redis");
        assert!(started.elapsed() <= FAST, "took {:?}", started.elapsed());
    }
    // An upload needs no Redis to be accepted: its job, which Redis cannot take now, is
    // queued by the reconciler once Redis is back (src/queue/dispatch.rs).
    let started = Instant::now();
    let r = write().send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "an upload without Redis");
    assert!(started.elapsed() <= FAST, "took {:?}", started.elapsed());
    let offline_id = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    redis.resume();
    recovers("POST /v1/auth/login", StatusCode::OK, async || {
        login().send().await.unwrap()
    })
    .await;
    let owner = chronicle::db::pool(&pg.url("chronicle"), chronicle::db::DbRole::Owner, 1)
        .await
        .unwrap();
    eventually_explained(
        "the upload accepted without Redis completes once Redis is back",
        PATIENCE,
        async || {
            let status: Option<String> = sqlx::query_scalar(
                "SELECT status::text FROM file_versions WHERE file_id = $1::uuid",
            )
            .bind(&offline_id)
            .fetch_optional(&owner)
            .await
            .unwrap();
            match status.as_deref() {
                Some("completed") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}
