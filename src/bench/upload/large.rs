//! The large upload: streamed over loopback while the server's RSS is sampled, beside
//! `sha256sum` of the same bytes, then followed until the worker completes it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::PgPool;

use super::http::{self, Conn};
use super::server::ServerProcess;
use super::{MIB, Pattern, RSS_EVERY, Row, SETTLE_TIMEOUT};

pub(super) struct LargeResult {
    pub rows: Vec<Row>,
    pub completed: bool,
    pub sha_matches: bool,
    /// What the server computed (the tus run must store the same bytes).
    pub sha256: String,
    /// The upload's MB/s until its 202.
    pub rate: f64,
}

pub(super) async fn large_upload(
    server: &ServerProcess,
    owner: &PgPool,
    token: &str,
    len: u64,
    work: &Path,
) -> anyhow::Result<LargeResult> {
    let pattern = Arc::new(Pattern::new());
    // The same bytes on disk for sha256sum, written before (not during) the upload.
    let file = work.join("large.bin");
    write_pattern(&pattern, &file, len).await?;
    let started = Instant::now();
    let out = tokio::process::Command::new("sha256sum")
        .arg(&file)
        .output()
        .await
        .context("sha256sum could not run")?;
    let sha_elapsed = started.elapsed();
    anyhow::ensure!(out.status.success(), "sha256sum failed");
    let expected = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let openssl = openssl_sha256(&file).await;
    tokio::fs::remove_file(&file).await?;
    let in_process = {
        let pattern = pattern.clone();
        tokio::task::spawn_blocking(move || sha2_in_process(&pattern, len)).await?
    };

    let baseline = server.rss()?;
    let sampler = server.sample_rss(RSS_EVERY);
    let mut conn = Conn::open(server.addr).await?;
    let started = Instant::now();
    let r = conn
        .upload(token, "large.bin", len, |off, buf| pattern.fill(off, buf))
        .await?;
    let upload_elapsed = started.elapsed();
    let upload_peak = sampler.take_peak().max(server.rss()?);
    anyhow::ensure!(r.status == 202, "upload answered {}: {}", r.status, r.body);
    let file_id = r.json()?["file_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let started = Instant::now();
    let (status, sha) = settled(owner, &file_id).await?;
    let processing = started.elapsed();
    let processing_peak = sampler.take_peak();
    drop(sampler);

    let mbps = |d: Duration| len as f64 / 1e6 / d.as_secs_f64();
    let (upload_rate, sha_rate) = (mbps(upload_elapsed), mbps(sha_elapsed));
    let growth = upload_peak.saturating_sub(baseline) as f64 / MIB;
    let worker_rate = mbps(processing);
    let limit_rate = mbps(in_process);
    let mut rows = vec![
        Row {
            name: "large upload over loopback",
            value: upload_rate,
            unit: "MB/s",
            note: format!(
                "{:.0} MiB in {:.2} s until 202 (bytes durable, event committed)",
                len as f64 / MIB,
                upload_elapsed.as_secs_f64()
            ),
        },
        Row {
            name: "sha256sum of the same bytes",
            value: sha_rate,
            unit: "MB/s",
            note: format!(
                "{:.2} s, page-cached file, same run",
                sha_elapsed.as_secs_f64()
            ),
        },
        Row {
            name: "upload / sha256sum",
            value: 100.0 * upload_rate / sha_rate,
            unit: "%",
            note: "target >= 70 %".into(),
        },
        Row {
            name: "server RSS growth during the upload",
            value: growth,
            unit: "MiB",
            note: format!(
                "baseline {:.1} MiB, peak {:.1} MiB, sampled every 20 ms; target < 64 MiB",
                baseline as f64 / MIB,
                upload_peak as f64 / MIB
            ),
        },
        Row {
            name: "worker: large upload to completed",
            value: processing.as_secs_f64(),
            unit: "s",
            note: format!(
                "hash, builtin scan, final storage, projection; peak RSS {:.1} MiB ({status})",
                processing_peak.max(upload_peak) as f64 / MIB
            ),
        },
        Row {
            name: "limit: SHA-256 in-process (sha2, one thread) of the same bytes",
            value: limit_rate,
            unit: "MB/s",
            note: format!("{:.2} s, same run", in_process.as_secs_f64()),
        },
        Row {
            name: "worker / SHA-256 in-process",
            value: 100.0 * worker_rate / limit_rate,
            unit: "%",
            note: format!("worker {worker_rate:.0} MB/s from 202 to completed; target >= 50 %"),
        },
    ];
    if let Some(elapsed) = openssl {
        rows.push(Row {
            name: "limit: openssl dgst -sha256 of the same bytes",
            value: mbps(elapsed),
            unit: "MB/s",
            note: format!(
                "{:.2} s, page-cached file; worker at {:.0} % of it",
                elapsed.as_secs_f64(),
                100.0 * worker_rate / mbps(elapsed)
            ),
        });
    }
    Ok(LargeResult {
        rows,
        completed: status == "completed",
        sha_matches: sha.eq_ignore_ascii_case(&expected),
        sha256: sha,
        rate: upload_rate,
    })
}

async fn write_pattern(pattern: &Arc<Pattern>, path: &Path, len: u64) -> anyhow::Result<()> {
    let (pattern, path) = (pattern.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut chunk = vec![0u8; http::CHUNK];
        let mut offset = 0u64;
        while offset < len {
            let n = chunk.len().min((len - offset) as usize);
            pattern.fill(offset, &mut chunk[..n]);
            out.write_all(&chunk[..n])?;
            offset += n as u64;
        }
        out.flush()
    })
    .await??;
    Ok(())
}

/// Waits until the file's first version has a final status; returns it and its SHA-256.
pub(super) async fn settled(owner: &PgPool, file_id: &str) -> anyhow::Result<(String, String)> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT status::text, sha256 FROM file_versions
              WHERE file_id = $1::uuid AND version_number = 1",
        )
        .bind(file_id)
        .fetch_optional(owner)
        .await?;
        if let Some((status, sha)) = row
            && ["completed", "duplicate", "virus_failed", "failed"].contains(&status.as_str())
        {
            return Ok((status, sha));
        }
        anyhow::ensure!(Instant::now() < deadline, "{file_id} did not settle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `openssl dgst -sha256` of `file`, if openssl is installed (it uses the CPU's SHA
/// extensions, unlike some `sha256sum` builds).
async fn openssl_sha256(file: &Path) -> Option<Duration> {
    let started = Instant::now();
    let out = tokio::process::Command::new("openssl")
        .args(["dgst", "-sha256"])
        .arg(file)
        .output()
        .await
        .ok()?;
    out.status.success().then(|| started.elapsed())
}

/// The `sha2` crate over the same bytes, 1 MiB at a time, on one thread: what the
/// worker's own hashing costs at best.
fn sha2_in_process(pattern: &Pattern, len: u64) -> Duration {
    use sha2::Digest;
    let mut buf = vec![0u8; 1024 * 1024];
    let mut hasher = sha2::Sha256::new();
    let started = Instant::now();
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(buf.len() as u64) as usize;
        pattern.fill(offset, &mut buf[..n]);
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    std::hint::black_box(hasher.finalize());
    started.elapsed()
}
