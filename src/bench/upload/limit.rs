//! The ingestion limit for small files, measured in the same run as the uploads: the
//! least an upload that is durable when answered must do — write the bytes to a file
//! and fsync it, then commit one row in Postgres — from the same 16 clients, with no
//! HTTP, no multipart parsing, no hashing and no event log. Accepted uploads/s are
//! compared with it, because the machine's speed changes with its neighbours' load.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::{CLIENTS, Pattern, Row};
use crate::bench::cpu::CpuMeter;
use crate::db::{self, DbRole};

pub(crate) const NAME: &str = "small files: ingestion limit, 16 tasks";

/// `n` files of `len` bytes under `dir`, each written, fsynced and recorded by one
/// single-row INSERT (its own commit), from 16 tasks. The table is dropped afterwards.
pub(super) async fn ingestion_limit(
    url: &str,
    dir: &Path,
    n: usize,
    len: usize,
) -> anyhow::Result<Row> {
    // One connection per task, as the server's pool gives each request its own.
    let owner = &db::pool(url, DbRole::Owner, CLIENTS as u32).await?;
    sqlx::query(
        "CREATE TABLE bench_ingestion_limit (
             id uuid PRIMARY KEY, name text NOT NULL, size_bytes bigint NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(owner)
    .await?;
    tokio::fs::create_dir_all(dir).await?;
    let pattern = Arc::new(Pattern::new());
    let next = Arc::new(AtomicUsize::new(0));
    let cpu = CpuMeter::start(&[("bench", std::process::id())]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (pattern, next, pool) = (pattern.clone(), next.clone(), owner.clone());
        let dir = dir.to_path_buf();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let name = format!("small-{i}.bin");
                let path = dir.join(&name);
                let pattern = pattern.clone();
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    use std::io::Write;
                    let mut bytes = vec![0; len];
                    pattern.fill((i as u64) * 4096, &mut bytes);
                    let mut file = std::fs::File::create(path)?;
                    file.write_all(&bytes)?;
                    file.sync_all()
                })
                .await??;
                sqlx::query(
                    "INSERT INTO bench_ingestion_limit (id, name, size_bytes) VALUES ($1, $2, $3)",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(name)
                .bind(len as i64)
                .execute(&pool)
                .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let cpu = cpu.stop().describe(n, "upload");
    sqlx::query("DROP TABLE bench_ingestion_limit")
        .execute(owner)
        .await?;
    owner.close().await;
    // The files stay until the whole bench's work directory is removed, after the
    // uploads: on ext4 without a journal, an inode freed in the last minute is skipped
    // by the allocator only after reading its dtime, so 1,000 deletions here made every
    // upload's file creation that follows scan past them (13 % of the machine's CPU in
    // the upload phase went to `recently_deleted` and its buffer lookups).
    Ok(Row {
        name: NAME,
        value: n as f64 / elapsed.as_secs_f64(),
        unit: "uploads/s",
        note: format!(
            "{n} x {} KiB: write + fsync a file, then one single-row INSERT (its own commit); {:.2} s; {cpu}",
            len / 1024,
            elapsed.as_secs_f64()
        ),
    })
}
