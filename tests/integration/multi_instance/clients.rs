//! The load: uploaders that retry what was not acknowledged, and SSE clients that
//! reconnect with `Last-Event-ID` like a browser's `EventSource`, all through nginx.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::PASSWORD;
/// A client's pause before reconnecting or retrying (EventSource's default is ~3 s).
const RETRY_PAUSE: Duration = Duration::from_millis(200);

pub struct User {
    pub id: Uuid,
    pub token: String,
}

/// Registers a tenant and logs its admin in, through the proxy.
pub async fn signup(base: &str, handle: &str) -> User {
    let http = reqwest::Client::new();
    let email = format!("{handle}@example.com");
    let r = http.post(format!("{base}/v1/auth/register"))
        .json(&json!({"tenant_name": format!("{handle} inc"), "handle": handle, "name": handle, "email": email, "password": PASSWORD}))
        .send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    let id = Uuid::parse_str(body["user_id"].as_str().unwrap()).unwrap();
    let r = http
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    User {
        id,
        token: body["access_token"].as_str().unwrap().to_string(),
    }
}

/// A `202` the client received.
#[derive(Debug, Clone)]
pub struct Ack {
    pub file_id: Uuid,
    pub sha256: String,
    /// Requests it took (1 = no retry).
    pub attempts: u32,
}

#[derive(Default)]
pub struct UploadLog {
    pub acks: Vec<Ack>,
    /// Every answer other than `202`, and every transport error.
    pub failures: Vec<String>,
}

/// Uploads distinct files one after another until `stop`; an upload that was not
/// acknowledged is sent again (same bytes) until it is, also after `stop`.
pub fn uploader(
    base: String,
    token: String,
    name: String,
    stop: CancellationToken,
    log: Arc<Mutex<UploadLog>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut n = 0u32;
        while !stop.is_cancelled() {
            let bytes = content(&name, n);
            let sha256 = hex::encode(Sha256::digest(&bytes));
            for attempts in 1.. {
                assert!(attempts <= 50, "{name}/{n}: never acknowledged");
                let form = reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(bytes.clone())
                        .file_name(format!("{name}-{n}.bin"))
                        .mime_str("application/octet-stream")
                        .unwrap(),
                );
                let sent = http
                    .post(format!("{base}/v1/files"))
                    .bearer_auth(&token)
                    .multipart(form)
                    .send()
                    .await;
                let outcome = match sent {
                    Ok(r) if r.status() == StatusCode::ACCEPTED => r
                        .json::<Value>()
                        .await
                        .map_err(|e| format!("202 body: {e}")),
                    Ok(r) => Err(format!("{}", r.status())),
                    Err(e) => Err(format!("transport: {e}")),
                };
                match outcome {
                    Ok(body) => {
                        let file_id = Uuid::parse_str(body["file_id"].as_str().unwrap()).unwrap();
                        log.lock().unwrap().acks.push(Ack {
                            file_id,
                            sha256: sha256.clone(),
                            attempts,
                        });
                        break;
                    }
                    Err(failure) => {
                        log.lock().unwrap().failures.push(failure);
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
            n += 1;
        }
    })
}

/// 16 KiB no other upload has: content dedup must not merge two uploads.
fn content(name: &str, n: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
    let mut block = Sha256::digest(format!("{name}/{n}").as_bytes()).to_vec();
    while out.len() < 16 * 1024 {
        out.extend_from_slice(&block);
        block = Sha256::digest(&block).to_vec();
    }
    out
}

#[derive(Default)]
pub struct SseLog {
    /// Every event id received, in order (duplicates included).
    pub ids: Vec<String>,
    /// The instance each successful connection reached (nginx's `X-Upstream`).
    pub upstreams: Vec<String>,
    /// Streams that ended under the client (it then reconnected).
    pub drops: u32,
    /// Connection attempts that failed.
    pub refused: Vec<String>,
}

impl SseLog {
    /// The instance serving the current connection.
    pub fn upstream(&self) -> Option<&str> {
        self.upstreams.last().map(String::as_str)
    }
}

/// Reads `GET /v1/events` until `stop`, reconnecting after every drop with the last id
/// received; the first connection resumes after `resume_from` when given.
pub fn sse_client(
    base: String,
    token: String,
    resume_from: Option<String>,
    stop: CancellationToken,
    log: Arc<Mutex<SseLog>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        // The first connection starts "now", before this user has any row; from then
        // on "everything after what I have" is at least `0-0` (an EventSource that has
        // no id yet would reconnect without one, and rightly miss what happened between).
        let mut connected_once = resume_from.is_some();
        let mut last = resume_from;
        while !stop.is_cancelled() {
            let mut request = http.get(format!("{base}/v1/events")).bearer_auth(&token);
            if connected_once {
                request = request.header("Last-Event-ID", last.as_deref().unwrap_or("0-0"));
            }
            let response = tokio::select! {
                _ = stop.cancelled() => return,
                r = request.send() => r,
            };
            match response {
                Ok(r) if r.status() == StatusCode::OK => {
                    connected_once = true;
                    let upstream = r
                        .headers()
                        .get("x-upstream")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.rsplit(", ").next())
                        .unwrap_or("?")
                        .to_string();
                    log.lock().unwrap().upstreams.push(upstream);
                    let mut body = r.bytes_stream();
                    let mut buf: Vec<u8> = Vec::new();
                    loop {
                        let chunk = tokio::select! {
                            _ = stop.cancelled() => return,
                            c = body.next() => c,
                        };
                        let Some(Ok(chunk)) = chunk else {
                            log.lock().unwrap().drops += 1;
                            break;
                        };
                        buf.extend_from_slice(&chunk);
                        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                            let frame: Vec<u8> = buf.drain(..end + 2).collect();
                            let frame = String::from_utf8(frame).unwrap();
                            let id = frame.lines().find_map(|l| l.strip_prefix("id:"));
                            // Frames without an id: keep-alives and upload progress.
                            if let Some(id) = id.map(str::trim).filter(|id| !id.is_empty()) {
                                log.lock().unwrap().ids.push(id.to_string());
                                last = Some(id.to_string());
                            }
                        }
                    }
                }
                Ok(r) => log.lock().unwrap().refused.push(r.status().to_string()),
                Err(e) => log.lock().unwrap().refused.push(e.to_string()),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
            }
        }
    })
}
