//! The ugly cases: checksums, protocol errors, bad metadata, other tenants and users,
//! termination, expiry, concurrent PATCHes, cut connections, stale tails, progress.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use sha1::Digest;
use tokio::io::AsyncWriteExt;

use super::*;
use crate::common::{
    bytes_of, eventually, every_committed_version_recorded_on_its_upload, median_of_three,
    raw_request, refuse_upload_completions, send_raw,
};
use crate::files_api::{World, tenant};

fn sha1_b64(bytes: &[u8]) -> String {
    STANDARD.encode(sha1::Sha1::digest(bytes))
}

#[tokio::test]
async fn a_checksum_mismatch_is_460_and_discards_the_chunk() {
    let w = World::new(&[]).await;
    let at = create(&w, &w.admin, 8, &meta(&[("filename", "a.bin")])).await;
    assert_eq!(patch(&w, &w.admin, &at, 0, b"abcd").await.status(), 204);
    let r = tus(w.t.http.patch(w.t.url(&at)), &w.admin)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", 4)
        .header("Upload-Checksum", format!("sha1 {}", sha1_b64(b"efgh")))
        .body(b"efgX".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 460);
    assert_eq!(header(&r, "tus-resumable"), "1.0.0");
    assert_eq!(code(r).await, "checksum_mismatch");
    let r = head(&w, &w.admin, &at).await;
    assert_eq!(offset(&r), 4, "the offset did not advance");
    assert_eq!(
        std::fs::metadata(temp_file(&w, &at)).unwrap().len(),
        4,
        "bytes discarded"
    );
    // The right bytes with a sha256 checksum are accepted.
    let sha256 = STANDARD.encode(sha2::Sha256::digest(b"efgh"));
    let r = tus(w.t.http.patch(w.t.url(&at)), &w.admin)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", 4)
        .header("Upload-Checksum", format!("sha256 {sha256}"))
        .body(b"efgh".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers().contains_key("chronicle-file-id"));
    // An unsupported algorithm is a 400.
    let at = create(&w, &w.admin, 8, "").await;
    let r = tus(w.t.http.patch(w.t.url(&at)), &w.admin)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", 0)
        .header("Upload-Checksum", "md5 AAAAAAAAAAAAAAAAAAAAAA==")
        .body(b"x".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn protocol_errors_get_the_tus_statuses_and_the_error_shape() {
    let w = World::new(&[("TUS_MAX_SIZE", "100")]).await;
    let at = create(&w, &w.admin, 10, "").await;
    // 412 without (or with another) Tus-Resumable, naming the supported version.
    let r =
        w.t.http
            .patch(w.t.url(&at))
            .bearer_auth(&w.admin.token)
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", 0)
            .body("x")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(header(&r, "tus-version"), "1.0.0");
    assert_eq!(code(r).await, "tus_version_unsupported");
    // 415 for another content type.
    let r = tus(w.t.http.patch(w.t.url(&at)), &w.admin)
        .header("Content-Type", "application/octet-stream")
        .header("Upload-Offset", 0)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // 409 at the wrong offset.
    let r = patch(&w, &w.admin, &at, 3, b"x").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(code(r).await, "offset_mismatch");
    // 413 past the upload's length, or past Tus-Max-Size at creation.
    let r = patch(&w, &w.admin, &at, 0, &[0u8; 11]).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = tus(w.t.http.post(w.t.url("/v1/uploads")), &w.admin)
        .header("Upload-Length", 101)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Neither length nor deferral.
    let r = tus(w.t.http.post(w.t.url("/v1/uploads")), &w.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // 404 for an upload that never existed; no token → 401.
    let missing = format!("/v1/uploads/{}", uuid::Uuid::now_v7());
    assert_eq!(
        head(&w, &w.admin, &missing).await.status(),
        StatusCode::NOT_FOUND
    );
    let r =
        w.t.http
            .head(w.t.url(&at))
            .header("Tus-Resumable", "1.0.0")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        offset(&head(&w, &w.admin, &at).await),
        0,
        "nothing was accepted"
    );
}

#[tokio::test]
async fn bad_metadata_is_400_and_records_nothing() {
    let w = World::new(&[]).await;
    for bad in [
        "filename not*base64".to_string(),
        format!("filename {0},filename {0}", STANDARD.encode("a")),
        format!("filetype {}", STANDARD.encode("not a type")),
        format!("file_id {}", STANDARD.encode("nope")),
    ] {
        let r = tus(w.t.http.post(w.t.url("/v1/uploads")), &w.admin)
            .header("Upload-Length", 5)
            .header("Upload-Metadata", &bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(code(r).await, "bad_request");
    }
    // A file_id the caller cannot see is 404, also recording nothing.
    let r = tus(w.t.http.post(w.t.url("/v1/uploads")), &w.admin)
        .header("Upload-Length", 5)
        .header(
            "Upload-Metadata",
            meta(&[("file_id", &uuid::Uuid::now_v7().to_string())]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(upload_events(&w).await, 0);
    assert!(
        w.t.stored_objects("tmp").is_empty(),
        "no bytes were set aside"
    );
}

#[tokio::test]
async fn a_new_version_of_an_existing_file_via_metadata() {
    let w = World::new(&[]).await;
    let file = w.create(&w.admin, "report").await;
    let at = create(&w, &w.admin, 3, &meta(&[("file_id", &file.to_string())])).await;
    let r = patch(&w, &w.admin, &at, 0, b"abc").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "chronicle-file-id"), file.to_string());
    assert_eq!(header(&r, "chronicle-version-number"), "1");
    // An auditor may see the file but not upload a version of it.
    let auditor = w.join("aud", "auditor").await;
    let r = tus(w.t.http.post(w.t.url("/v1/uploads")), &auditor)
        .header("Upload-Length", 3)
        .header("Upload-Metadata", meta(&[("file_id", &file.to_string())]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn other_tenants_and_other_users_get_404_and_change_nothing() {
    let w = World::new(&[]).await;
    let at = create(&w, &w.admin, 10, "").await;
    assert_eq!(patch(&w, &w.admin, &at, 0, b"abc").await.status(), 204);
    let (_, mallory) = tenant(&w.t, "mallory").await;
    let colleague = w.join("bob", "admin").await;
    for who in [&mallory, &colleague] {
        assert_eq!(head(&w, who, &at).await.status(), StatusCode::NOT_FOUND);
        let r = patch(&w, who, &at, 3, b"def").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(code(r).await, "not_found");
        let r = tus(w.t.http.delete(w.t.url(&at)), who)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let r = head(&w, &w.admin, &at).await;
    assert_eq!(offset(&r), 3);
    assert_eq!(std::fs::metadata(temp_file(&w, &at)).unwrap().len(), 3);
}

#[tokio::test]
async fn termination_removes_the_bytes_and_the_upload_is_gone() {
    let w = World::new(&[]).await;
    let at = create(&w, &w.admin, 10, "").await;
    assert_eq!(patch(&w, &w.admin, &at, 0, b"abc").await.status(), 204);
    assert!(temp_file(&w, &at).exists());
    let r = tus(w.t.http.delete(w.t.url(&at)), &w.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(!temp_file(&w, &at).exists(), "bytes removed");
    assert_eq!(head(&w, &w.admin, &at).await.status(), StatusCode::GONE);
    let r = patch(&w, &w.admin, &at, 3, b"d").await;
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(code(r).await, "gone");
}

#[tokio::test]
async fn expired_uploads_lose_their_bytes_and_answer_410() {
    let w = World::new(&[
        ("WORKER_CONCURRENCY", "1"),
        ("UPLOAD_EXPIRY_SECS", "2"),
        ("UPLOAD_EXPIRE_EVERY_SECS", "1"),
    ])
    .await;
    let at = create(&w, &w.admin, 10, "").await;
    assert_eq!(patch(&w, &w.admin, &at, 0, b"abc").await.status(), 204);
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
    assert!(!temp_file(&w, &at).exists(), "bytes removed");
    assert_eq!(head(&w, &w.admin, &at).await.status(), StatusCode::GONE);
    assert_eq!(
        patch(&w, &w.admin, &at, 3, b"d").await.status(),
        StatusCode::GONE
    );
}

#[tokio::test]
async fn concurrent_patches_one_wins_the_other_gets_423_or_409() {
    let w = World::new(&[]).await;
    let at = create(&w, &w.admin, 10, "").await;
    // The first PATCH sends 3 bytes, then holds its body open.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tx.send(Ok(b"abc".to_vec())).await.unwrap();
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let first = tus(w.t.http.patch(w.t.url(&at)), &w.admin)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", 0)
        .body(body)
        .send();
    let first = tokio::spawn(first);
    let key = format!(
        "{}upload-lock:{}:{}",
        w.t.app.state.config.redis_key_prefix,
        w.tenant,
        upload_id(&at)
    );
    let mut redis = w.t.app.state.redis_conn.clone();
    eventually_within(
        "the upload lock taken",
        Duration::from_secs(10),
        async || {
            let held: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .unwrap();
            held.then_some(())
        },
    )
    .await;
    let second = patch(&w, &w.admin, &at, 0, b"xyz").await;
    assert_eq!(second.status(), StatusCode::LOCKED);
    assert_eq!(header(&second, "tus-resumable"), "1.0.0");
    assert_eq!(code(second).await, "upload_locked");
    tx.send(Ok(b"de".to_vec())).await.unwrap();
    drop(tx);
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset(&first), 5);
    // The loser retrying at its old offset now learns the offset moved.
    let late = patch(&w, &w.admin, &at, 0, b"xyz").await;
    assert_eq!(late.status(), StatusCode::CONFLICT);
    assert_eq!(std::fs::read(temp_file(&w, &at)).unwrap(), b"abcde");
    let released: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!released, "the lock is released after the PATCH");
}

#[tokio::test]
async fn a_patch_cut_mid_body_keeps_and_records_what_arrived() {
    let w = World::new(&[]).await;
    let at = create(&w, &w.admin, 1000, "").await;
    let addr = w.t.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "PATCH {at} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n\
         Upload-Offset: 0\r\nContent-Length: 1000\r\n\r\n",
        w.admin.token
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    conn.write_all(&[7u8; 400]).await.unwrap();
    conn.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(conn); // the connection is cut after 400 of 1000 bytes
    let got = eventually_within(
        "the offset of the bytes before the cut",
        Duration::from_secs(10),
        async || {
            let r = head(&w, &w.admin, &at).await;
            (offset(&r) > 0).then(|| offset(&r))
        },
    )
    .await;
    assert_eq!(got, 400, "HEAD tells where to continue");
    assert_eq!(std::fs::metadata(temp_file(&w, &at)).unwrap().len(), 400);
    let r = patch(&w, &w.admin, &at, 400, &[8u8; 600]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers().contains_key("chronicle-file-id"));
}

#[tokio::test]
async fn bytes_past_the_recorded_offset_are_truncated_before_appending() {
    let w = World::new(&[]).await;
    let at = create(&w, &w.admin, 6, "").await;
    assert_eq!(patch(&w, &w.admin, &at, 0, b"abc").await.status(), 204);
    // A crashed PATCH wrote bytes it never recorded.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(temp_file(&w, &at))
        .unwrap();
    std::io::Write::write_all(&mut f, b"GARBAGE").unwrap();
    drop(f);
    assert_eq!(
        offset(&head(&w, &w.admin, &at).await),
        3,
        "HEAD stays truthful"
    );
    let r = patch(&w, &w.admin, &at, 3, b"def").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(std::fs::read(temp_file(&w, &at)).unwrap(), b"abcdef");
    let sha: String = eventually_within(
        "the upload's SHA-256 projected",
        Duration::from_secs(10),
        async || {
            sqlx::query_scalar("SELECT sha256 FROM file_versions WHERE file_id = $1")
                .bind(
                    header(&r, "chronicle-file-id")
                        .parse::<uuid::Uuid>()
                        .unwrap(),
                )
                .fetch_optional(&w.t.db.owner)
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(sha, hex::encode(sha2::Sha256::digest(b"abcdef")));
}

#[tokio::test]
async fn creation_with_upload_and_deferred_length() {
    let w = World::new(&[]).await;
    // creation-with-upload: the first chunk rides on the POST.
    let r = tus(w.t.http.post(w.t.url("/v1/uploads")), &w.admin)
        .header("Upload-Length", 6)
        .header("Content-Type", "application/offset+octet-stream")
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(offset(&r), 3);
    let at = header(&r, "location");
    assert_eq!(patch(&w, &w.admin, &at, 3, b"def").await.status(), 204);
    // creation-defer-length: the length comes with a later PATCH.
    let r = tus(w.t.http.post(w.t.url("/v1/uploads")), &w.admin)
        .header("Upload-Defer-Length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let at = header(&r, "location");
    assert_eq!(patch(&w, &w.admin, &at, 0, b"ab").await.status(), 204);
    let r = head(&w, &w.admin, &at).await;
    assert_eq!(header(&r, "upload-defer-length"), "1");
    assert!(!r.headers().contains_key("upload-length"));
    let r = tus(w.t.http.patch(w.t.url(&at)), &w.admin)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", 2)
        .header("Upload-Length", 4)
        .body(b"cd".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "upload-length"), "4");
    assert!(r.headers().contains_key("chronicle-file-id"));
}

#[tokio::test]
async fn the_event_stream_reports_progress_and_completion_to_the_owner_only() {
    let w = World::new(&[]).await;
    let colleague = w.join("bob", "user").await;
    let open = |token: String| {
        let url = w.t.url("/v1/events");
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r
        }
    };
    let mut mine = open(w.admin.token.clone()).await;
    let mut theirs = open(colleague.token.clone()).await;
    let at = create(&w, &w.admin, 6, "").await;
    // The stream subscribes asynchronously: send until it has seen something.
    assert_eq!(patch(&w, &w.admin, &at, 0, b"abc").await.status(), 204);
    let r = patch(&w, &w.admin, &at, 3, b"def").await;
    let file_id = header(&r, "chronicle-file-id");
    let mut text = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let chunk = mine.chunk().await.unwrap().expect("stream open");
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("\"state\":\"completed\"") {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no completion in: {text}");
    assert!(text.contains("event: upload_progress"), "{text}");
    assert!(
        text.contains(&format!("\"file_id\":\"{file_id}\"")),
        "{text}"
    );
    assert!(text.contains("\"bytes_received\":6"), "{text}");
    // The colleague's stream carries nothing about it.
    let quiet = tokio::time::timeout(Duration::from_millis(800), theirs.chunk()).await;
    if let Ok(Ok(Some(chunk))) = quiet {
        assert!(!String::from_utf8_lossy(&chunk).contains("upload_progress"));
    }
}

/// A chunk that leaves the upload unfinished is announced at its recorded offset once it
/// commits (with the lock's release, before the 204), not only as its bytes arrive: the
/// body comes in two parts within the arrival reports' throttle, so those report only
/// the first part, and the message at the chunk's end can only be the commit's.
#[tokio::test]
async fn a_recorded_chunk_is_announced_at_its_offset() {
    use futures::StreamExt;
    let w = World::new(&[]).await;
    let redis = redis::Client::open(crate::common::redis_url()).unwrap();
    let mut pubsub = redis.get_async_pubsub().await.unwrap();
    let channel = format!(
        "{}events:{}",
        w.t.app.state.config.redis_key_prefix, w.tenant
    );
    pubsub.subscribe(&channel).await.unwrap();
    let at = create(&w, &w.admin, 10, "").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let sent = tokio::spawn(
        tus(w.t.http.patch(w.t.url(&at)), &w.admin)
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", 0)
            .body(body)
            .send(),
    );
    tx.send(Ok(b"a".to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(Ok(b"bc".to_vec())).await.unwrap();
    drop(tx);
    assert_eq!(sent.await.unwrap().unwrap().status(), 204);

    // Both the arrival report of the first part (1 byte) and the commit's (3 bytes).
    let mut messages = pubsub.on_message();
    let mut seen = Vec::new();
    let receiving_at = |seen: &[serde_json::Value], n: u64| {
        seen.iter()
            .any(|p| p["bytes_received"] == n && p["state"] == "receiving")
    };
    let announced = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = messages.next().await {
            let text: String = message.get_payload().unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            seen.push(v["progress"].clone());
            if receiving_at(&seen, 1) && receiving_at(&seen, 3) {
                return;
            }
        }
    })
    .await;
    assert!(announced.is_ok(), "no report at 1 and at 3 bytes: {seen:?}");
}

/// A raw PATCH of the whole of upload `at`: `bytes` at offset 0.
fn whole_patch(w: &World, at: &str, bytes: &[u8]) -> Vec<u8> {
    let bearer = format!("Bearer {}", w.admin.token);
    let headers = [
        ("authorization", bearer.as_str()),
        ("tus-resumable", "1.0.0"),
        ("content-type", "application/offset+octet-stream"),
        ("upload-offset", "0"),
    ];
    raw_request(&w.t, &format!("PATCH {at}"), &headers, bytes)
}

#[tokio::test]
async fn a_last_patch_whose_client_hangs_up_still_records_the_completion() {
    // The last PATCH commits the file version, then records what the upload became
    // (`UploadCompleted`). A client that hangs up makes hyper drop the request wherever
    // it waits; between those two commits, the upload would read unfinished until the
    // client came back, and its expiry would record as expired an upload whose bytes
    // became a version. A chunk is accepted, and the upload completed, on a task of its
    // own (src/api/uploads/tus/accept.rs), and the completion runs to its end on one too
    // (`commands::to_the_end`, for a HEAD that completes): with neither, this fails.
    let w = World::new(&[]).await;
    const LEN: usize = 3000;
    let whole = median_of_three(&w.t, 204, async |i| {
        let at = create(
            &w,
            &w.admin,
            LEN as u64,
            &meta(&[("filename", "whole.bin")]),
        )
        .await;
        whole_patch(&w, &at, &[i; LEN])
    })
    .await;
    const CUTS: u32 = 60;
    for i in 0..CUTS {
        let at = create(&w, &w.admin, LEN as u64, &meta(&[("filename", "cut.bin")])).await;
        let request = whole_patch(&w, &at, &[10 + i as u8; LEN]);
        send_raw(&w.t, &request, Some(whole * 3 * i / (2 * CUTS))).await;
    }
    every_committed_version_recorded_on_its_upload(&w.t.db.owner, 3 + CUTS as i64).await;
}

#[tokio::test]
async fn a_completion_cut_after_its_version_is_repaired_without_a_second_version() {
    // Completing commits the file version, then records `UploadCompleted`. When the
    // process dies in between, the next HEAD or PATCH finds the version and records the
    // completion. By then the worker has usually processed the version and moved its
    // bytes: the repair must still find it, and not commit the same bytes again as a
    // version whose temporary file is gone.
    let w = World::new(&[("WORKER_CONCURRENCY", "1")]).await;
    let file = w.create(&w.admin, "report").await;
    // The completion's second step fails, as if the process had died between the two.
    refuse_upload_completions(&w.t.db.owner, true).await;
    let at = create(&w, &w.admin, 3, &meta(&[("file_id", &file.to_string())])).await;
    let r = patch(&w, &w.admin, &at, 0, b"abc").await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let file_events = async |event_type: &str| -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = $2",
        )
        .bind(file.to_string())
        .bind(event_type)
        .fetch_one(&w.t.db.owner)
        .await
        .unwrap()
    };
    eventually("the version processed before the repair", async || {
        file_events("VersionCompleted").await == 1
    })
    .await;
    refuse_upload_completions(&w.t.db.owner, false).await;

    let r = head(&w, &w.admin, &at).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "chronicle-file-id"), file.to_string());
    assert_eq!(header(&r, "chronicle-version-number"), "1");
    assert_eq!(file_events("Uploaded").await, 1, "no second version");
    let completed: Vec<i64> = sqlx::query_scalar(
        "SELECT (payload -> 'UploadCompleted' ->> 'version_number')::bigint FROM events
          WHERE aggregate_id = $1 AND event_type = 'UploadCompleted'",
    )
    .bind(upload_id(&at).to_string())
    .fetch_all(&w.t.db.owner)
    .await
    .unwrap();
    assert_eq!(
        completed,
        [1],
        "the upload records the version its bytes became"
    );
    // And a PATCH after that answers the same.
    let r = patch(&w, &w.admin, &at, 3, b"").await;
    assert_eq!(header(&r, "chronicle-version-number"), "1");
}

#[tokio::test]
async fn a_patch_with_an_idempotency_key_streams_like_any_other() {
    // Clients that put an Idempotency-Key on every write (some HTTP libraries do) send
    // one with tus requests too. A PATCH is already safe to repeat — its Upload-Offset
    // must match, so a repeat gets 409 — and its body may be far larger than a JSON
    // body: the key layer must not buffer it (it refused chunks over the JSON limit).
    let w = World::new(&[("MAX_JSON_BODY_BYTES", "65536")]).await;
    let bytes = bytes_of(9, 3 << 20);
    let at = create(
        &w,
        &w.admin,
        bytes.len() as u64,
        &meta(&[("filename", "k.bin")]),
    )
    .await;
    let send = async |key: &str, offset: u64, chunk: &[u8]| {
        tus(w.t.http.patch(w.t.url(&at)), &w.admin)
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset)
            .header("Idempotency-Key", key)
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap()
    };
    let half = bytes.len() / 2;
    let r = send("first-half", 0, &bytes[..half]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    assert_eq!(offset(&r), half as u64);
    // Sent again with its key: the offset has moved on, as for any repeated PATCH.
    let r = send("first-half", 0, &bytes[..half]).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = send("second-half", half as u64, &bytes[half..]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    assert_eq!(offset(&r), bytes.len() as u64);
    assert_eq!(header(&r, "chronicle-version-number"), "1");
    let uploaded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'Uploaded' AND tenant_id = $1",
    )
    .bind(w.tenant)
    .fetch_one(&w.t.db.owner)
    .await
    .unwrap();
    assert_eq!(uploaded, 1, "one version of the bytes");

    // A creation with upload carries bytes too.
    let r = tus(w.t.http.post(w.t.url("/v1/uploads")), &w.admin)
        .header("Upload-Length", bytes.len())
        .header("Upload-Metadata", meta(&[("filename", "c.bin")]))
        .header("Content-Type", "application/offset+octet-stream")
        .header("Idempotency-Key", "creation")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    assert_eq!(offset(&r), bytes.len() as u64);
}
