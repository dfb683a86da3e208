//! A real tus client (tuspy, tests/tus_client.py) uploads 200 MiB through a TCP proxy
//! that cuts the connection twice in the middle of a PATCH body. The client resumes
//! from what HEAD reports, the upload completes, the worker processes it, and the
//! download is byte-identical. Without python3 + tuspy the test fails in CI and skips
//! loudly elsewhere (`pip install tuspy`; .ci/run installs it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::TempDir;
use crate::common::eventually_within;
use crate::files_api::World;

const SIZE: usize = 200 << 20;
const CHUNK: u64 = 32 << 20;
/// Upstream byte counts at which the proxy cuts a connection (each mid-PATCH).
const CUTS: [u64; 2] = [50 << 20, 120 << 20];

fn tuspy_available(test: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import tusclient"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: python3 with tuspy is required in CI (.ci/run installs it)");
        }
        eprintln!(
            "!!! SKIPPED {test}: python3 with tuspy is missing; `pip install tuspy` to run \
             the real-client test !!!"
        );
    }
    ok
}

/// Forwards connections to `upstream`, counting client→server bytes over all of them;
/// when the count crosses the next of `CUTS`, that connection is dropped both ways.
struct CuttingProxy {
    addr: std::net::SocketAddr,
    cuts_done: Arc<AtomicUsize>,
}

impl CuttingProxy {
    async fn start(upstream: String) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let cuts_done = Arc::new(AtomicUsize::new(0));
        let done = cuts_done.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.unwrap();
                tokio::spawn(pipe(client, server, sent.clone(), done.clone()));
            }
        });
        CuttingProxy { addr, cuts_done }
    }
}

async fn pipe(client: TcpStream, server: TcpStream, sent: Arc<AtomicU64>, cuts: Arc<AtomicUsize>) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let before = sent.fetch_add(n as u64, Ordering::SeqCst);
        let due = cuts.load(Ordering::SeqCst);
        if let Some(&at) = CUTS.get(due)
            && before + n as u64 >= at
        {
            let keep = at.saturating_sub(before) as usize;
            let _ = server_tx.write_all(&buf[..keep]).await;
            cuts.fetch_add(1, Ordering::SeqCst);
            back.abort();
            return; // both halves of both sockets drop: the connection is cut
        }
        if server_tx.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = server_tx.shutdown().await;
    let _ = back.await;
}

/// Deterministic bytes that no scanner signature matches by accident.
fn content() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(SIZE);
    while out.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_resumes_a_200_mib_upload_cut_twice_and_the_download_is_identical() {
    if !tuspy_available("tuspy_resumes_a_200_mib_upload_cut_twice") {
        return;
    }
    let w = World::new(&[("WORKER_CONCURRENCY", "1")]).await;
    let dir = TempDir::new();
    let path = dir.0.join("big.bin");
    let bytes = content();
    let expected = hex::encode(Sha256::digest(&bytes));
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);
    let proxy = CuttingProxy::start(w.t.base.trim_start_matches("http://").to_string()).await;
    let endpoint = format!("http://{}/v1/uploads", proxy.addr);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tus_client.py");
    let token = w.admin.token.clone();
    let path_arg = path.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &endpoint, &token, &path_arg, &CHUNK.to_string()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "tuspy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        proxy.cuts_done.load(Ordering::SeqCst),
        2,
        "two cuts happened"
    );
    assert_eq!(result["offset"], SIZE as u64);
    let file_id = result["file_id"]
        .as_str()
        .expect("Chronicle-File-Id")
        .to_string();
    // The cut chunks were kept: some accepted chunk is shorter than a whole one and
    // does not end the upload.
    let partial: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'ChunkAccepted'
            AND (payload->'ChunkAccepted'->>'offset')::bigint
              - (payload->'ChunkAccepted'->>'from_offset')::bigint < $1
            AND (payload->'ChunkAccepted'->>'offset')::bigint < $2",
    )
    .bind(CHUNK as i64)
    .bind(SIZE as i64)
    .fetch_one(&w.t.db.owner)
    .await
    .unwrap();
    assert!(
        partial >= 2,
        "the bytes before each cut were recorded ({partial})"
    );
    // The worker finishes it like any upload; then the download is byte-identical.
    eventually_within(
        "the tuspy upload completed",
        Duration::from_secs(180),
        async || {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status::text FROM file_versions WHERE file_id = $1")
                    .bind(file_id.parse::<uuid::Uuid>().unwrap())
                    .fetch_optional(&w.t.db.owner)
                    .await
                    .unwrap();
            (status.as_deref() == Some("completed")).then_some(())
        },
    )
    .await;
    let r =
        w.t.http
            .get(w.t.url(&format!("/v1/files/{file_id}/content")))
            .bearer_auth(&w.admin.token)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut hasher = Sha256::new();
    let mut size = 0usize;
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        size += chunk.len();
        hasher.update(&chunk);
    }
    assert_eq!(size, SIZE);
    assert_eq!(
        hex::encode(hasher.finalize()),
        expected,
        "byte-identical download"
    );
}
