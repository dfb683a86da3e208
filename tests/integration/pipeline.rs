//! Upload → queue → worker → version, end to end against real Postgres, Redis, files on
//! disk and the scanner the configuration names (the builtin one unless a test asks
//! for clamd).

use std::time::Duration;

use chronicle::app::Mode;
use chronicle::queue::JobMessage;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{
    TestApp, TestDb, WORKER, bytes_of, eventually, eventually_explained, eventually_some,
    eventually_within, median_of_three, pages_read, raw_request, send_raw,
};
use crate::scan::{EICAR, Member, Method, zip};

async fn event_count(t: &TestApp, file_id: &str, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = $2")
        .bind(file_id)
        .bind(event_type)
        .fetch_one(&t.db.owner)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_clean_upload_completes_and_its_blob_is_byte_identical() {
    let t = TestApp::spawn(Mode::Serve, WORKER).await;
    let c = t.signup("clean").await;
    let bytes = bytes_of(7, 300_000);
    let accepted = t.upload_ok(&c, "report.bin", bytes.clone()).await;
    assert_eq!(accepted["status"], "uploaded");
    assert_eq!(accepted["version_number"], 1);
    let file_id = accepted["file_id"].as_str().unwrap().to_string();
    assert_eq!(t.settled_status(&file_id, 1).await, "completed");

    let (key, sha): (String, String) =
        sqlx::query_as("SELECT storage_key, sha256 FROM file_versions WHERE file_id = $1::uuid")
            .bind(&file_id)
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    let stored = t.app.state.storage.read_all(&key).await.unwrap();
    assert_eq!(
        &stored[..],
        &bytes[..],
        "final blob differs from the upload"
    );
    assert!(key.contains(&sha) && key.starts_with("blobs/"));
    // The temporary bytes are gone; the job succeeded after one attempt.
    assert!(
        t.stored_objects("tmp").is_empty(),
        "{:?}",
        t.stored_objects("tmp")
    );
    // The jobs projector may trail the files projector that settled_status watched, by
    // whole events: the row may still say `queued` (it has not seen ProcessingStarted).
    let (status, attempts) = eventually_some("the job settled", async || {
        let (status, attempts): (String, i32) =
            sqlx::query_as("SELECT status::text, attempts FROM jobs WHERE file_id = $1::uuid")
                .bind(&file_id)
                .fetch_one(&t.db.owner)
                .await
                .unwrap();
        (!matches!(status.as_str(), "queued" | "in_progress")).then_some((status, attempts))
    })
    .await;
    assert_eq!((status.as_str(), attempts), ("succeeded", 1));
    for e in [
        "Uploaded",
        "ProcessingStarted",
        "Hashed",
        "VersionCompleted",
    ] {
        assert_eq!(event_count(&t, &file_id, e).await, 1, "{e}");
    }

    // Download: whole, a range, a conditional request, and someone else's attempt.
    let url = t.url(&format!("/v1/files/{file_id}/content"));
    let get = |range: Option<&str>, etag: Option<&str>, token: &str| {
        let mut r = t.http.get(&url).bearer_auth(token);
        if let Some(range) = range {
            r = r.header("range", range);
        }
        if let Some(etag) = etag {
            r = r.header("if-none-match", etag);
        }
        r.send()
    };
    let r = get(None, None, &c.token).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{sha}\""));
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(disposition.contains("report.bin"), "{disposition}");
    assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..]);
    let r = get(Some("bytes=100-199"), None, &c.token).await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/300000");
    assert_eq!(&r.bytes().await.unwrap()[..], &bytes[100..200]);
    let r = get(Some("bytes=300000-"), None, &c.token).await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], "bytes */300000");
    let r = get(None, Some(&etag), &c.token).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = t
        .http
        .get(t.url(&format!("/v1/files/{file_id}/versions/1/content")))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), bytes.len());
    let stranger = t.signup("stranger").await;
    let r = get(None, None, &stranger.token).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A malformed id is not found either, in the one error shape.
    for path in [
        "/v1/files/nope/content",
        "/v1/files/nope/versions/x/content",
    ] {
        let r = t
            .http
            .get(t.url(path))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn eicar_plain_and_zipped_fails_its_virus_scan_and_is_never_stored() {
    let t = TestApp::spawn(Mode::Serve, WORKER).await;
    let c = t.signup("virus").await;
    let plain = t.upload_ok(&c, "eicar.com", EICAR.to_vec()).await;
    let in_zip = t
        .upload_ok(&c, "eicar.zip", zipped("eicar.com", EICAR))
        .await;
    for accepted in [plain, in_zip] {
        let file_id = accepted["file_id"].as_str().unwrap();
        assert_eq!(t.settled_status(file_id, 1).await, "virus_failed");
        let key: Option<String> =
            sqlx::query_scalar("SELECT storage_key FROM file_versions WHERE file_id = $1::uuid")
                .bind(file_id)
                .fetch_one(&t.db.owner)
                .await
                .unwrap();
        assert_eq!(key, None);
        assert_eq!(event_count(&t, file_id, "VirusFailed").await, 1);
    }
    assert!(t.stored_objects("blobs").is_empty());
    assert!(t.stored_objects("tmp").is_empty());
}

#[tokio::test]
async fn the_same_bytes_twice_are_deduplicated_within_the_tenant_only() {
    let t = TestApp::spawn(Mode::Serve, WORKER).await;
    let a = t.signup("deda").await;
    let b = t.signup("dedb").await;
    let bytes = bytes_of(3, 50_000);
    let first = t.upload_ok(&a, "one.bin", bytes.clone()).await;
    let first_id = first["file_id"].as_str().unwrap().to_string();
    assert_eq!(t.settled_status(&first_id, 1).await, "completed");

    // Same file, same bytes: the new version is a duplicate of version 1.
    let v2 = t.upload_version_ok(&a, &first_id, bytes.clone()).await;
    assert_eq!(v2, 2);
    assert_eq!(t.settled_status(&first_id, 2).await, "duplicate");
    let dup_of: (Option<String>, Option<i32>) = sqlx::query_as(
        "SELECT duplicate_of_file::text, duplicate_of_version FROM file_versions
          WHERE file_id = $1::uuid AND version_number = 2",
    )
    .bind(&first_id)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(dup_of, (Some(first_id.clone()), Some(1)));

    // Another file of the same tenant: completes, shares the blob, records the original.
    let second = t.upload_ok(&a, "two.bin", bytes.clone()).await;
    let second_id = second["file_id"].as_str().unwrap().to_string();
    assert_eq!(t.settled_status(&second_id, 1).await, "completed");
    assert_eq!(event_count(&t, &second_id, "DuplicateDetected").await, 1);
    // Another tenant: never deduplicated against tenant A.
    let other = t.upload_ok(&b, "three.bin", bytes.clone()).await;
    let other_id = other["file_id"].as_str().unwrap().to_string();
    assert_eq!(t.settled_status(&other_id, 1).await, "completed");
    assert_eq!(event_count(&t, &other_id, "DuplicateDetected").await, 0);
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT storage_key FROM file_versions WHERE storage_key IS NOT NULL ORDER BY 1",
    )
    .fetch_all(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(keys.len(), 2, "one blob per tenant: {keys:?}");
    assert_eq!(t.stored_objects("blobs").len(), 2);
}

/// Regression: the dedup lookup, a prepared statement, ran a cached generic plan built
/// while the tables were empty (a young database, or autovacuum not yet run) that
/// scanned every file of the tenant for each candidate version: ~8 ms a lookup at
/// 13,000 files, growing with each upload. The plan is built here the same way — generic,
/// on empty tables — and then run over a tenant of 2,000 files, the last 300 of which
/// hold the bytes looked for: it must find the earliest copy and read a handful of pages,
/// neither every file of the tenant nor every copy of the bytes (the index is in the
/// lookup's order since migration 0053: it once sorted all copies, one more on every
/// upload of the same bytes).
#[tokio::test]
async fn the_dedup_lookup_reads_a_few_pages_however_many_files_the_tenant_has() {
    const FILES: i64 = 2_000;
    let db = TestDb::new().await;
    // One transaction (one server connection even through a transaction pooler), as the
    // worker's role, rolled back at the end.
    let mut tx = db.worker.begin().await.unwrap();
    let tenant = uuid::Uuid::now_v7();
    let looking = uuid::Uuid::now_v7();
    let prepare = format!(
        "SET LOCAL plan_cache_mode = force_generic_plan;
         PREPARE dedup_lookup(uuid, text, uuid) AS {};
         EXPLAIN EXECUTE dedup_lookup('{tenant}', 'dup', '{looking}');",
        chronicle::worker::DEDUP_LOOKUP_SQL
    );
    sqlx::raw_sql(&prepare).execute(&mut *tx).await.unwrap();
    // The tenant's files, in creation order; f1701 … f2000 share the bytes `dup`.
    sqlx::query(
        "INSERT INTO files (tenant_id, id, owner_id, display_name, created_at, updated_at)
         SELECT $1, md5($1::text || i)::uuid, $1, 'f' || i, t, t
           FROM generate_series(1, $2) AS i, LATERAL (SELECT now() + i * interval '1 ms' AS t) c",
    )
    .bind(tenant)
    .bind(FILES)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO file_versions (tenant_id, file_id, version_number, status, filename,
                                    mime_type, size_bytes, sha256, created_at, updated_at)
         SELECT tenant_id, id, 1, 'completed', display_name, 'application/octet-stream', 1,
                CASE WHEN substr(display_name, 2)::int > 1700 THEN 'dup'
                     ELSE display_name END, created_at, created_at
           FROM files WHERE tenant_id = $1",
    )
    .bind(tenant)
    .execute(&mut *tx)
    .await
    .unwrap();
    let holders: std::collections::HashMap<String, uuid::Uuid> = sqlx::query_as(
        "SELECT display_name, id FROM files
          WHERE tenant_id = $1 AND display_name IN ('f1701', 'f1702', 'f1703')",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let id = |n: &str| holders[&format!("f{n}")];
    // The worker's statement itself, with its parameters, from file `from`.
    let lookup = async |tx: &mut sqlx::PgConnection, from: uuid::Uuid| {
        sqlx::query_as::<_, (uuid::Uuid, i32)>(chronicle::worker::DEDUP_LOOKUP_SQL)
            .bind(tenant)
            .bind("dup")
            .bind(from)
            .fetch_one(tx)
            .await
            .unwrap()
    };
    // The earliest holder of the bytes is f1701; looking from it, the next is f1702.
    for (from, expect) in [(looking, "1701"), (id("1701"), "1702")] {
        let explain = format!(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE dedup_lookup('{tenant}', 'dup', '{from}')"
        );
        let plan: Vec<serde_json::Value> = sqlx::raw_sql(&explain)
            .fetch_all(&mut *tx)
            .await
            .unwrap()
            .iter()
            .map(|row| sqlx::Row::get::<serde_json::Value, _>(row, 0))
            .collect();
        assert_eq!(
            plan[0][0]["Plan"]["Actual Rows"], 1,
            "no original found: {plan:#?}"
        );
        let pages = pages_read(&plan[0]);
        assert!(
            pages < 40,
            "the lookup read {pages} pages for a tenant of {FILES} files: {plan:#?}"
        );
        assert_eq!(
            lookup(&mut tx, from).await,
            (id(expect), 1),
            "looking from {from}"
        );
    }
    // A purged file is no original: with f1701 and f1702 purged, f1703 is found.
    sqlx::query("UPDATE files SET purged = true WHERE tenant_id = $1 AND display_name IN ('f1701', 'f1702')")
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(lookup(&mut tx, looking).await, (id("1703"), 1));
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn bad_uploads_get_a_clear_4xx_and_store_nothing() {
    let t = TestApp::spawn(Mode::Serve, &[WORKER[0], ("MAX_UPLOAD_BYTES", "1000")]).await;
    let c = t.signup("bad").await;
    let post = |body: Vec<u8>, content_type: &'static str| {
        t.http
            .post(t.url("/v1/files"))
            .bearer_auth(&c.token)
            .header("content-type", content_type)
            .body(body)
    };
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            post(
                b"--x\r\nnot a part".to_vec(),
                "multipart/form-data; boundary=x",
            ),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            post(
                text_part("display_name", "no file"),
                "multipart/form-data; boundary=B",
            ),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            post(
                with_field("tags", "ok, not ok!", file_part("a.txt", b"x")),
                "multipart/form-data; boundary=B",
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            post(
                with_field("display_name", "tab\there", file_part("a.txt", b"x")),
                "multipart/form-data; boundary=B",
            ),
            // The text rule (docs/errors.md), before the domain's own check.
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            post(
                with_field("colour", "blue", file_part("a.txt", b"x")),
                "multipart/form-data; boundary=B",
            ),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            post(b"{}".to_vec(), "application/json"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            post(
                file_part("big.bin", &[1u8; 5000]),
                "multipart/form-data; boundary=B",
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            post(
                file_part("../../etc/passwd", b"x"),
                "multipart/form-data; boundary=B",
            ),
            StatusCode::ACCEPTED,
            "",
        ),
    ];
    let mut accepted_id = String::new();
    for (request, status, code) in cases {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), status);
        let body: Value = r.json().await.unwrap();
        if status == StatusCode::ACCEPTED {
            // A traversal name is accepted but stored sanitised; the original is only
            // display text.
            let file_id = body["file_id"].as_str().unwrap();
            assert_eq!(t.settled_status(file_id, 1).await, "completed");
            let (filename, display): (String, String) = sqlx::query_as(
                "SELECT v.filename, f.display_name FROM file_versions v JOIN files f ON f.id = v.file_id
                  WHERE v.file_id = $1::uuid",
            )
            .bind(file_id)
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
            assert_eq!(filename, "passwd");
            assert_eq!(display, "../../etc/passwd");
            accepted_id = file_id.to_string();
            continue;
        }
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    // A file over the limit streamed without Content-Length is cut off at the limit too.
    let mut chunks = vec![
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n".to_vec(),
    ];
    chunks.extend((0..10).map(|_| vec![b'a'; 500]));
    let stream = futures::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
    );
    let r = t
        .http
        .post(t.url("/v1/files"))
        .bearer_auth(&c.token)
        .header("content-type", "multipart/form-data; boundary=B")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Only the traversal upload was committed; nothing else reached storage.
    let uploads: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'Uploaded'")
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    assert_eq!(uploads, 1);
    assert!(!accepted_id.is_empty());
    assert!(
        t.stored_objects("tmp").is_empty(),
        "{:?}",
        t.stored_objects("tmp")
    );
}

#[tokio::test]
async fn a_dead_scanner_means_retries_then_dead_letter_and_nothing_passes() {
    let t = TestApp::spawn(
        Mode::Serve,
        &[
            WORKER[0],
            ("SCANNER", "clamd"),
            ("CLAMD_ADDR", "127.0.0.1:9"),
            ("JOB_BACKOFF_BASE_MS", "20"),
        ],
    )
    .await;
    let c = t.signup("down").await;
    let accepted = t.upload_ok(&c, "a.bin", bytes_of(1, 1000)).await;
    let file_id = accepted["file_id"].as_str().unwrap().to_string();
    assert_eq!(t.settled_status(&file_id, 1).await, "failed");
    let (status, attempts, error) = eventually_some("the job dead-lettered", async || {
        let row: (String, i32, Option<String>) = sqlx::query_as(
            "SELECT status::text, attempts, last_error FROM jobs WHERE file_id = $1::uuid",
        )
        .bind(&file_id)
        .fetch_one(&t.db.owner)
        .await
        .unwrap();
        (row.0 == "dead_letter").then_some(row)
    })
    .await;
    assert_eq!((status.as_str(), attempts), ("dead_letter", 3));
    assert!(error.unwrap().contains("scanner unavailable"));
    assert_eq!(event_count(&t, &file_id, "ProcessingFailed").await, 3);
    assert_eq!(event_count(&t, &file_id, "VersionCompleted").await, 0);
    assert!(t.stored_objects("blobs").is_empty());
}

#[tokio::test]
async fn the_request_that_commits_an_upload_queues_its_job() {
    // `web`: the API alone — no projector, no worker. The job must be on the queue when
    // the 202 arrives, from the upload's own use case (src/commands/jobs.rs), not from a
    // projector some other process may or may not run.
    let t = TestApp::spawn(Mode::Web, &[]).await;
    let c = t.signup("direct").await;
    let accepted = t.upload_ok(&c, "a.bin", bytes_of(3, 1000)).await;
    let file_id = accepted["file_id"].as_str().unwrap().to_string();
    let prefix = t.app.state.config.redis_key_prefix.clone();
    let mut redis = t.app.state.redis_conn.clone();
    let ready: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("{prefix}jobs:ready"))
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .unwrap();
    let jobs: Vec<JobMessage> = ready
        .ids
        .iter()
        .map(|entry| JobMessage::from_json(&entry.get::<String>("job").unwrap()).unwrap())
        .collect();
    let file = chronicle::ids::FileId(file_id.parse().unwrap());
    assert_eq!(
        jobs,
        vec![JobMessage::process_version(
            chronicle::ids::TenantId(c.tenant_id.parse().unwrap()),
            file,
            1
        )],
        "exactly this upload's job is ready"
    );
    let version = chronicle::ids::version_id(file, 1);
    let known: bool = redis::cmd("SISMEMBER")
        .arg(format!("{prefix}jobs:known"))
        .arg(version.to_string())
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        known,
        "the queue knows the job (the reconciler leaves it alone)"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&t.db.owner)
        .await
        .unwrap();
    assert_eq!(rows, 0, "no projector ran in this process");
}

/// A raw multipart upload of `body` with Idempotency-Key `key`.
fn keyed_upload(t: &TestApp, token: &str, key: &str, body: &[u8]) -> Vec<u8> {
    let bearer = format!("Bearer {token}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("idempotency-key", key),
        ("content-type", "multipart/form-data; boundary=B"),
    ];
    raw_request(t, "POST /v1/files", &headers, body)
}

#[tokio::test]
async fn an_upload_whose_client_hangs_up_still_queues_its_job() {
    // A client that goes away while its upload is being committed (a timeout, a closed
    // laptop, wrk stopping) makes hyper drop the request's future wherever it is. If
    // that is after the commit and before the dispatch, the job would wait for the
    // reconciler (JOB_RECONCILE_SECS): the use case runs to its end on its own task —
    // carrying the request's Idempotency-Key, which its commit must still mark, or a
    // retry could take the key over and upload twice. `web`: no worker, so no
    // reconciler to hide a lost dispatch.
    let t = TestApp::spawn(Mode::Web, &[]).await;
    let c = t.signup("hangup").await;
    let whole = median_of_three(&t, 202, async |i| {
        let body = file_part("whole.bin", &bytes_of(200 + i, 2000));
        keyed_upload(&t, &c.token, &format!("whole-{i}"), &body)
    })
    .await;
    const CUTS: u32 = 80;
    for i in 0..CUTS {
        let body = file_part(
            &format!("cut-{i}.bin"),
            &bytes_of(i as u8, 3000 + i as usize),
        );
        let request = keyed_upload(&t, &c.token, &format!("cut-{i}"), &body);
        send_raw(&t, &request, Some(whole * 4 * i / CUTS)).await;
    }
    let prefix = t.app.state.config.redis_key_prefix.clone();
    let mut redis = t.app.state.redis_conn.clone();
    // Every upload that committed has its job on the queue, however its request ended.
    let committed = eventually_explained(
        "every committed upload's job is queued",
        Duration::from_secs(10),
        async || {
            let uploaded: Vec<(String, i64)> = sqlx::query_as(
                "SELECT aggregate_id, (payload::jsonb -> 'Uploaded' ->> 'version_number')::bigint
                   FROM events WHERE event_type = 'Uploaded'",
            )
            .fetch_all(&t.db.owner)
            .await
            .unwrap();
            let mut unqueued = Vec::new();
            for (file, n) in &uploaded {
                let job = chronicle::ids::version_id(
                    chronicle::ids::FileId(file.parse().unwrap()),
                    *n as u32,
                );
                let known: bool = redis::cmd("SISMEMBER")
                    .arg(format!("{prefix}jobs:known"))
                    .arg(job.to_string())
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                if !known {
                    unqueued.push(file.clone());
                }
            }
            if unqueued.is_empty() {
                Ok(uploaded.len())
            } else {
                Err(format!(
                    "{} of {} committed uploads have no job on the queue: {unqueued:?}",
                    unqueued.len(),
                    uploaded.len()
                ))
            }
        },
    )
    .await;
    // The hang-ups were spread from before the body was read to after the answer, so
    // some uploads committed and some did not; both kinds must be there, or the cuts
    // missed the window this test is about.
    assert!(
        committed > 3 && committed < 3 + CUTS as usize,
        "{committed} uploads committed of {} sent",
        3 + CUTS
    );
    // And each of them marked its key in its own transaction: a key left in progress
    // would be taken over by a retry once its lock lapsed.
    let marked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM idempotency_keys WHERE state IN ('committed', 'completed')",
    )
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(
        marked as usize, committed,
        "committed uploads with their key marked"
    );
}

/// The consumer names of the queue's group under `prefix`, with their pending counts.
async fn consumers(
    redis: &mut redis::aio::ConnectionManager,
    prefix: &str,
) -> Vec<(String, usize)> {
    let info: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(format!("{prefix}jobs:ready"))
        .arg("workers")
        .query_async(redis)
        .await
        .unwrap();
    let mut all: Vec<(String, usize)> = info
        .consumers
        .into_iter()
        .map(|c| (c.name, c.pending))
        .collect();
    all.sort();
    all
}

/// Adds an entry to the queue's stream `stream`, as a dispatch would.
async fn add_entry(redis: &mut redis::aio::ConnectionManager, stream: &str) {
    let _: String = redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("job")
        .arg("{}")
        .query_async(redis)
        .await
        .unwrap();
}

#[tokio::test]
async fn consumers_of_stopped_workers_are_forgotten_unless_they_hold_a_job() {
    // Redis keeps every consumer name a group has seen until it is deleted, and each
    // worker process names its consumers anew: without forgetting them, every start of
    // a worker would add WORKER_CONCURRENCY names for good.
    let t = TestApp::spawn(Mode::Serve, &[("WORKER_CONCURRENCY", "4")]).await;
    let prefix = t.app.state.config.redis_key_prefix.clone();
    let mut redis = t.app.state.redis_conn.clone();
    // Redis makes a consumer when it first delivers it an entry: jobs to take.
    let c = t.signup("consumers").await;
    for i in 0..8u8 {
        let accepted = t.upload_ok(&c, "a.bin", bytes_of(40 + i, 1000)).await;
        let file_id = accepted["file_id"].as_str().unwrap().to_string();
        assert_eq!(t.settled_status(&file_id, 1).await, "completed");
    }
    let working = consumers(&mut redis, &prefix).await;
    assert!(
        !working.is_empty() && working.iter().all(|(_, pending)| *pending == 0),
        "the worker's consumers, nothing pending: {working:?}"
    );
    t.app.stop().await;
    assert_eq!(
        consumers(&mut redis, &prefix).await,
        vec![],
        "a stopped worker forgets its consumers"
    );

    // The reconciler's sweep, for workers that died without forgetting theirs: on a
    // queue of its own, one died holding an entry, one died idle.
    let other = format!("{prefix}other:");
    let queue = chronicle::queue::Queue::new(redis.clone(), &other);
    // Before any worker made the stream and its group, there is nothing to forget.
    assert_eq!(
        queue.forget_consumers(Duration::ZERO, None).await.unwrap(),
        0
    );
    let stream = format!("{other}jobs:ready");
    add_entry(&mut redis, &stream).await;
    assert_eq!(
        queue.forget_consumers(Duration::ZERO, None).await.unwrap(),
        0,
        "a stream without the group"
    );
    let _: i64 = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut redis)
        .await
        .unwrap();
    queue.ensure_group().await.unwrap();
    for consumer in ["dead-holding", "dead-idle"] {
        add_entry(&mut redis, &stream).await;
        let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("workers")
            .arg(consumer)
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(&mut redis)
            .await
            .unwrap();
        if consumer == "dead-idle" {
            let _: i64 = redis::cmd("XACK")
                .arg(&stream)
                .arg("workers")
                .arg(&read.keys[0].ids[0].id)
                .query_async(&mut redis)
                .await
                .unwrap();
        }
    }
    assert_eq!(
        consumers(&mut redis, &other).await,
        vec![
            ("dead-holding".to_string(), 1),
            ("dead-idle".to_string(), 0)
        ]
    );
    // Not idle for long enough yet: both stay.
    let hour = Duration::from_secs(3600);
    assert_eq!(queue.forget_consumers(hour, None).await.unwrap(), 0);
    // Idle long enough: the idle one goes; the one holding an entry stays (deleting it
    // would lose that entry's delivery record).
    assert_eq!(
        queue.forget_consumers(Duration::ZERO, None).await.unwrap(),
        1
    );
    assert_eq!(
        consumers(&mut redis, &other).await,
        vec![("dead-holding".to_string(), 1)]
    );
}

#[tokio::test]
async fn jobs_lost_by_redis_are_reconciled_from_postgres() {
    // The scanner is down and retries wait a minute: the job sits in Redis's delayed set.
    let t = TestApp::spawn(
        Mode::Serve,
        &[
            WORKER[0],
            ("SCANNER", "clamd"),
            ("CLAMD_ADDR", "127.0.0.1:9"),
            ("JOB_BACKOFF_BASE_MS", "60000"),
            ("JOB_RECONCILE_SECS", "1"),
        ],
    )
    .await;
    let c = t.signup("lost").await;
    let accepted = t.upload_ok(&c, "a.bin", bytes_of(2, 1000)).await;
    let file_id = accepted["file_id"].as_str().unwrap().to_string();
    let attempts = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'ProcessingFailed'",
        )
        .bind(&file_id)
        .fetch_one(&t.db.owner)
        .await
        .unwrap()
    };
    eventually("the first attempt failed", async || attempts().await >= 1).await;
    // Redis restarts empty: every key of this deployment is gone.
    let prefix = t.app.state.config.redis_key_prefix.clone();
    let mut conn = t.app.state.redis_conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // Long before the 30–60 s backoff, the reconciler puts the job back and it runs.
    eventually_within(
        "the lost job is re-enqueued and runs again",
        Duration::from_secs(20),
        async || (attempts().await >= 2).then_some(()),
    )
    .await;
}

/// EICAR inside a zip, deflated (the shared test zip writer, src/scan/test_zip.rs).
fn zipped(name: &str, data: &[u8]) -> Vec<u8> {
    zip(&[Member::new(name, data, Method::Deflated)])
}

fn text_part(name: &str, value: &str) -> Vec<u8> {
    format!("--B\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n--B--\r\n")
        .into_bytes()
}

/// `body` (a complete multipart body) with a text field appended before its end.
fn with_field(name: &str, value: &str, body: Vec<u8>) -> Vec<u8> {
    let end = body.len() - b"--B--\r\n".len();
    let mut out = body[..end].to_vec();
    out.extend_from_slice(
        format!(
            "--B\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n--B--\r\n"
        )
        .as_bytes(),
    );
    out
}

fn file_part(filename: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(b"\r\n--B--\r\n");
    body
}

/// The same verdicts through the whole pipeline with the real ClamAV daemon CI starts
/// (scripts/start-clamd.sh); `CLAMD_ADDR` names it.
#[tokio::test]
async fn with_real_clamd_eicar_fails_and_clean_bytes_complete() {
    let Ok(addr) = std::env::var("CLAMD_ADDR") else {
        assert!(std::env::var("CI").is_err(), "CI must provide CLAMD_ADDR");
        eprintln!("!!! SKIPPED: CLAMD_ADDR is not set (scripts/start-clamd.sh starts clamd)");
        return;
    };
    let t = TestApp::spawn(
        Mode::Serve,
        &[
            WORKER[0],
            ("SCANNER", "clamd"),
            ("CLAMD_ADDR", addr.as_str()),
        ],
    )
    .await;
    let c = t.signup("clamd").await;
    let infected = t
        .upload_ok(&c, "eicar.zip", zipped("eicar.com", EICAR))
        .await;
    let clean = t.upload_ok(&c, "clean.bin", bytes_of(9, 100_000)).await;
    let infected_id = infected["file_id"].as_str().unwrap();
    let clean_id = clean["file_id"].as_str().unwrap();
    assert_eq!(t.settled_status(infected_id, 1).await, "virus_failed");
    assert_eq!(t.settled_status(clean_id, 1).await, "completed");
    let signature: String = sqlx::query_scalar(
        "SELECT payload::jsonb #>> '{VirusFailed,signature}' FROM events
          WHERE aggregate_id = $1 AND event_type = 'VirusFailed'",
    )
    .bind(infected_id)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert!(signature.starts_with("Chronicle.Test.EICAR"), "{signature}");
    assert_eq!(t.stored_objects("blobs").len(), 1);
}
