//! S3 mode against a real S3 API server (moto's, started by scripts/start-moto.sh;
//! `S3_TEST_ENDPOINT` names it): the same upload → worker → download path as local mode.

use chronicle::app::Mode;
use reqwest::StatusCode;

use crate::common::TestApp;
use crate::common::{WORKER, bytes_of};

#[tokio::test]
async fn s3_mode_uploads_processes_and_downloads_byte_identical() {
    let Ok(endpoint) = std::env::var("S3_TEST_ENDPOINT") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide S3_TEST_ENDPOINT"
        );
        eprintln!("!!! SKIPPED: S3_TEST_ENDPOINT is not set (scripts/start-moto.sh starts one)");
        return;
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
    let t = TestApp::spawn(
        Mode::Serve,
        &[
            WORKER[0],
            ("S3_BUCKET", bucket.as_str()),
            ("S3_ENDPOINT", endpoint.as_str()),
            ("S3_ALLOW_HTTP", "true"),
            ("S3_ACCESS_KEY_ID", "test"),
            ("S3_SECRET_ACCESS_KEY", "test"),
            // Two parts of 8 MiB and a tail: S3 multipart for real.
            ("MAX_UPLOAD_BYTES", "33554432"),
        ],
    )
    .await;
    assert_eq!(t.app.state.storage.kind, "s3");
    let r = t.http.get(t.url("/health/ready")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let c = t.signup("bucketeer").await;
    let bytes = bytes_of(13, 20 * 1024 * 1024 + 123);
    let accepted = t.upload_ok(&c, "big.bin", bytes.clone()).await;
    let file_id = accepted["file_id"].as_str().unwrap().to_string();
    assert_eq!(t.settled_status(&file_id, 1).await, "completed");
    let r = t
        .http
        .get(t.url(&format!("/v1/files/{file_id}/content")))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..]);
    let r = t
        .http
        .get(t.url(&format!("/v1/files/{file_id}/content")))
        .bearer_auth(&c.token)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.bytes().await.unwrap()[..], &bytes[bytes.len() - 10..]);

    // The temporary object is gone; the blob is in the bucket under the tenant.
    let (temp, key): (String, String) = sqlx::query_as(
        "SELECT e.payload::jsonb #>> '{Uploaded,version,temp_location}', v.storage_key
           FROM events e JOIN file_versions v ON v.file_id = e.aggregate_id::uuid
          WHERE e.event_type = 'Uploaded' AND e.aggregate_id = $1",
    )
    .bind(&file_id)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert!(!t.app.state.storage.exists(&temp).await.unwrap());
    assert!(t.app.state.storage.exists(&key).await.unwrap());

    // Too large is refused the same way, and nothing stays in the bucket's tmp/.
    let r = t.upload(&c, "huge.bin", vec![0u8; 33 * 1024 * 1024]).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
