//! A real browser-style tus client, tus-js-client under Node (tests/tus-js), uploads
//! 12 MiB in 100 KiB chunks (~125 PATCHes) against a server whose request budget is 30 a
//! minute: an upload in progress must not be stopped by the request budget (tus clients
//! do not retry a 429). Then the worker processes it and the download is byte-identical.
//! Without node and `npm ci` in tests/tus-js the test fails in CI and skips loudly
//! elsewhere (.ci/run installs it).

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::common::TempDir;
use crate::common::eventually_within;
use crate::files_api::World;

const SIZE: usize = 12 << 20;
const CHUNK: usize = 100 << 10;

fn client_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tus-js"))
}

fn tus_js_available(test: &str) -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let installed = client_dir().join("node_modules/tus-js-client").is_dir();
    if !(node && installed) {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{test}: node with tus-js-client is required in CI (.ci/run runs `npm ci` in tests/tus-js)"
            );
        }
        eprintln!(
            "!!! SKIPPED {test}: node or tests/tus-js/node_modules is missing; run `npm ci` in \
             tests/tus-js to run the real-client test !!!"
        );
    }
    node && installed
}

/// Deterministic bytes that no scanner signature matches by accident.
fn content() -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut out = Vec::with_capacity(SIZE);
    while out.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(SIZE);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_uploads_12_mib_in_100_kib_chunks_under_a_30_per_minute_budget() {
    if !tus_js_available("tus_js_client_uploads_in_small_chunks") {
        return;
    }
    let w = World::new(&[("WORKER_CONCURRENCY", "1"), ("RATE_LIMIT_PER_MINUTE", "30")]).await;
    let dir = TempDir::new();
    let path = dir.0.join("small-chunks.bin");
    let bytes = content();
    let expected = hex::encode(Sha256::digest(&bytes));
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);
    let endpoint = w.t.url("/v1/uploads");
    let token = w.admin.token.clone();
    let path_arg = path.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .current_dir(client_dir())
            .args([
                "upload.mjs",
                &endpoint,
                &token,
                &path_arg,
                &CHUNK.to_string(),
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "tus-js-client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["offset"], SIZE as u64);
    let patches = result["patches"].as_u64().unwrap();
    assert!(
        patches > 100,
        "the budget was really exceeded: {patches} PATCHes"
    );
    let file_id = result["file_id"]
        .as_str()
        .expect("Chronicle-File-Id on the final PATCH")
        .to_string();
    // The worker completes it like any upload; then the download is byte-identical.
    eventually_within(
        "the tus-js-client upload completed",
        Duration::from_secs(120),
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
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), SIZE);
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        expected,
        "byte-identical download"
    );
}
