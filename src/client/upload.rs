//! `upload`: tus 1.0.0 (creation, checksum) with resumption across process restarts.
//! Each file's upload URL is remembered under its path, size and modification time in
//! `uploads.json` (config::state_dir) as soon as the server creates it, so a client
//! killed mid-way asks the server for the offset (`HEAD`) next time and sends only the
//! rest; a changed file starts afresh. Every chunk carries `Upload-Checksum: sha256 …`,
//! so the server refuses a corrupted chunk instead of storing it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::Mutex;

use super::config::{state_dir, write_private};
use super::{Api, ClientError, Exit};

const TUS: &str = "1.0.0";
/// Attempts per chunk before giving up on a transient failure.
const ATTEMPTS: u32 = 5;

#[derive(Args, Debug)]
pub struct UploadArgs {
    /// Files to upload.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Bytes per PATCH request (default 8 MiB).
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub chunk_size: usize,
    /// Files uploaded at the same time.
    #[arg(long, default_value_t = 2)]
    pub parallel: usize,
}

/// What the state file remembers of one upload in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    url: String,
}

/// `uploads.json`: file identity → upload URL. Shared by the uploads of one process.
struct State {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Pending>>,
}

impl State {
    fn load() -> Result<Self, ClientError> {
        let dir = state_dir();
        std::fs::create_dir_all(&dir).map_err(|e| ClientError::io(&dir, e))?;
        let path = dir.join("uploads.json");
        let entries = match std::fs::read(&path) {
            // A damaged state file only costs the uploads it remembered.
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => BTreeMap::new(),
        };
        Ok(Self {
            path,
            entries: Mutex::new(entries),
        })
    }

    async fn get(&self, key: &str) -> Option<Pending> {
        self.entries.lock().await.get(key).cloned()
    }

    async fn set(&self, key: &str, value: Option<Pending>) -> Result<(), ClientError> {
        let mut entries = self.entries.lock().await;
        match value {
            Some(v) => entries.insert(key.to_string(), v),
            None => entries.remove(key),
        };
        let bytes = serde_json::to_vec_pretty(&*entries).unwrap_or_default();
        write_private(&self.path, &bytes).map_err(|e| ClientError::io(&self.path, e))
    }
}

/// A file as the state file knows it: server, absolute path, size, modification time.
fn identity(server: &str, path: &Path, size: u64, mtime_ns: u128) -> String {
    format!("{server}|{}|{size}|{mtime_ns}", path.display())
}

pub async fn run(api: &Api, args: UploadArgs, json: bool) -> Result<Exit, ClientError> {
    if args.chunk_size == 0 || args.parallel == 0 {
        return Err(ClientError::Usage(
            "--chunk-size and --parallel must be positive".into(),
        ));
    }
    let state = Arc::new(State::load()?);
    let bars = MultiProgress::with_draw_target(if json {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let results: Vec<Result<serde_json::Value, ClientError>> =
        futures::stream::iter(args.paths.iter().cloned())
            .map(|path| {
                let (api, state, bars) = (api.clone(), state.clone(), bars.clone());
                let chunk = args.chunk_size;
                async move { upload_one(&api, &state, &bars, &path, chunk).await }
            })
            .buffered(args.parallel)
            .collect()
            .await;
    let mut done = Vec::new();
    let mut errors = Vec::new();
    let mut first_error = None;
    for (path, result) in args.paths.iter().zip(results) {
        match result {
            Ok(v) => done.push(v),
            Err(e) => {
                if !json {
                    eprintln!("error: {}: {e}", path.display());
                }
                errors.push(json!({"path": path, "code": e.code(), "message": e.to_string()}));
                first_error.get_or_insert(e);
            }
        }
    }
    if json {
        // One document, whatever happened; the exit code is the first failure's.
        println!("{}", json!({"uploads": done, "errors": errors}));
    } else {
        for d in &done {
            println!(
                "{}  {}  {} bytes  {:.1} MB/s{}",
                d["file_id"].as_str().unwrap_or("?"),
                d["path"].as_str().unwrap_or("?"),
                d["bytes"],
                d["mb_per_sec"].as_f64().unwrap_or(0.0),
                if d["resumed_from"].as_u64().unwrap_or(0) > 0 {
                    format!("  (resumed at {})", d["resumed_from"])
                } else {
                    String::new()
                }
            );
        }
    }
    match first_error {
        Some(e) => Err(ClientError::Reported(Box::new(e))),
        None => Ok(Exit::Ok),
    }
}

fn bar(bars: &MultiProgress, path: &Path, size: u64) -> ProgressBar {
    let bar = bars.add(ProgressBar::new(size));
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:20!} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar
}

async fn upload_one(
    api: &Api,
    state: &State,
    bars: &MultiProgress,
    path: &Path,
    chunk_size: usize,
) -> Result<serde_json::Value, ClientError> {
    let path = std::fs::canonicalize(path).map_err(|e| ClientError::io(path, e))?;
    let meta = std::fs::metadata(&path).map_err(|e| ClientError::io(&path, e))?;
    if !meta.is_file() {
        return Err(ClientError::Usage(format!(
            "{} is not a file",
            path.display()
        )));
    }
    let size = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let key = identity(api.server(), &path, size, mtime);

    let (url, mut offset) = match state.get(&key).await {
        Some(pending) => match offset_of(api, &pending.url).await? {
            Some(offset) => (pending.url, offset),
            // Expired or unknown on the server: start again.
            None => (create(api, state, &key, &path, size).await?, 0),
        },
        None => (create(api, state, &key, &path, size).await?, 0),
    };
    let resumed_from = offset;
    let progress = bar(bars, &path, size);
    progress.set_position(offset);
    progress.reset_eta();
    let started = Instant::now();
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ClientError::io(&path, e))?;
    let mut buf = vec![0u8; chunk_size];
    let mut completed: Option<(String, u64)> = None;
    if size == 0 {
        completed =
            Some(patch(api, &url, 0, &[]).await?.1.ok_or_else(|| {
                ClientError::Protocol("the empty upload did not complete".into())
            })?);
    }
    while offset < size {
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| ClientError::io(&path, e))?;
        let want = chunk_size.min((size - offset) as usize);
        file.read_exact(&mut buf[..want])
            .await
            .map_err(|e| ClientError::io(&path, e))?;
        let mut attempt = 0;
        let (next, done) = loop {
            attempt += 1;
            match patch(api, &url, offset, &buf[..want]).await {
                Ok(answer) => break answer,
                Err(e) if attempt < ATTEMPTS && (e.is_transient() || is_offset_conflict(&e)) => {
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                    // Where the server really is (a chunk may have landed before the error).
                    if let Some(at) = offset_of(api, &url).await?
                        && at != offset
                    {
                        break (at, None);
                    }
                }
                Err(e) => {
                    progress.abandon();
                    return Err(e);
                }
            }
        };
        offset = next;
        progress.set_position(offset);
        if done.is_some() {
            completed = done;
        }
    }
    let (file_id, version) = match completed {
        Some(done) => done,
        // The last chunk's answer was lost: the upload's state says what it became.
        None => completed_as(api, &url).await?,
    };
    progress.finish();
    state.set(&key, None).await?;
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    Ok(json!({
        "path": path,
        "file_id": file_id,
        "version": version,
        "bytes": size,
        "resumed_from": resumed_from,
        "seconds": secs,
        "mb_per_sec": (size - resumed_from) as f64 / 1e6 / secs,
    }))
}

fn is_offset_conflict(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { status, .. } if *status == StatusCode::CONFLICT)
}

/// `POST /v1/uploads`; the URL is remembered before any byte is sent.
async fn create(
    api: &Api,
    state: &State,
    key: &str,
    path: &Path,
    size: u64,
) -> Result<String, ClientError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let request = api
        .request(Method::POST, "/v1/uploads")?
        .header("tus-resumable", TUS)
        .header("upload-length", size)
        .header(
            "upload-metadata",
            format!("filename {}", STANDARD.encode(name)),
        );
    let response = api.send(request).await?;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ClientError::Protocol("no Location on the created upload".into()))?;
    let url = api.url(location);
    state.set(key, Some(Pending { url: url.clone() })).await?;
    Ok(url)
}

/// The server's offset of an upload, or `None` when it is gone (404, 410).
async fn offset_of(api: &Api, url: &str) -> Result<Option<u64>, ClientError> {
    let request = api.request(Method::HEAD, url)?.header("tus-resumable", TUS);
    match api.send(request).await {
        Ok(response) => Ok(Some(number(&response, "upload-offset")?)),
        Err(ClientError::Api { status, .. })
            if status == StatusCode::NOT_FOUND || status == StatusCode::GONE =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn completed_as(api: &Api, url: &str) -> Result<(String, u64), ClientError> {
    let request = api.request(Method::HEAD, url)?.header("tus-resumable", TUS);
    let response = api.send(request).await?;
    completion(&response)?.ok_or_else(|| ClientError::Protocol("the upload is not complete".into()))
}

fn number(response: &reqwest::Response, name: &str) -> Result<u64, ClientError> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("no {name} in the answer")))
}

/// The file id and version number of a completed upload, if it is.
fn completion(response: &reqwest::Response) -> Result<Option<(String, u64)>, ClientError> {
    let Some(id) = response.headers().get("chronicle-file-id") else {
        return Ok(None);
    };
    let id = id
        .to_str()
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    Ok(Some((
        id.to_string(),
        number(response, "chronicle-version-number")?,
    )))
}

/// One `PATCH`: the new offset, and what the upload became if this completed it.
async fn patch(
    api: &Api,
    url: &str,
    offset: u64,
    bytes: &[u8],
) -> Result<(u64, Option<(String, u64)>), ClientError> {
    let digest = STANDARD.encode(Sha256::digest(bytes));
    let request = api
        .request(Method::PATCH, url)?
        .header("tus-resumable", TUS)
        .header("upload-offset", offset)
        .header("content-type", "application/offset+octet-stream")
        .header("upload-checksum", format!("sha256 {digest}"))
        .body(bytes.to_vec());
    let response = api.send(request).await?;
    Ok((number(&response, "upload-offset")?, completion(&response)?))
}
