//! The large upload again, as tus: `POST /v1/uploads`, then `PATCH`es of 8 MiB (each
//! fsynced and recorded before its 204), with the server's RSS sampled, then followed
//! until the worker completes it. Same bytes as the multipart run, so the rates compare.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use sqlx::PgPool;

use super::http::Conn;
use super::large::settled;
use super::server::ServerProcess;
use super::{MIB, Pattern, RSS_EVERY, Row};

/// The PATCH size the issue asks to measure.
pub(super) const PATCH_BYTES: u64 = 8 * 1024 * 1024;

pub(super) struct TusResult {
    pub rows: Vec<Row>,
    pub completed: bool,
    /// The server's SHA-256 of the tus upload equals the multipart upload's.
    pub sha256: String,
    /// MB/s until the last 204.
    pub rate: f64,
}

pub(super) async fn tus_upload(
    server: &ServerProcess,
    owner: &PgPool,
    token: &str,
    len: u64,
) -> anyhow::Result<TusResult> {
    let pattern = Arc::new(Pattern::new());
    let baseline = server.rss()?;
    let sampler = server.sample_rss(RSS_EVERY);
    let mut conn = Conn::open(server.addr).await?;
    let started = Instant::now();
    let auth = format!("Authorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n");
    let created = conn
        .stream(
            &format!(
                "POST /v1/uploads HTTP/1.1\r\nHost: bench\r\n{auth}Upload-Length: {len}\r\nUpload-Metadata: filename bGFyZ2UtdHVzLmJpbg==\r\n"
            ),
            0,
            0,
            |_, _| {},
        )
        .await?;
    anyhow::ensure!(
        created.status == 201,
        "tus creation answered {}",
        created.status
    );
    let location = created
        .header("location")
        .context("tus creation gave no Location")?
        .to_string();
    let mut offset = 0u64;
    let mut patches = 0;
    let mut file_id = None;
    while offset < len {
        let n = PATCH_BYTES.min(len - offset);
        let head = format!(
            "PATCH {location} HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
        );
        let r = conn
            .stream(&head, offset, n, |off, buf| pattern.fill(off, buf))
            .await?;
        anyhow::ensure!(r.status == 204, "PATCH answered {}: {}", r.status, r.body);
        offset = r
            .header("upload-offset")
            .context("PATCH gave no Upload-Offset")?
            .parse()?;
        file_id = r.header("chronicle-file-id").map(String::from);
        patches += 1;
    }
    let elapsed = started.elapsed();
    let peak = sampler.take_peak().max(server.rss()?);
    drop(sampler);
    let file_id = file_id.context("the final PATCH gave no Chronicle-File-Id")?;
    let (status, sha256) = settled(owner, &file_id).await?;
    let rate = len as f64 / 1e6 / elapsed.as_secs_f64();
    let rows = vec![
        Row {
            name: "tus upload over loopback, 8 MiB PATCHes",
            value: rate,
            unit: "MB/s",
            note: format!(
                "{:.0} MiB in {patches} PATCHes, {:.2} s until the last 204 (each fsynced and recorded)",
                len as f64 / MIB,
                elapsed.as_secs_f64()
            ),
        },
        Row {
            name: "server RSS growth during the tus upload",
            value: peak.saturating_sub(baseline) as f64 / MIB,
            unit: "MiB",
            note: format!(
                "baseline {:.1} MiB, peak {:.1} MiB ({status})",
                baseline as f64 / MIB,
                peak as f64 / MIB
            ),
        },
    ];
    Ok(TusResult {
        rows,
        completed: status == "completed",
        sha256,
        rate,
    })
}
