//! Issue 11, defect 5: an API killed mid-upload left its partial bytes as
//! `objects/tmp/{tenant}/{upload}#1`, a staging name the object store's listing skips,
//! so the temp sweeper never removed them. After a crash everything not belonging to an
//! acknowledged or unfinished (tus) upload must go within `TEMP_SWEEP_AFTER_SECS`.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;

use super::{Ack, Deployment, assert_completed_exactly_once, unique_bytes};
use crate::common::{
    PATIENCE, TempDir, TestDb, eventually_explained, redis_url, unique_redis_prefix,
};

const MIB: usize = 1024 * 1024;

fn is_staging(path: &std::path::Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit_once('#'))
        .is_some_and(|(_, suffix)| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_killed_mid_upload_leaves_nothing_but_what_acknowledged_and_unfinished_uploads_need()
{
    let db = TestDb::new().await;
    let data = TempDir::new();
    let deployment = Deployment {
        database_url: db.url.clone(),
        redis_url: redis_url(),
        redis_prefix: unique_redis_prefix(),
        data_dir: data.0.clone(),
    };
    // The API alone (no worker yet): acknowledged uploads wait in tmp/ for processing.
    let mut api = deployment.start_http("web", &[]).await;
    let token = api.account("ada").await;
    let mut acks = Vec::new();
    for seed in 0..3 {
        let r = api
            .upload(&token, "acked.bin", unique_bytes(seed, 200_000))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        acks.push(Ack::from_response(r).await);
    }

    // An unfinished resumable upload: 100 of 1000 bytes.
    let tus = |r: reqwest::RequestBuilder| r.bearer_auth(&token).header("Tus-Resumable", "1.0.0");
    let r = tus(api.http.post(api.url("/v1/uploads")))
        .header("Upload-Length", 1000)
        .header("Upload-Metadata", "filename dC5iaW4=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let at = r.headers()["location"].to_str().unwrap().to_string();
    let tus_bytes = unique_bytes(99, 992);
    let r = tus(api.http.patch(api.url(&at)))
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", 0)
        .body(tus_bytes[..100].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // A multipart upload cut off by the crash: 12 MiB of a 20 MiB file sent, then kill -9.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let head = "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.bin\"\r\n\r\n";
    let tail = "\r\n--B--\r\n";
    let length = head.len() + 20 * MIB + tail.len();
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let cut = tokio::spawn(
        api.http
            .post(api.url("/v1/files"))
            .bearer_auth(&token)
            .header("content-type", "multipart/form-data; boundary=B")
            .header("content-length", length)
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tx.send(Ok(Bytes::from(head))).await.unwrap();
    for i in 0..12u64 {
        tx.send(Ok(Bytes::from(unique_bytes(1000 + i, MIB - 8))))
            .await
            .unwrap();
    }
    let staging = eventually_explained("a partial upload on disk", PATIENCE, async || {
        let written: Vec<PathBuf> = deployment
            .temp_files()
            .into_iter()
            .filter(|p| is_staging(p))
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= 8 * MIB as u64))
            .collect();
        if written.is_empty() {
            return Err(format!(
                "{:?}\n{}",
                deployment.temp_files(),
                api.process.output()
            ));
        }
        Ok(written)
    })
    .await;
    api.process.kill9();
    drop(tx);
    let _ = cut.await;

    // Restarted with a worker and a short sweep age.
    let api = deployment
        .start_http("serve", &[("TEMP_SWEEP_AFTER_SECS", "1".into())])
        .await;
    eventually_explained("the partial upload swept", PATIENCE, async || {
        if staging.iter().any(|p| p.exists()) {
            return Err(format!("{staging:?}\n{}", api.process.output()));
        }
        Ok(())
    })
    .await;

    // The unfinished upload's bytes were not touched by the sweeps that removed them.
    let upload_id = at.rsplit('/').next().unwrap();
    let tus_file = deployment
        .temp_files()
        .into_iter()
        .find(|p| p.ends_with(upload_id))
        .expect("the unfinished upload's bytes are kept");
    assert_eq!(std::fs::metadata(&tus_file).unwrap().len(), 100);
    let r = tus(api.http.head(api.url(&at))).send().await.unwrap();
    assert_eq!(r.headers()["upload-offset"], "100");
    assert_completed_exactly_once(
        &db.owner,
        &deployment,
        &acks,
        std::slice::from_ref(&tus_file),
        Duration::from_secs(90),
        &|| api.process.output(),
    )
    .await;

    // And the resumable upload finishes where it stopped.
    let r = tus(api.http.patch(api.url(&at)))
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", 100)
        .body(tus_bytes[100..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    acks.push(Ack {
        file_id: r.headers()["chronicle-file-id"].to_str().unwrap().into(),
        version: r.headers()["chronicle-version-number"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap(),
    });
    assert_completed_exactly_once(
        &db.owner,
        &deployment,
        &acks,
        &[],
        Duration::from_secs(90),
        &|| api.process.output(),
    )
    .await;
}
