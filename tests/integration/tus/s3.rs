//! tus in S3 mode against moto (scripts/start-moto.sh; `S3_TEST_ENDPOINT` names it):
//! parts of 8 MiB, tails, checksum discards, cut PATCHes, termination and expiry, and
//! what stays in the bucket afterwards (objects and unfinished multipart uploads).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use sha1::Digest;
use tokio::io::AsyncWriteExt;

use super::*;
use crate::common::{WORKER, bytes_of};
use crate::files_api::World;

const MIB: usize = 1024 * 1024;

struct Bucket {
    endpoint: String,
    name: String,
}

impl Bucket {
    /// Keys in the bucket under `prefix`.
    async fn keys(&self, prefix: &str) -> Vec<String> {
        let xml = reqwest::get(format!(
            "{}/{}?list-type=2&prefix={prefix}",
            self.endpoint, self.name
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        between(&xml, "<Key>", "</Key>")
    }

    /// Keys of the bucket's unfinished multipart uploads.
    async fn multipart_uploads(&self) -> Vec<String> {
        let xml = reqwest::get(format!("{}/{}?uploads", self.endpoint, self.name))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        between(&xml, "<Upload>", "</Upload>")
    }
}

fn between(xml: &str, open: &str, close: &str) -> Vec<String> {
    xml.split(open)
        .skip(1)
        .filter_map(|s| s.split(close).next())
        .map(str::to_string)
        .collect()
}

/// A World on a fresh bucket, or `None` (skipped loudly; a failure under CI).
async fn s3_world(extra: &[(&str, &str)]) -> Option<(World, Bucket)> {
    let Ok(endpoint) = std::env::var("S3_TEST_ENDPOINT") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide S3_TEST_ENDPOINT"
        );
        eprintln!("!!! SKIPPED: S3_TEST_ENDPOINT is not set (scripts/start-moto.sh starts one)");
        return None;
    };
    let name = format!("tus-{}", Uuid::now_v7().simple());
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/{name}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "bucket: {}", r.status());
    let mut overrides = vec![
        ("S3_BUCKET", name.as_str()),
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_ALLOW_HTTP", "true"),
        ("S3_ACCESS_KEY_ID", "test"),
        ("S3_SECRET_ACCESS_KEY", "test"),
    ];
    overrides.extend_from_slice(extra);
    let w = World::new(&overrides).await;
    assert_eq!(w.t.app.state.storage.kind, "s3");
    Some((w, Bucket { endpoint, name }))
}

fn sha1_b64(bytes: &[u8]) -> String {
    STANDARD.encode(sha1::Sha1::digest(bytes))
}

async fn patch_checked(w: &World, at: &str, offset: u64, bytes: &[u8], sum: &str) -> Response {
    tus(w.t.http.patch(w.t.url(at)), &w.admin)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", offset)
        .header("Upload-Checksum", format!("sha1 {sum}"))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

async fn download(w: &World, file_id: &str) -> Vec<u8> {
    assert_eq!(w.t.settled_status(file_id, 1).await, "completed");
    let r =
        w.t.http
            .get(w.t.url(&format!("/v1/files/{file_id}/content")))
            .bearer_auth(&w.admin.token)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn odd_chunks_and_a_discarded_one_become_a_byte_identical_file() {
    let Some((w, bucket)) = s3_world(&[WORKER[0]]).await else {
        return;
    };
    let bytes = bytes_of(29, 25 * MIB + 123);
    let at = create(
        &w,
        &w.admin,
        bytes.len() as u64,
        &meta(&[("filename", "big.bin")]),
    )
    .await;
    let id = upload_id(&at);
    // 3 MiB (a tail only), 7 MiB (part 0 + tail), 2 MiB (tail only, in the middle),
    // 11 MiB (part 1 + part 2 + tail), the rest (the tail becomes the last part).
    let cuts = [3 * MIB, 10 * MIB, 12 * MIB, 23 * MIB, bytes.len()];
    let mut from = 0;
    let mut file_id = None;
    for (n, to) in cuts.into_iter().enumerate() {
        if n == 3 {
            // The same 11 MiB with one byte changed: its parts reach S3, its checksum
            // fails, nothing counts; the real chunk then replaces those parts.
            let mut bad = bytes[from..to].to_vec();
            bad[9 * MIB] ^= 1;
            let r = patch_checked(&w, &at, from as u64, &bad, &sha1_b64(&bytes[from..to])).await;
            assert_eq!(r.status().as_u16(), 460);
            assert_eq!(offset(&head(&w, &w.admin, &at).await), from as u64);
            let tails = bucket.keys(&format!("tus-tails/{}/{id}/", w.tenant)).await;
            assert_eq!(tails.len(), 1, "only the recorded tail: {tails:?}");
        }
        let chunk = &bytes[from..to];
        let r = patch_checked(&w, &at, from as u64, chunk, &sha1_b64(chunk)).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "chunk {n}");
        assert_eq!(offset(&r), to as u64);
        if to == bytes.len() {
            file_id = Some(header(&r, "chronicle-file-id"));
        } else {
            let tails = bucket.keys(&format!("tus-tails/{}/{id}/", w.tenant)).await;
            let expected = format!("tus-tails/{}/{id}/{to}-", w.tenant);
            assert_eq!(tails.len(), 1, "one tail: {tails:?}");
            assert!(
                tails[0].starts_with(&expected),
                "ending at the offset: {tails:?}"
            );
        }
        from = to;
    }
    let file_id = file_id.expect("the last chunk completes the upload");
    assert_eq!(download(&w, &file_id).await, bytes, "byte-identical");
    assert!(bucket.keys("tus-tails/").await.is_empty(), "no tail left");
    assert!(
        bucket.multipart_uploads().await.is_empty(),
        "multipart done"
    );
}

#[tokio::test]
async fn a_patch_cut_mid_body_keeps_its_parts_and_tail_and_resumes() {
    let Some((w, bucket)) = s3_world(&[WORKER[0]]).await else {
        return;
    };
    let bytes = bytes_of(3, 12 * MIB + 5);
    let at = create(&w, &w.admin, bytes.len() as u64, "").await;
    let addr = w.t.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "PATCH {at} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n\
         Upload-Offset: 0\r\nContent-Length: {}\r\n\r\n",
        w.admin.token,
        bytes.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let sent = 9 * MIB + 77;
    conn.write_all(&bytes[..sent]).await.unwrap();
    conn.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(conn); // cut after 9 MiB + 77 bytes: one part in S3, the rest a tail
    let got = eventually_within(
        "the offset of the bytes before the cut",
        Duration::from_secs(20),
        async || {
            let r = head(&w, &w.admin, &at).await;
            (offset(&r) > 0).then(|| offset(&r))
        },
    )
    .await;
    assert_eq!(got, sent as u64, "HEAD tells where to continue");
    let tails = bucket.keys(&format!("tus-tails/{}/", w.tenant)).await;
    assert_eq!(tails.len(), 1, "{tails:?}");
    let r = patch(&w, &w.admin, &at, got, &bytes[sent..]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let file_id = header(&r, "chronicle-file-id");
    assert_eq!(download(&w, &file_id).await, bytes, "byte-identical");
    assert!(bucket.keys("tus-tails/").await.is_empty());
    assert!(bucket.multipart_uploads().await.is_empty());
}

#[tokio::test]
async fn termination_aborts_the_multipart_upload_and_removes_the_tails() {
    let Some((w, bucket)) = s3_world(&[]).await else {
        return;
    };
    let bytes = bytes_of(5, 10 * MIB);
    let at = create(&w, &w.admin, 20 * MIB as u64, "").await;
    assert_eq!(patch(&w, &w.admin, &at, 0, &bytes).await.status(), 204);
    assert_eq!(bucket.multipart_uploads().await.len(), 1);
    assert_eq!(bucket.keys("tus-tails/").await.len(), 1);
    let r = tus(w.t.http.delete(w.t.url(&at)), &w.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(bucket.multipart_uploads().await.is_empty(), "aborted");
    assert!(bucket.keys("").await.is_empty(), "no object left");
    assert_eq!(head(&w, &w.admin, &at).await.status(), StatusCode::GONE);
}

#[tokio::test]
async fn expiry_aborts_the_multipart_upload_and_removes_the_tails() {
    let Some((w, bucket)) = s3_world(&[
        ("WORKER_CONCURRENCY", "1"),
        ("UPLOAD_EXPIRY_SECS", "2"),
        ("UPLOAD_EXPIRE_EVERY_SECS", "1"),
    ])
    .await
    else {
        return;
    };
    let at = create(&w, &w.admin, 10, "").await;
    assert_eq!(patch(&w, &w.admin, &at, 0, b"abc").await.status(), 204);
    assert_eq!(bucket.keys("tus-tails/").await.len(), 1);
    let id = upload_id(&at);
    eventually_within(
        "the unfinished upload expired",
        Duration::from_secs(15),
        async || {
            let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'UploadExpired'",
        )
        .bind(id.to_string())
        .fetch_one(&w.t.db.owner)
        .await
        .unwrap();
            (n == 1).then_some(())
        },
    )
    .await;
    assert!(bucket.multipart_uploads().await.is_empty(), "aborted");
    assert!(bucket.keys("").await.is_empty(), "no object left");
}

#[tokio::test]
async fn an_empty_upload_and_one_smaller_than_a_part_complete_and_stay_completed() {
    let Some((w, bucket)) = s3_world(&[WORKER[0]]).await else {
        return;
    };
    let at = create(&w, &w.admin, 0, "").await;
    // An empty upload is complete once it is asked about.
    let r = head(&w, &w.admin, &at).await;
    let empty = header(&r, "chronicle-file-id");
    assert!(download(&w, &empty).await.is_empty());
    let at = create(&w, &w.admin, 11, "").await;
    assert_eq!(patch(&w, &w.admin, &at, 0, b"hello ").await.status(), 204);
    let r = patch(&w, &w.admin, &at, 6, b"world").await;
    let small = header(&r, "chronicle-file-id");
    // A completed upload cannot be terminated, and its bytes stay for the pipeline.
    let r = tus(w.t.http.delete(w.t.url(&at)), &w.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(download(&w, &small).await, b"hello world");
    assert!(bucket.keys("tus-tails/").await.is_empty());
    assert!(bucket.multipart_uploads().await.is_empty());
}

#[tokio::test]
async fn two_instances_take_turns_on_one_upload() {
    let Some((w, bucket)) = s3_world(&[WORKER[0]]).await else {
        return;
    };
    // A second API instance: same database, Redis prefix, secret and bucket.
    let b = chronicle::app::App::start((*w.t.app.state.config).clone(), chronicle::app::Mode::Web)
        .await
        .unwrap();
    let b_base = format!("http://{}", b.addr.unwrap());
    let bytes = bytes_of(41, 19 * MIB + 3);
    let at = create(&w, &w.admin, bytes.len() as u64, "").await;
    let cuts = [5 * MIB, 9 * MIB, 13 * MIB, bytes.len()];
    let mut from = 0;
    let mut last = None;
    for (n, to) in cuts.into_iter().enumerate() {
        let base = if n % 2 == 0 { &w.t.base } else { &b_base };
        let r = tus(w.t.http.patch(format!("{base}{at}")), &w.admin)
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", from)
            .body(bytes[from..to].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::NO_CONTENT,
            "chunk {n} on instance {}",
            n % 2
        );
        assert_eq!(offset(&r), to as u64);
        last = Some(r);
        from = to;
    }
    let file_id = header(&last.unwrap(), "chronicle-file-id");
    assert_eq!(download(&w, &file_id).await, bytes, "byte-identical");
    assert!(bucket.keys("tus-tails/").await.is_empty());
    assert!(bucket.multipart_uploads().await.is_empty());
    b.stop().await;
}
