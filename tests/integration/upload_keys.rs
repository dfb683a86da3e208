//! `Idempotency-Key` on multipart uploads (issue 11, defect 10): a client whose
//! connection was cut after the commit retries with its key and gets the first answer;
//! the retried body is not stored twice; two identical uploads in flight commit once.

use chronicle::app::Mode;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::TestApp;
use crate::common::{Client, bytes_of, median_of_three, raw_request, retried_after_hang_ups};

fn upload(
    t: &TestApp,
    c: &Client,
    path: &str,
    key: &str,
    bytes: Vec<u8>,
) -> reqwest::RequestBuilder {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes)
            .file_name("report.bin")
            .mime_str("application/octet-stream")
            .unwrap(),
    );
    t.http
        .post(t.url(path))
        .bearer_auth(&c.token)
        .header("idempotency-key", key)
        .multipart(form)
}

async fn uploaded_events(t: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'Uploaded'")
        .fetch_one(&t.db.owner)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_upload_retried_with_its_key_is_committed_once() {
    let t = TestApp::spawn(Mode::Serve, &[("AUTH_RATE_LIMIT_PER_MINUTE", "1000")]).await;
    let c = t.signup("keys").await;
    let first = upload(&t, &c, "/v1/files", "u-1", bytes_of(1, 5000))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first_body = first.bytes().await.unwrap();
    let again = upload(&t, &c, "/v1/files", "u-1", bytes_of(1, 5000))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first_body, "the first answer");
    assert_eq!(uploaded_events(&t).await, 1, "committed once");
    assert_eq!(
        t.stored_objects("tmp").len(),
        1,
        "the retry's bytes are not kept"
    );

    // Same key, another body.
    let other = upload(&t, &c, "/v1/files", "u-1", bytes_of(2, 5000))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    assert_eq!(uploaded_events(&t).await, 1);
    assert_eq!(t.stored_objects("tmp").len(), 1);

    // New versions too.
    let file: Value = serde_json::from_slice(&first_body).unwrap();
    let versions = format!("/v1/files/{}/versions", file["file_id"].as_str().unwrap());
    let v = upload(&t, &c, &versions, "v-1", bytes_of(3, 700))
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), StatusCode::ACCEPTED);
    let v_body = v.bytes().await.unwrap();
    let v_again = upload(&t, &c, &versions, "v-1", bytes_of(3, 700))
        .send()
        .await
        .unwrap();
    assert_eq!(v_again.status(), StatusCode::ACCEPTED);
    assert_eq!(v_again.bytes().await.unwrap(), v_body);
    let parsed: Value = serde_json::from_slice(&v_body).unwrap();
    assert_eq!(parsed["version_number"], 2);
    assert_eq!(uploaded_events(&t).await, 2);
    assert_eq!(t.stored_objects("tmp").len(), 2);

    // Without a key, a repeat is a new upload (unchanged).
    let plain = |n| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes_of(n, 10)).file_name("x.bin"),
        );
        t.http
            .post(t.url("/v1/files"))
            .bearer_auth(&c.token)
            .multipart(form)
            .send()
    };
    assert_eq!(plain(4).await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(plain(4).await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(uploaded_events(&t).await, 4);
    t.app.stop().await;
}

#[tokio::test]
async fn identical_uploads_in_flight_with_one_key_commit_once() {
    let t = TestApp::spawn(Mode::Serve, &[("AUTH_RATE_LIMIT_PER_MINUTE", "1000")]).await;
    let c = t.signup("race").await;
    let requests: Vec<_> = (0..8)
        .map(|_| upload(&t, &c, "/v1/files", "same", bytes_of(9, 200_000)).send())
        .collect();
    let mut accepted = Vec::new();
    for r in futures::future::join_all(requests).await {
        let r = r.unwrap();
        match r.status() {
            StatusCode::ACCEPTED => accepted.push(r.bytes().await.unwrap()),
            StatusCode::CONFLICT => {
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "idempotency_key_in_progress");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(!accepted.is_empty());
    assert!(accepted.windows(2).all(|w| w[0] == w[1]), "one answer");
    assert_eq!(uploaded_events(&t).await, 1, "exactly one commit");
    assert_eq!(
        t.stored_objects("tmp").len(),
        1,
        "the others' bytes are gone"
    );
    t.app.stop().await;
}

#[tokio::test]
async fn an_upload_whose_client_hangs_up_answers_its_retry_with_the_key() {
    // Once the body is in, the key's claim, the commit and the storing of the answer
    // run to their end: a client that hangs up after its last byte and retries with
    // its key gets the upload's answer (or, if it hung up before the claim, the upload
    // runs now), never `409` for the key's lease or for 24 hours.
    let limits = [
        ("AUTH_RATE_LIMIT_PER_MINUTE", "1000"),
        ("RATE_LIMIT_PER_MINUTE", "1000000"),
    ];
    let t = TestApp::spawn(Mode::Web, &limits).await;
    let c = t.signup("hangups").await;
    let bearer = format!("Bearer {}", c.token);
    let request = |key: &str, seed: u8| {
        let boundary = "chronicle-test-boundary";
        let mut body = format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"r.bin\"\r\n\
             content-type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend(bytes_of(seed, 4000));
        body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", content_type.as_str()),
            ("idempotency-key", key),
        ];
        raw_request(&t, "POST /v1/files", &headers, &body)
    };
    let whole = median_of_three(&t, 202, async |i| request(&format!("timing-{i}"), i)).await;
    let cuts: Vec<Vec<u8>> = (0..60u8)
        .map(|i| request(&format!("cut-{i}"), 10 + i))
        .collect();
    retried_after_hang_ups(&t, "uploads", whole, &cuts, 202).await;
    assert_eq!(uploaded_events(&t).await, 3 + 60, "one upload per key");
    t.app.stop().await;
}
