//! Resumable uploads (tus 1.0.0) over HTTP against the real server: the protocol's
//! statuses and headers, checksums, termination, expiry, locking, isolation, progress.
//! `client`: a real tus client (tuspy) through a proxy that cuts connections; `js_client`:
//! tus-js-client in small chunks under a low request budget.

mod client;
mod cors;
mod edges;
mod instances;
mod js_client;
mod s3;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::common::eventually_within;
use crate::files_api::{Caller, World};

/// Tus-Resumable and the bearer token on every request.
pub fn tus(r: RequestBuilder, who: &Caller) -> RequestBuilder {
    r.bearer_auth(&who.token).header("Tus-Resumable", "1.0.0")
}

pub fn meta(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {}", STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Creates an upload of `length` bytes; returns its path (`/v1/uploads/{id}`).
pub async fn create(w: &World, who: &Caller, length: u64, metadata: &str) -> String {
    let r = tus(w.t.http.post(w.t.url("/v1/uploads")), who)
        .header("Upload-Length", length)
        .header("Upload-Metadata", metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert!(r.headers().contains_key("upload-expires"));
    r.headers()["location"].to_str().unwrap().to_string()
}

pub async fn patch(w: &World, who: &Caller, at: &str, offset: u64, bytes: &[u8]) -> Response {
    tus(w.t.http.patch(w.t.url(at)), who)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", offset)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

pub async fn head(w: &World, who: &Caller, at: &str) -> Response {
    tus(w.t.http.head(w.t.url(at)), who).send().await.unwrap()
}

pub fn offset(r: &Response) -> u64 {
    r.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn header(r: &Response, name: &str) -> String {
    r.headers()[name].to_str().unwrap().to_string()
}

/// The upload's temp file on the server's disk.
pub fn temp_file(w: &World, at: &str) -> PathBuf {
    let id = at.rsplit('/').next().unwrap();
    w.t.app
        .state
        .config
        .data_dir
        .join("objects/tmp")
        .join(w.tenant.to_string())
        .join(id)
}

/// Error body of a non-HEAD answer: asserts the one error shape and returns the code.
pub async fn code(r: Response) -> String {
    let body: Value = r.json().await.unwrap();
    body["error"]["message"].as_str().expect("message");
    body["error"]["code"].as_str().unwrap().to_string()
}

pub async fn upload_events(w: &World) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'upload'")
        .fetch_one(&w.t.db.owner)
        .await
        .unwrap()
}

pub fn upload_id(at: &str) -> Uuid {
    at.rsplit('/').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn options_announce_version_extensions_limit_and_checksums() {
    let w = World::new(&[("TUS_MAX_SIZE", "1048576")]).await;
    let r =
        w.t.http
            .request(reqwest::Method::OPTIONS, w.t.url("/v1/uploads"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "tus-version"), "1.0.0");
    assert_eq!(header(&r, "tus-resumable"), "1.0.0");
    assert_eq!(header(&r, "tus-max-size"), "1048576");
    assert_eq!(header(&r, "tus-checksum-algorithm"), "sha1,sha256");
    let ext = header(&r, "tus-extension");
    for e in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "expiration",
        "checksum",
    ] {
        assert!(ext.split(',').any(|x| x == e), "{e} missing from {ext}");
    }
}

#[tokio::test]
async fn an_upload_in_two_chunks_becomes_an_uploaded_file_version() {
    let w = World::new(&[]).await;
    let at = create(
        &w,
        &w.admin,
        11,
        &meta(&[("filename", "../notes.txt"), ("filetype", "text/plain")]),
    )
    .await;
    let r = head(&w, &w.admin, &at).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!((offset(&r), header(&r, "upload-length")), (0, "11".into()));
    assert_eq!(header(&r, "cache-control"), "no-store");
    let r = patch(&w, &w.admin, &at, 0, b"hello ").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset(&r), 6);
    assert!(!r.headers().contains_key("chronicle-file-id"));
    let r = patch(&w, &w.admin, &at, 6, b"world").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset(&r), 11);
    let file_id = header(&r, "chronicle-file-id");
    assert_eq!(header(&r, "chronicle-version-number"), "1");
    let version_id = header(&r, "chronicle-version-id");
    // HEAD after completion tells the same ids.
    let r = head(&w, &w.admin, &at).await;
    assert_eq!(header(&r, "chronicle-file-id"), file_id);
    assert_eq!(header(&r, "chronicle-version-id"), version_id);
    // The file exists like a multipart upload's: sanitised name, SHA-256, uploaded.
    let file: Value = eventually_within(
        "the file of a finished upload readable",
        Duration::from_secs(10),
        async || {
            let r =
                w.t.http
                    .get(w.t.url(&format!("/v1/files/{file_id}/versions")))
                    .bearer_auth(&w.admin.token)
                    .send()
                    .await
                    .unwrap();
            (r.status() == StatusCode::OK).then_some(())?;
            let v: Value = r.json().await.unwrap();
            (!v.as_array().is_none_or(|a| a.is_empty())).then_some(v)
        },
    )
    .await;
    let v = &file[0];
    assert_eq!(v["filename"], "notes.txt", "{file}");
    assert_eq!(v["size_bytes"], 11);
    assert_eq!(
        v["sha256"],
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
    // The job queue got it, as for multipart uploads.
    eventually_within(
        "a job queued for the finished upload",
        Duration::from_secs(10),
        async || {
            let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE file_id = $1")
                .bind(file_id.parse::<Uuid>().unwrap())
                .fetch_one(&w.t.db.owner)
                .await
                .unwrap();
            (jobs == 1).then_some(())
        },
    )
    .await;
    // A retried final PATCH (its answer lost) gets the same answer, nothing new recorded.
    let before = upload_events(&w).await;
    let r = patch(&w, &w.admin, &at, 11, b"").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "chronicle-file-id"), file_id);
    assert_eq!(upload_events(&w).await, before);
}
