//! A full disk, like the outages of `faults`: a dependency going away. An upload that
//! does not fit is refused `507 insufficient_storage` in the one error shape and leaves
//! nothing behind — no event, no file row, no partial bytes holding the space — and once
//! room is made the client's next attempt succeeds, a tus upload from the offset it had.
//! The disk is a real filesystem: a small tmpfs mounted as `DATA_DIR` for the test (the
//! suite runs as root, as CI does).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{Client, TestApp, bytes_of};
use chronicle::app::Mode;

const MIB: u64 = 1024 * 1024;

/// A tmpfs of a few MiB, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(size: u64) -> SmallDisk {
        let path =
            std::env::temp_dir().join(format!("chronicle-disk-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("`mount` runs");
        assert!(status.success(), "mounting a tmpfs needs root, as CI has");
        SmallDisk { path }
    }

    /// Bytes in use, as `df` counts them.
    fn used(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=used", "-B1"])
            .arg(&self.path)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().nth(1).unwrap().trim().parse().unwrap()
    }

    /// Fills the disk with a file of the test's own but for `leave` bytes; returns it.
    fn fill_but(&self, leave: u64) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![7u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&block) {
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        file.set_len(written.saturating_sub(leave)).unwrap();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Every file under `dir` (staging files included).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.map(Result::unwrap) {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    found
}

async fn spawn_on(disk: &SmallDisk) -> TestApp {
    let data_dir = disk.path.display().to_string();
    TestApp::spawn(
        Mode::Serve,
        &[("DATA_DIR", &data_dir), ("WORKER_CONCURRENCY", "1")],
    )
    .await
}

async fn count(t: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&t.db.owner)
        .await
        .unwrap()
}

async fn insufficient_storage(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains("/tmp") && !message.contains("os error"),
        "{message}"
    );
}

#[tokio::test]
async fn a_multipart_upload_that_does_not_fit_is_refused_507_and_leaves_nothing() {
    let disk = SmallDisk::mount(16 * MIB);
    let t = spawn_on(&disk).await;
    let me: Client = t.signup("fullmulti").await;
    let first = t.upload_ok(&me, "first.bin", bytes_of(1, 256 * 1024)).await;
    let first_id = first["file_id"].as_str().unwrap();
    assert_eq!(t.settled_status(first_id, 1).await, "completed");
    let temp_dir = disk.path.join("objects/tmp");
    assert_eq!(files_under(&temp_dir), Vec::<PathBuf>::new());

    let filler = disk.fill_but(512 * 1024);
    let used = disk.used();
    let events = count(&t, "SELECT count(*) FROM events").await;
    // Both ways the bytes reach the disk: held and written at once (under 1 MiB), and
    // streamed in parts to a staging file.
    for size in [900 * 1024, 3 * MIB] {
        let r = t.upload(&me, "big.bin", bytes_of(2, size as usize)).await;
        insufficient_storage(r).await;
        assert_eq!(count(&t, "SELECT count(*) FROM events").await, events);
        assert_eq!(count(&t, "SELECT count(*) FROM files").await, 1);
        assert_eq!(files_under(&temp_dir), Vec::<PathBuf>::new());
        assert!(disk.used() <= used + 64 * 1024, "{} > {used}", disk.used());
    }

    // Room again: the same upload goes through.
    std::fs::remove_file(filler).unwrap();
    let again = t
        .upload_ok(&me, "big.bin", bytes_of(2, 3 * MIB as usize))
        .await;
    let id = again["file_id"].as_str().unwrap();
    assert_eq!(t.settled_status(id, 1).await, "completed");
}

#[tokio::test]
async fn a_tus_chunk_that_does_not_fit_is_refused_507_and_the_upload_resumes_once_there_is_room() {
    let disk = SmallDisk::mount(16 * MIB);
    let t = spawn_on(&disk).await;
    let me: Client = t.signup("fulltus").await;
    let bytes = bytes_of(3, 2 * MIB as usize);
    let tus =
        |r: reqwest::RequestBuilder| r.bearer_auth(&me.token).header("Tus-Resumable", "1.0.0");
    let created = tus(t.http.post(t.url("/v1/uploads")))
        .header("Upload-Length", bytes.len())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let at = created.headers()["location"].to_str().unwrap().to_string();
    let patch = |offset: u64, chunk: &[u8]| {
        tus(t.http.patch(t.url(&at)))
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset)
            .body(chunk.to_vec())
            .send()
    };
    let half = MIB as usize;
    assert_eq!(patch(0, &bytes[..half]).await.unwrap().status(), 204);

    let filler = disk.fill_but(256 * 1024);
    let used = disk.used();
    let events = count(&t, "SELECT count(*) FROM events").await;
    insufficient_storage(patch(MIB, &bytes[half..]).await.unwrap()).await;
    let head = tus(t.http.head(t.url(&at))).send().await.unwrap();
    assert_eq!(
        head.headers()["upload-offset"],
        "1048576",
        "the offset stays"
    );
    assert_eq!(count(&t, "SELECT count(*) FROM events").await, events);
    let temp = files_under(&disk.path.join("objects/tmp"));
    assert_eq!(temp.len(), 1, "{temp:?}");
    assert_eq!(
        std::fs::metadata(&temp[0]).unwrap().len(),
        MIB,
        "cut back to the offset"
    );
    assert!(disk.used() <= used + 64 * 1024, "{} > {used}", disk.used());

    std::fs::remove_file(filler).unwrap();
    assert_eq!(patch(MIB, &bytes[half..]).await.unwrap().status(), 204);
    let file_id: String = crate::common::eventually_some("the upload's file", async || {
        sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM files")
            .fetch_optional(&t.db.owner)
            .await
            .unwrap()
            .map(|id| id.to_string())
    })
    .await;
    assert_eq!(t.settled_status(&file_id, 1).await, "completed");
    let content = t.content(&me, &file_id).await;
    assert!(content[..] == bytes[..], "the bytes survived the full disk");
}
