//! `chronicle client` as a user runs it (the real binary, as its own process) against a
//! real server: a 200 MiB upload killed with SIGKILL mid-way resumes where the server
//! stands, and the download's SHA-256 matches the file (docs/cli.md).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chronicle::app::Mode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{TempDir, TestApp, WORKER, eventually_some};

const SIZE: usize = 200 * 1024 * 1024;

fn client(t: &TestApp, key: &str, state: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command
        .arg("client")
        .args(args)
        .env("CHRONICLE_SERVER", &t.base)
        .env("CHRONICLE_API_KEY", key)
        .env("CHRONICLE_STATE_DIR", state)
        .env("CHRONICLE_CONFIG", state.join("none.toml"))
        .stdin(Stdio::null());
    command
}

fn json_of(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A file of `SIZE` pseudo-random bytes, and its SHA-256.
fn big_file(path: &Path) -> String {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..SIZE / block.len() {
        for b in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        hasher.update(&block);
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
    hex::encode(hasher.finalize())
}

async fn chunks_accepted(t: &TestApp) -> i64 {
    chunks_accepted_from(t, 0).await
}

/// Chunks accepted at or after byte `offset`: what a resumed run sent. (Counting all
/// chunks before and after the resume is racy: the killed client's last PATCH may still
/// be committing on the server when the "before" count is read.)
async fn chunks_accepted_from(t: &TestApp, offset: u64) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'ChunkAccepted'
           AND (payload->'ChunkAccepted'->>'from_offset')::bigint >= $1",
    )
    .bind(offset as i64)
    .fetch_one(&t.db.owner)
    .await
    .unwrap()
}

// Multi-threaded: the client runs as a blocking child process while the server it talks
// to runs in this test's runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_killed_mid_way_resumes_and_the_download_matches() {
    let t = TestApp::spawn(Mode::Serve, WORKER).await;
    let admin = t.signup("cli").await;
    let created: Value = t
        .http
        .post(t.url("/v1/api-keys"))
        .bearer_auth(&admin.token)
        .json(&json!({"name": "cli test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let dir = TempDir::new();
    let path = dir.0.join("big.bin");
    let sha = big_file(&path);
    let path_text = path.display().to_string();
    let upload = [
        "--json",
        "upload",
        "--chunk-size",
        "4194304",
        path_text.as_str(),
    ];

    // First run: killed (SIGKILL) once a few chunks are in.
    let mut first = client(&t, &key, &dir.0, &upload)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::common::eventually_within(
        "the client has sent three chunks",
        Duration::from_secs(120),
        async || {
            assert!(
                first.try_wait().unwrap().is_none(),
                "the client ended early"
            );
            (chunks_accepted(&t).await >= 3).then_some(())
        },
    )
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        std::fs::read_to_string(dir.0.join("uploads.json"))
            .unwrap()
            .contains("/v1/uploads/")
    );

    // Second run: resumes from the server's offset, sends only the rest.
    let started = Instant::now();
    let out = client(&t, &key, &dir.0, &upload).output().unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let done = &json_of(&out)["uploads"][0];
    let resumed_from = done["resumed_from"].as_u64().unwrap();
    assert!(resumed_from > 0 && resumed_from < SIZE as u64, "{done}");
    assert_eq!(resumed_from % 4_194_304, 0, "{done}");
    assert_eq!(done["bytes"], SIZE as u64);
    assert_eq!(
        chunks_accepted_from(&t, resumed_from).await as u64,
        (SIZE as u64 - resumed_from).div_ceil(4_194_304),
        "chunks sent again"
    );
    eprintln!(
        "CLI upload: resumed at {resumed_from}, {:.1} MB/s over the rest ({secs:.1} s)",
        done["mb_per_sec"].as_f64().unwrap()
    );
    // Forgotten once done.
    assert!(
        !std::fs::read_to_string(dir.0.join("uploads.json"))
            .unwrap()
            .contains("/v1/uploads/")
    );

    let file_id = done["file_id"].as_str().unwrap().to_string();
    assert_eq!(t.settled_status(&file_id, 1).await, "completed");
    let target = dir.0.join("copy.bin");
    let target_text = target.display().to_string();
    let out = client(
        &t,
        &key,
        &dir.0,
        &["--json", "download", &file_id, "-o", &target_text],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got = json_of(&out);
    assert_eq!(got["sha256"], sha.as_str());
    assert_eq!(got["verified"], true);
    assert_eq!(got["bytes"], SIZE as u64);

    // A listing and the file's info through the client, as JSON.
    let out = client(&t, &key, &dir.0, &["--json", "ls"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(json_of(&out)["items"][0]["id"], file_id.as_str());
    // The tenant's storage: the one file (projected with the listing's row), no quota.
    let out = client(&t, &key, &dir.0, &["--json", "usage"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(json_of(&out), json!({"stored_bytes": SIZE as u64}));
    let out = client(&t, &key, &dir.0, &["usage"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{SIZE} bytes stored (no quota)")
    );
    // The key's inbox: its upload completed (projected a moment after the version).
    let inbox = eventually_some("the key's notification is listed", async || {
        let out = client(&t, &key, &dir.0, &["--json", "notifications"])
            .output()
            .unwrap();
        let inbox = json_of(&out);
        (inbox["unread_count"] == 1).then_some(inbox)
    })
    .await;
    assert_eq!(inbox["items"][0]["kind"], "version_completed");
    assert_eq!(inbox["items"][0]["file_id"], file_id.as_str());
    let out = client(&t, &key, &dir.0, &["notifications", "--unread"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim_end().ends_with("1 unread"), "{text}");
    let out = client(&t, &key, &dir.0, &["--json", "notifications", "--read-all"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(json_of(&out), json!({"unread_before": 1}));
    eventually_some("the inbox is read", async || {
        let out = client(&t, &key, &dir.0, &["--json", "notifications", "--unread"])
            .output()
            .unwrap();
        let inbox = json_of(&out);
        (inbox["unread_count"] == 0 && inbox["items"] == json!([])).then_some(())
    })
    .await;
    // A revoked key: exit 3, the error as JSON.
    let id = created["id"].as_str().unwrap();
    t.http
        .delete(t.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    let out = client(&t, &key, &dir.0, &["--json", "info", &file_id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(json_of(&out)["error"]["code"], "api_key_revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_checks_the_chain_locally_and_a_corrupt_download_keeps_nothing() {
    let t = TestApp::spawn(Mode::Serve, WORKER).await;
    let admin = t.signup("verify").await;
    let created: Value = t
        .http
        .post(t.url("/v1/api-keys"))
        .bearer_auth(&admin.token)
        .json(&json!({"name": "auditor", "role": "admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let dir = TempDir::new();
    let small = dir.0.join("small.txt");
    std::fs::write(&small, b"hello, chronicle").unwrap();
    let out = client(
        &t,
        &key,
        &dir.0,
        &["--json", "upload", &small.display().to_string()],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let file_id = json_of(&out)["uploads"][0]["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(t.settled_status(&file_id, 1).await, "completed");

    let out = client(&t, &key, &dir.0, &["--json", "verify"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report = json_of(&out);
    assert_eq!(report["intact"], true, "{report}");
    assert!(report["events"].as_u64().unwrap() >= 5, "{report}");

    // A partial download whose bytes are wrong: resumed, checked, refused, nothing kept.
    let target = dir.0.join("copy.txt");
    std::fs::write(dir.0.join("copy.txt.part"), b"HELLO").unwrap();
    let etag = format!("\"{}\"", hex::encode(Sha256::digest(b"hello, chronicle")));
    std::fs::write(dir.0.join("copy.txt.part.etag"), etag).unwrap();
    let out = client(
        &t,
        &key,
        &dir.0,
        &[
            "--json",
            "download",
            &file_id,
            "-o",
            &target.display().to_string(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!target.exists() && !dir.0.join("copy.txt.part").exists());
    // Resumed correctly it matches.
    let out = client(
        &t,
        &key,
        &dir.0,
        &[
            "--json",
            "download",
            &file_id,
            "-o",
            &target.display().to_string(),
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read(&target).unwrap(), b"hello, chronicle");
    // Someone edits an event behind the log's back: verify names it and exits 1.
    sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
        .execute(&t.db.owner)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE events SET payload = '{\"Renamed\":{\"display_name\":\"forged\"}}'
          WHERE aggregate_id = $1 AND sequence = 1",
    )
    .bind(&file_id)
    .execute(&t.db.owner)
    .await
    .unwrap();
    let out = client(&t, &key, &dir.0, &["--json", "verify"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = json_of(&out);
    assert_eq!(report["intact"], false);
    assert_eq!(
        report["breaks"][0]["aggregate_id"],
        file_id.as_str(),
        "{report}"
    );
}

/// `watch` against the feed (`GET /v1/feed/stream`, built on another branch): one line
/// per event, in order, and a second run resumes after the cursor the first printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_follows_the_feed_and_resumes_after_its_cursor() {
    let t = TestApp::spawn(Mode::Serve, WORKER).await;
    let admin = t.signup("watch").await;
    let created: Value = t
        .http
        .post(t.url("/v1/api-keys"))
        .bearer_auth(&admin.token)
        .json(&json!({"name": "watcher", "role": "auditor", "scopes": ["feed:read", "files:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let dir = TempDir::new();
    // The first page of the feed (the registration's events), then `watch` after its
    // first cursor: the next two, in order.
    // The feed serves an event once every transaction that began before its commit has
    // ended (docs/feed.md); on a busy Postgres that may take a moment.
    let page: Value = eventually_some("the feed's first three events", async || {
        let page: Value = t
            .http
            .get(t.url("/v1/feed?limit=3"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 3).then_some(page)
    })
    .await;
    let items = page["items"].as_array().unwrap();
    let cursor = items[0]["cursor"].as_str().unwrap();
    let out = client(
        &t,
        &key,
        &dir.0,
        &["--json", "watch", "--after", cursor, "--count", "2"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["position"], items[1]["position"]);
    assert_eq!(lines[1]["position"], items[2]["position"]);
}
