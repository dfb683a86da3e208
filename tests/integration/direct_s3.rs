//! Direct-to-S3 uploads and presigned downloads against moto's S3 server
//! (scripts/start-moto.sh; `S3_TEST_ENDPOINT`): the client PUTs the parts to presigned
//! URLs, the API only sees two small JSON bodies, and the worker holds the bytes to the
//! declared SHA-256.

use std::time::{Duration, Instant};

use chronicle::app::Mode;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{
    Client, TestApp, WORKER, bytes_of, every_committed_version_recorded_on_its_upload,
    median_of_three, raw_request, refuse_upload_completions, send_raw,
};

const MIB: usize = 1024 * 1024;

/// Moto's endpoint and a fresh bucket on it, or `None` (skipped) outside CI.
async fn bucket() -> Option<(String, String)> {
    let Ok(endpoint) = std::env::var("S3_TEST_ENDPOINT") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide S3_TEST_ENDPOINT"
        );
        eprintln!("!!! SKIPPED: S3_TEST_ENDPOINT is not set (scripts/start-moto.sh starts one)");
        return None;
    };
    let bucket = format!("chronicle-{}", uuid::Uuid::now_v7().simple());
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "bucket not created: {}",
        r.status()
    );
    Some((endpoint, bucket))
}

async fn s3_app(endpoint: &str, bucket: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        WORKER[0],
        ("S3_BUCKET", bucket),
        ("S3_ENDPOINT", endpoint),
        ("S3_ALLOW_HTTP", "true"),
        ("S3_ACCESS_KEY_ID", "test"),
        ("S3_SECRET_ACCESS_KEY", "test"),
        ("MAX_UPLOAD_BYTES", "209715200"),
    ];
    env.extend_from_slice(extra);
    TestApp::spawn(Mode::Serve, &env).await
}

/// `chronicle_http_request_body_bytes_total` of the app's /metrics.
async fn body_bytes_received(t: &TestApp) -> u64 {
    let text = t.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix("chronicle_http_request_body_bytes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("the body-bytes counter is exported") as u64
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn start(t: &TestApp, c: &Client, body: Value) -> reqwest::Response {
    t.http
        .post(t.url("/v1/files/direct"))
        .bearer_auth(&c.token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// PUTs every part to its presigned URL, concurrently, with a client that has no
/// credentials at all; returns the e-tags in part order.
async fn put_parts(session: &Value, bytes: &[u8]) -> Vec<String> {
    let part_size = session["part_size"].as_u64().unwrap() as usize;
    let bare = reqwest::Client::new();
    let puts = session["parts"].as_array().unwrap().iter().map(|p| {
        let n = p["number"].as_u64().unwrap() as usize;
        let url = p["url"].as_str().unwrap().to_string();
        let chunk = bytes[(n - 1) * part_size..(n * part_size).min(bytes.len())].to_vec();
        let bare = bare.clone();
        async move {
            let r = bare.put(url).body(chunk).send().await.unwrap();
            assert!(r.status().is_success(), "part {n}: {}", r.status());
            r.headers()["etag"].to_str().unwrap().to_string()
        }
    });
    futures::future::join_all(puts).await
}

async fn complete(
    t: &TestApp,
    c: &Client,
    session: &Value,
    e_tags: &[String],
) -> reqwest::Response {
    t.http
        .post(t.url(session["complete_url"].as_str().unwrap()))
        .bearer_auth(&c.token)
        .json(&json!({ "e_tags": e_tags }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_100_mib_direct_upload_never_passes_the_api_and_downloads_byte_identical() {
    let Some((endpoint, bucket)) = bucket().await else {
        return;
    };
    let t = s3_app(&endpoint, &bucket, &[("S3_PRESIGNED_DOWNLOAD_SECS", "60")]).await;
    let c = t.signup("direct").await;
    let bytes = bytes_of(7, 100 * MIB);
    let sha = sha256_hex(&bytes);

    let before = body_bytes_received(&t).await;
    let started = Instant::now();
    let r = start(
        &t,
        &c,
        json!({"size": bytes.len(), "sha256": sha, "parts": 4, "filename": "big.bin", "content_type": "application/octet-stream"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let session: Value = r.json().await.unwrap();
    assert_eq!(session["part_size"], 25 * MIB);
    assert_eq!(session["parts"].as_array().unwrap().len(), 4);
    let e_tags = put_parts(&session, &bytes).await;
    let r = complete(&t, &c, &session, &e_tags).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let direct_secs = started.elapsed().as_secs_f64();
    let accepted: Value = r.json().await.unwrap();
    let file_id = accepted["file_id"].as_str().unwrap().to_string();
    assert_eq!(accepted["file_id"], session["file_id"]);
    assert_eq!(accepted["version_number"], 1);
    let received = body_bytes_received(&t).await - before;
    assert!(
        received < 64 * 1024,
        "the API received {received} body bytes for a 100 MiB direct upload"
    );

    // Completing again answers the same version (a retried request records nothing).
    let r = complete(&t, &c, &session, &e_tags).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.json::<Value>().await.unwrap()["version_number"], 1);

    assert_eq!(t.settled_status(&file_id, 1).await, "completed");

    // The download redirects to the bucket after the same authorization …
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let content = t.url(&format!("/v1/files/{file_id}/content"));
    let r = no_redirects.get(&content).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let other = t.signup("outsider").await;
    let r = no_redirects
        .get(&content)
        .bearer_auth(&other.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = no_redirects
        .get(&content)
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&endpoint), "{location}");
    // … and the bucket serves the bytes, identical, under the download's name.
    let before_download = body_bytes_received(&t).await;
    let r = no_redirects.get(&location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // S3 applies the signed response-content-disposition (moto ignores it).
    assert!(
        location.contains("response-content-disposition=") && location.contains("big.bin"),
        "{location}"
    );
    let downloaded = r.bytes().await.unwrap();
    assert!(downloaded[..] == bytes[..], "downloaded bytes differ");
    assert!(body_bytes_received(&t).await - before_download < 4096);

    // The same size through the API (proxied), for the comparison in the report.
    let started = Instant::now();
    let proxied = t.upload_ok(&c, "proxied.bin", bytes_of(8, 100 * MIB)).await;
    let proxied_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "100 MiB upload: direct {:.1} MB/s ({direct_secs:.2} s), proxied {:.1} MB/s ({proxied_secs:.2} s); API body bytes for the direct one: {received}",
        104.857_6 / direct_secs,
        104.857_6 / proxied_secs,
    );
    let proxied_id = proxied["file_id"].as_str().unwrap().to_string();
    assert_eq!(t.settled_status(&proxied_id, 1).await, "completed");
}

#[tokio::test]
async fn a_direct_upload_whose_bytes_differ_from_the_declared_sha256_fails_and_serves_nothing() {
    let Some((endpoint, bucket)) = bucket().await else {
        return;
    };
    let t = s3_app(&endpoint, &bucket, &[]).await;
    let c = t.signup("liar").await;
    let bytes = bytes_of(3, 6 * MIB + 5);
    let declared = sha256_hex(b"something else");

    // Bad declarations are refused before anything is started.
    for (body, status) in [
        (
            json!({"size": 10, "sha256": "abc"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"size": 0, "sha256": declared}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"size": 300 * MIB, "sha256": declared}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            json!({"size": 9 * MIB, "sha256": declared, "parts": 2}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let r = start(&t, &c, body.clone()).await;
        assert_eq!(r.status(), status, "{body}");
    }

    let r = start(&t, &c, json!({"size": bytes.len(), "sha256": declared})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let session: Value = r.json().await.unwrap();
    assert_eq!(session["parts"].as_array().unwrap().len(), 1);
    let e_tags = put_parts(&session, &bytes).await;
    // Missing e-tags are refused; the session stays open.
    let r = complete(&t, &c, &session, &[]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Only its owner may complete it.
    let other = t.signup("other").await;
    let r = complete(&t, &other, &session, &e_tags).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = complete(&t, &c, &session, &e_tags).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let file_id = session["file_id"].as_str().unwrap().to_string();

    // The worker hashes the object: not what was declared, so the version fails at
    // once (no retries) and nothing is served.
    assert_eq!(t.settled_status(&file_id, 1).await, "failed");
    let failures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'ProcessingFailed'",
    )
    .bind(&file_id)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(failures, 1);
    let r = t
        .http
        .get(t.url(&format!("/v1/files/{file_id}/content")))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unfinished_direct_session_expires_and_its_multipart_upload_is_aborted() {
    let Some((endpoint, bucket)) = bucket().await else {
        return;
    };
    let t = s3_app(
        &endpoint,
        &bucket,
        &[
            ("DIRECT_UPLOAD_EXPIRY_SECS", "1"),
            ("UPLOAD_EXPIRE_EVERY_SECS", "1"),
        ],
    )
    .await;
    let c = t.signup("slowpoke").await;
    let bytes = bytes_of(5, 1000);
    let r = start(
        &t,
        &c,
        json!({"size": bytes.len(), "sha256": sha256_hex(&bytes)}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let session: Value = r.json().await.unwrap();
    let upload_id = session["upload_id"].as_str().unwrap().to_string();
    let listing = || async {
        reqwest::get(format!("{endpoint}/{bucket}?uploads"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert!(
        listing().await.contains("<UploadId>"),
        "the multipart upload exists"
    );

    crate::common::eventually_explained(
        "the unfinished upload expires",
        Duration::from_secs(30),
        async || {
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM uploads WHERE id = $1::uuid")
                    .bind(&upload_id)
                    .fetch_optional(&t.db.owner)
                    .await
                    .unwrap();
            match state.as_deref() {
                Some("expired") => Ok(()),
                _ => Err(format!("state {state:?}")),
            }
        },
    )
    .await;
    assert!(
        !listing().await.contains("<UploadId>"),
        "the multipart upload was aborted"
    );
    let e_tags = vec!["\"x\"".to_string()];
    let r = complete(&t, &c, &session, &e_tags).await;
    assert_eq!(r.status(), StatusCode::GONE);
}

#[tokio::test]
async fn direct_uploads_need_s3_storage() {
    let t = TestApp::spawn(Mode::Web, &[]).await;
    let c = t.signup("local").await;
    let r = start(&t, &c, json!({"size": 10, "sha256": "ab".repeat(32)})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("S3"),
        "{body}"
    );
}

/// A direct session of `bytes` whose one part is in the bucket, and the raw request that
/// completes it.
async fn ready_to_complete(t: &TestApp, c: &Client, name: &str, bytes: &[u8]) -> Vec<u8> {
    let r = start(
        t,
        c,
        json!({"size": bytes.len(), "sha256": sha256_hex(bytes), "parts": 1, "filename": name, "content_type": "application/octet-stream"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let session: Value = r.json().await.unwrap();
    let e_tags = put_parts(&session, bytes).await;
    let body = json!({ "e_tags": e_tags }).to_string();
    let line = format!("POST {}", session["complete_url"].as_str().unwrap());
    let bearer = format!("Bearer {}", c.token);
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    raw_request(t, &line, &headers, body.as_bytes())
}

#[tokio::test]
async fn a_completion_whose_client_hangs_up_still_records_it() {
    // Completing commits the file version, then records what the session became
    // (`UploadCompleted`). A client that hangs up makes hyper drop the request wherever
    // it waits; between those two commits, the session would read unfinished and expire
    // as if its bytes had never become a version. The completion runs to its end on a
    // task of its own (`commands::to_the_end`).
    let Some((endpoint, bucket)) = bucket().await else {
        return;
    };
    let t = s3_app(&endpoint, &bucket, &[("RATE_LIMIT_PER_MINUTE", "100000")]).await;
    let c = t.signup("hangup").await;
    let whole = median_of_three(&t, 202, async |i| {
        ready_to_complete(&t, &c, "whole.bin", &bytes_of(200 + i, 1000)).await
    })
    .await;
    const CUTS: u32 = 60;
    for i in 0..CUTS {
        let request = ready_to_complete(&t, &c, "cut.bin", &bytes_of(i as u8, 1001)).await;
        send_raw(&t, &request, Some(whole * 3 * i / (2 * CUTS))).await;
    }
    every_committed_version_recorded_on_its_upload(&t.db.owner, 3 + CUTS as i64).await;
}

#[tokio::test]
async fn a_completion_cut_after_its_version_is_repaired_without_a_second_version() {
    // Completing commits the file version, then `UploadCompleted`. When the process dies
    // in between, the client's retried completion finds the version and records it —
    // also once the worker has processed the version and cleared its temporary key (it
    // used to commit the declared bytes again, as a second version whose object was gone).
    let Some((endpoint, bucket)) = bucket().await else {
        return;
    };
    let t = s3_app(&endpoint, &bucket, &[]).await;
    let c = t.signup("repair").await;
    let first = t.upload_ok(&c, "a.bin", bytes_of(1, 1000)).await;
    let file_id = first["file_id"].as_str().unwrap().to_string();
    assert_eq!(t.settled_status(&file_id, 1).await, "completed");
    // The completion's second step fails, as if the process had died between the two.
    refuse_upload_completions(&t.db.owner, true).await;
    let bytes = bytes_of(2, 1000);
    let r = start(
        &t,
        &c,
        json!({"size": bytes.len(), "sha256": sha256_hex(&bytes), "parts": 1, "filename": "b.bin",
               "content_type": "application/octet-stream", "file_id": file_id}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let session: Value = r.json().await.unwrap();
    let e_tags = put_parts(&session, &bytes).await;
    let r = complete(&t, &c, &session, &e_tags).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(t.settled_status(&file_id, 2).await, "completed");
    refuse_upload_completions(&t.db.owner, false).await;

    let r = complete(&t, &c, &session, &e_tags).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.json::<Value>().await.unwrap()["version_number"], 2);
    let uploaded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'Uploaded'",
    )
    .bind(&file_id)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(uploaded, 2, "versions 1 and 2, no third");
}
