//! `download`: streams a file's content to `<out>.part`, resuming a partial one with
//! `Range` + `If-Range` (the ETag it started with, kept beside it), then checks the
//! whole file's SHA-256 against the ETag and only then renames it into place. A
//! mismatch keeps nothing and exits 1.

use std::path::{Path, PathBuf};

use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::{Api, ClientError, Exit, output};

#[derive(Args, Debug)]
pub struct DownloadArgs {
    pub file_id: Uuid,
    /// Where to write (default: the file's name in the current directory).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// A version number instead of the current version.
    #[arg(long)]
    pub version: Option<u32>,
}

fn part_paths(out: &Path) -> (PathBuf, PathBuf) {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (
        out.with_file_name(format!("{name}.part")),
        out.with_file_name(format!("{name}.part.etag")),
    )
}

/// The SHA-256 an ETag names: `"<64 hex>"` (a metadata-stripped variant has a suffix
/// and names the original's hash, so it cannot be checked against these bytes).
fn etag_sha256(etag: &str) -> Option<String> {
    let inner = etag.trim().trim_start_matches("W/").trim_matches('"');
    (inner.len() == 64 && inner.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| inner.to_ascii_lowercase())
}

pub async fn run(api: &Api, args: DownloadArgs, json: bool) -> Result<Exit, ClientError> {
    let path = match args.version {
        Some(n) => format!("/v1/files/{}/versions/{n}/content", args.file_id),
        None => format!("/v1/files/{}/content", args.file_id),
    };
    let out = match args.output {
        Some(out) => out,
        None => {
            let info = api.get_json(&format!("/v1/files/{}", args.file_id)).await?;
            let name = info["display_name"].as_str().unwrap_or("download");
            // Only the last component: a name never chooses the directory.
            PathBuf::from(
                Path::new(name)
                    .file_name()
                    .unwrap_or_else(|| "download".as_ref()),
            )
        }
    };
    let (part, etag_file) = part_paths(&out);
    // Two tries at most: a part of another version (the ETag changed) is thrown away.
    let mut attempt = 0;
    let (response, resumed, etag, have) = loop {
        attempt += 1;
        let have = tokio::fs::metadata(&part)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let known_etag = std::fs::read_to_string(&etag_file).ok();
        let mut request = api.request(Method::GET, &path)?;
        if let (true, Some(etag)) = (have > 0, known_etag.as_deref()) {
            request = request
                .header("range", format!("bytes={have}-"))
                .header("if-range", etag.trim());
        }
        let response = match api.send(request).await {
            // The part was already whole: nothing left to fetch.
            Err(ClientError::Api { status, .. })
                if status == StatusCode::RANGE_NOT_SATISFIABLE && attempt == 1 =>
            {
                let etag = known_etag.unwrap_or_default();
                return finish(&part, &etag_file, &out, &etag, 0, json).await;
            }
            other => other?,
        };
        let resumed = response.status() == StatusCode::PARTIAL_CONTENT;
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if resumed && known_etag.as_deref().map(str::trim) != Some(etag.as_str()) {
            if attempt > 1 {
                return Err(ClientError::Protocol("the file keeps changing".into()));
            }
            let _ = std::fs::remove_file(&part);
            let _ = std::fs::remove_file(&etag_file);
            continue;
        }
        break (response, resumed, etag, have);
    };
    std::fs::write(&etag_file, &etag).map_err(|e| ClientError::io(&etag_file, e))?;
    let start = if resumed { have } else { 0 };
    let total = start + response.content_length().unwrap_or(0);
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if json {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "[{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_position(start);
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .await
        .map_err(|e| ClientError::io(&part, e))?;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        file.write_all(&chunk)
            .await
            .map_err(|e| ClientError::io(&part, e))?;
        bar.inc(chunk.len() as u64);
    }
    file.flush().await.map_err(|e| ClientError::io(&part, e))?;
    file.sync_all()
        .await
        .map_err(|e| ClientError::io(&part, e))?;
    bar.finish_and_clear();
    let fetched = bar.position() - start;
    finish(&part, &etag_file, &out, &etag, fetched, json).await
}

/// Hashes the whole part, compares it with the ETag, and renames it into place.
async fn finish(
    part: &Path,
    etag_file: &Path,
    out: &Path,
    etag: &str,
    fetched: u64,
    json: bool,
) -> Result<Exit, ClientError> {
    // The whole file, hashed from its first byte: the part may be from an earlier run.
    let mut file = tokio::fs::File::open(part)
        .await
        .map_err(|e| ClientError::io(part, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| ClientError::io(part, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let actual = hex::encode(hasher.finalize());
    let expected = etag_sha256(etag);
    if let Some(expected) = &expected
        && *expected != actual
    {
        let _ = std::fs::remove_file(part);
        let _ = std::fs::remove_file(etag_file);
        output(
            json,
            &json!({"error": {"code": "checksum_mismatch", "expected": expected, "actual": actual}}),
            || format!("SHA-256 mismatch: expected {expected}, got {actual}; nothing kept"),
        );
        return Ok(Exit::CheckFailed(
            "the download does not match its SHA-256".into(),
        ));
    }
    std::fs::rename(part, out).map_err(|e| ClientError::io(out, e))?;
    let _ = std::fs::remove_file(etag_file);
    output(
        json,
        &json!({"path": out, "bytes": size, "fetched": fetched, "sha256": actual, "verified": expected.is_some()}),
        || {
            format!(
                "{}  {size} bytes  sha256 {actual} {}",
                out.display(),
                if expected.is_some() {
                    "(verified)"
                } else {
                    "(not verifiable: the ETag names no SHA-256 of these bytes)"
                }
            )
        },
    );
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_sha256_etag_is_checkable() {
        let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(etag_sha256(&format!("\"{sha}\"")).as_deref(), Some(sha));
        assert_eq!(etag_sha256(&format!("\"{sha}-stripped\"")), None);
        assert_eq!(etag_sha256(""), None);
    }
}
