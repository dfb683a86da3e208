//! The real binary as its own process: a worker killed with SIGKILL in the middle of a
//! job, and a 2 GiB upload with the server's memory watched from outside.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chronicle::app::Mode;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::bytes_of;
use crate::common::{TempDir, TestApp, TestDb, redis_url, unique_redis_prefix};
use crate::process::{Process, free_port, wait_ready};

async fn count(db: &sqlx::PgPool, file_id: &str, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = $2")
        .bind(file_id)
        .bind(event_type)
        .fetch_one(db)
        .await
        .unwrap()
}

/// A clamd that accepts connections and never answers: the job hangs in its scan step.
async fn hung_scanner() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

#[tokio::test]
async fn a_worker_killed_mid_job_is_replaced_and_the_job_completes_exactly_once() {
    // The API in this process; workers as separate processes on the same database,
    // storage and Redis prefix.
    let t = TestApp::spawn(Mode::Web, &[]).await;
    let c = t.signup("crash").await;
    let config = &t.app.state.config;
    let data_dir = config.data_dir.display().to_string();
    let hung = hung_scanner().await.to_string();
    let worker_env = |scanner: &[(&'static str, String)]| {
        let mut env = vec![
            ("DATABASE_URL", t.db.url.clone()),
            ("REDIS_URL", redis_url()),
            ("REDIS_KEY_PREFIX", config.redis_key_prefix.clone()),
            ("DATA_DIR", data_dir.clone()),
            ("WORKER_CONCURRENCY", "1".into()),
            ("JOB_VISIBILITY_TIMEOUT_SECS", "2".into()),
            ("LOG_FORMAT", "json".into()),
        ];
        env.extend(scanner.iter().cloned());
        env
    };
    let env_a = worker_env(&[
        ("SCANNER", "clamd".into()),
        ("CLAMD_ADDR", hung.clone()),
        ("CLAMD_TIMEOUT_MS", "600000".into()),
    ]);
    let mut worker_a = Process::spawn(&["worker"], &env_a, &config.data_dir);

    let bytes = bytes_of(5, 3_000_000);
    let accepted = t.upload_ok(&c, "big.bin", bytes.clone()).await;
    let file_id = accepted["file_id"].as_str().unwrap().to_string();

    // Wait until worker A is inside the job (started, hashed, now hanging in the scan).
    crate::common::eventually_explained(
        "worker A starts the job",
        Duration::from_secs(60),
        async || match count(&t.db.owner, &file_id, "Hashed").await {
            0 => Err(worker_a.output()),
            _ => Ok(()),
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(&t.db.owner, &file_id, "VersionCompleted").await, 0);
    worker_a.kill9();

    // Worker B, with a working scanner, claims the job once its visibility timeout passed.
    let env_b = worker_env(&[("SCANNER", "builtin".into())]);
    let worker_b = Process::spawn(&["worker"], &env_b, &config.data_dir);
    let status = tokio::time::timeout(Duration::from_secs(60), t.settled_status(&file_id, 1))
        .await
        .unwrap_or_else(|_| panic!("not settled: {}", worker_b.output()));
    assert_eq!(status, "completed");

    // Exactly one of everything: the redelivery reused the attempt and repeated no step.
    for (event, n) in [
        ("Uploaded", 1),
        ("ProcessingStarted", 1),
        ("Hashed", 1),
        ("VersionCompleted", 1),
        ("ProcessingFailed", 0),
    ] {
        assert_eq!(count(&t.db.owner, &file_id, event).await, n, "{event}");
    }
    let versions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM file_versions WHERE file_id = $1::uuid")
            .bind(&file_id)
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    assert_eq!(versions, 1);
    let r = t
        .http
        .get(t.url(&format!("/v1/files/{file_id}/content")))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..]);
}

const GIB: u64 = 1024 * 1024 * 1024;

#[tokio::test]
async fn a_2_gib_upload_streams_with_the_servers_memory_bounded() {
    let db = TestDb::new().await;
    let data_dir = TempDir::new();
    let port = free_port().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", unique_redis_prefix()),
        ("DATA_DIR", data_dir.0.display().to_string()),
        ("BIND_ADDR", format!("127.0.0.1:{port}")),
        ("LOG_FORMAT", "json".into()),
    ];
    let server = Process::spawn(&["web"], &env, &data_dir.0);
    let http = reqwest::Client::new();
    wait_ready(&http, &base, &server).await;

    let r = http.post(format!("{base}/v1/auth/register"))
        .json(&json!({"tenant_name": "big inc", "handle": "big", "name": "big", "email": "big@example.com", "password": "correct horse battery staple"}))
        .send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let login: Value = http
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": "big@example.com", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_string();

    // 2 GiB generated on the fly (one 1 MiB buffer, shared), hashed as it is sent.
    let block = Bytes::from(bytes_of(11, 1024 * 1024));
    let head = Bytes::from_static(
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n",
    );
    let tail = Bytes::from_static(b"\r\n--B--\r\n");
    let blocks = 2 * GIB / block.len() as u64;
    let mut hasher = Sha256::new();
    for _ in 0..blocks {
        hasher.update(&block);
    }
    let expected_sha = hex::encode(hasher.finalize());
    let length = head.len() as u64 + 2 * GIB + tail.len() as u64;
    let body = futures::stream::iter(
        std::iter::once(head)
            .chain((0..blocks).map(move |_| block.clone()))
            .chain(std::iter::once(tail))
            .map(Ok::<_, std::io::Error>),
    );

    let baseline = server.rss_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let peak = peak.clone();
        let pid = server.pid();
        tokio::spawn(async move {
            loop {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(kib) = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let r = http
        .post(format!("{base}/v1/files"))
        .bearer_auth(&token)
        .header("content-type", "multipart/form-data; boundary=B")
        .header("content-length", length)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    sampler.abort();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", server.output());
    let growth_mib = (peak.load(Ordering::Relaxed).saturating_sub(baseline)) / 1024;
    eprintln!(
        "2 GiB upload: server RSS baseline {} MiB, growth {growth_mib} MiB",
        baseline / 1024
    );
    assert!(growth_mib < 64, "the server's RSS grew by {growth_mib} MiB");

    let (size, sha): (i64, String) = sqlx::query_as(
        "SELECT (payload::jsonb #>> '{Uploaded,version,size_bytes}')::bigint,
                payload::jsonb #>> '{Uploaded,version,sha256}'
           FROM events WHERE event_type = 'Uploaded'",
    )
    .fetch_one(&db.owner)
    .await
    .unwrap();
    assert_eq!(size as u64, 2 * GIB);
    assert_eq!(sha, expected_sha);
}
