//! Many small uploads from 16 clients (accepted/s, completed/s end to end) and
//! `GET /v1/files/{id}` latency at 16 clients.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::http::Conn;
use super::server::ServerProcess;
use super::{CLIENTS, Pattern, Row, SETTLE_TIMEOUT, Sizes, percentile};
use crate::bench::cpu::CpuMeter;

pub(crate) const ACCEPTED: &str = "small uploads, 16 clients: accepted";
pub(crate) const COMPLETED: &str = "small uploads, 16 clients: completed";
pub(crate) const API_ALONE: &str = "small uploads, 16 clients, the API alone: accepted";
/// How often the bench looks whether every upload completed.
const COMPLETION_POLL: Duration = Duration::from_millis(10);

#[derive(Default)]
pub(super) struct SmallResult {
    pub rows: Vec<Row>,
    pub file_ids: Vec<String>,
    pub completed: usize,
}

pub(super) async fn small_uploads(
    server: &ServerProcess,
    owner: &PgPool,
    token: &str,
    sizes: &Sizes,
    limit: Row,
) -> anyhow::Result<SmallResult> {
    let n = sizes.small_uploads;
    let before = db_counters(owner).await?;
    let cpu = CpuMeter::start(&[("server", server.pid()), ("bench", std::process::id())]);
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let Burst {
        file_ids,
        latencies,
        elapsed: accepted_after,
    } = accept_burst(server, token, sizes, 0).await?;
    let accepting_cpu = cpu.stop().describe(n, "upload");

    let ids: Vec<uuid::Uuid> = file_ids
        .iter()
        .map(|id| id.parse())
        .collect::<Result<_, _>>()?;
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let completed = loop {
        let (completed, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'completed'),
                    count(*) FILTER (WHERE status IN ('duplicate', 'virus_failed', 'failed'))
               FROM file_versions WHERE file_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_one(owner)
        .await?;
        anyhow::ensure!(failed == 0, "{failed} small uploads did not complete");
        if completed as usize == n {
            break n;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {completed} of {n} small uploads completed in time"
        );
        // Polled only once every upload is accepted, so only the tail pays for it; each
        // poll is a query over the 1,000 rows (~1 ms) on the cores the server uses too.
        // Every 10 ms: at 50 ms the poll alone added 25 ms on average to a tail of
        // ~150 ms, a figure of the bench rather than of the pipeline.
        tokio::time::sleep(COMPLETION_POLL).await;
    };
    let completed_after = started.elapsed();
    let completing_cpu = cpu.stop().describe(n, "upload");
    // When the worker recorded the last of them (its transaction's start, same clock):
    // what `completed_after` adds beyond it is the files projector's lag and this poll's.
    let last_worker_commit: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(recorded_at) - $2)::float8 FROM events
          WHERE event_type = 'VersionCompleted' AND aggregate_type = 'file'
            AND aggregate_id = ANY($1)",
    )
    .bind(&file_ids)
    .bind(started_at)
    .fetch_one(owner)
    .await?;
    // Every transaction of the server (API, worker, projectors; read-only ones and
    // single statements count too) and of this poll; the statistics reach Postgres's
    // counters up to a second late, hence "about".
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = db_counters(owner).await?;
    let transactions_per_upload = (after.commits - before.commits) as f64 / n as f64;
    let rows_per_upload = (after.rows_written - before.rows_written) as f64 / n as f64;
    let accepted_rate = n as f64 / accepted_after.as_secs_f64();
    let completed_rate = n as f64 / completed_after.as_secs_f64();
    let limit_rate = limit.value;
    let rows = vec![
        limit,
        Row {
            name: ACCEPTED,
            value: accepted_rate,
            unit: "uploads/s",
            note: format!(
                "{n} x {} KiB in {:.2} s; {}; {accepting_cpu}",
                sizes.small_bytes / 1024,
                accepted_after.as_secs_f64(),
                describe_latencies(&latencies)
            ),
        },
        Row {
            name: COMPLETED,
            value: completed_rate,
            unit: "uploads/s",
            note: format!(
                "all {n} `completed` in file_versions after {:.2} s, the last recorded by the \
                 worker at {last_worker_commit:.2} s (WORKER_CONCURRENCY={}); \
                 about {transactions_per_upload:.1} Postgres transactions and \
                 {rows_per_upload:.0} rows written (inserted, updated, deleted) per upload, \
                 where the ingestion limit writes one; \
                 until then {completing_cpu}",
                completed_after.as_secs_f64(),
                sizes.worker_concurrency
            ),
        },
        Row {
            name: "small uploads: accepted / ingestion limit",
            value: 100.0 * accepted_rate / limit_rate,
            unit: "%",
            note: format!("{accepted_rate:.0} of {limit_rate:.0} uploads/s; target >= 60 %"),
        },
        Row {
            name: "small uploads: completed / accepted",
            value: 100.0 * completed_rate / accepted_rate,
            unit: "%",
            note: format!(
                "{completed_rate:.0} of {accepted_rate:.0} uploads/s; target >= 90 % (the worker keeps pace)"
            ),
        },
    ];
    Ok(SmallResult {
        rows,
        file_ids,
        completed,
    })
}

/// The same burst of small uploads against the API alone (a `web` server: nothing
/// projected, nothing processed), beside the same ingestion limit: the most the
/// accepting half of the pipeline gets out of the machine once the other half runs
/// elsewhere, and so the ceiling for `ACCEPTED` on a machine that runs both
/// (docs/benchmarks.md, "Small files: the API alone, and what recording less buys").
pub(super) async fn api_alone(
    server: &ServerProcess,
    token: &str,
    sizes: &Sizes,
    limit: f64,
) -> anyhow::Result<Vec<Row>> {
    let n = sizes.small_uploads;
    let cpu = CpuMeter::start(&[("server", server.pid()), ("bench", std::process::id())]);
    // Other bytes than the pipeline's burst: these stay uploaded, never hashed.
    let burst = accept_burst(server, token, sizes, n).await?;
    let cpu = cpu.stop().describe(n, "upload");
    let rate = n as f64 / burst.elapsed.as_secs_f64();
    Ok(vec![
        Row {
            name: API_ALONE,
            value: rate,
            unit: "uploads/s",
            note: format!(
                "{n} x {} KiB to `chronicle web` (no projectors, no worker) in {:.2} s; {}; {cpu}",
                sizes.small_bytes / 1024,
                burst.elapsed.as_secs_f64(),
                describe_latencies(&burst.latencies)
            ),
        },
        Row {
            name: "small uploads, the API alone: accepted / ingestion limit",
            value: 100.0 * rate / limit,
            unit: "%",
            note: format!(
                "{rate:.0} of {limit:.0} uploads/s: the ceiling of `accepted / ingestion limit` \
                 on one machine, reached only if projecting and processing cost nothing"
            ),
        },
    ])
}

/// The accepted half of a run of small uploads.
struct Burst {
    file_ids: Vec<String>,
    /// Each upload's time to its `202`, in milliseconds, sorted.
    latencies: Vec<f64>,
    /// From the first upload sent to the last `202`.
    elapsed: Duration,
}

/// `sizes.small_uploads` uploads of `sizes.small_bytes` distinct bytes each from 16
/// keep-alive clients, each required to answer `202`. `first` numbers the uploads (their
/// names and bytes), so two bursts of one run upload different files.
async fn accept_burst(
    server: &ServerProcess,
    token: &str,
    sizes: &Sizes,
    first: usize,
) -> anyhow::Result<Burst> {
    let (n, len) = (sizes.small_uploads, sizes.small_bytes);
    let pattern = Arc::new(Pattern::new());
    let next = Arc::new(AtomicUsize::new(first));
    let accepted = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let token = Arc::new(token.to_string());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (pattern, next, accepted, token) = (
            pattern.clone(),
            next.clone(),
            accepted.clone(),
            token.clone(),
        );
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= first + n {
                    return Ok::<_, anyhow::Error>(());
                }
                let sent = Instant::now();
                let r = conn
                    .upload(&token, &format!("small-{i}.bin"), len as u64, |off, buf| {
                        // Distinct bytes per upload: identical ones would settle as duplicates.
                        pattern.fill(off + (i as u64) * 4096, buf);
                        if off == 0 {
                            let stamp = (i as u64).to_le_bytes();
                            let k = stamp.len().min(buf.len());
                            buf[..k].copy_from_slice(&stamp[..k]);
                        }
                    })
                    .await?;
                let ms = sent.elapsed().as_secs_f64() * 1e3;
                anyhow::ensure!(r.status == 202, "upload answered {}: {}", r.status, r.body);
                let id = r.json()?["file_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                accepted.lock().expect("not poisoned").push((id, ms));
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let accepted = std::mem::take(&mut *accepted.lock().expect("not poisoned"));
    let (file_ids, mut latencies): (Vec<String>, Vec<f64>) = accepted.into_iter().unzip();
    latencies.sort_by(f64::total_cmp);
    Ok(Burst {
        file_ids,
        latencies,
        elapsed,
    })
}

fn describe_latencies(sorted: &[f64]) -> String {
    format!(
        "202 latency p50 {:.1} ms, p99 {:.1} ms",
        percentile(sorted, 50),
        percentile(sorted, 99)
    )
}

/// The bench database's counters so far (PostgreSQL's statistics, as `pg_stat_database`
/// shows them): what the pipeline costs in transactions and in rows, the units the
/// ingestion limit pays one of per file.
struct DbCounters {
    commits: i64,
    rows_written: i64,
}

async fn db_counters(owner: &PgPool) -> anyhow::Result<DbCounters> {
    let mut conn = owner.acquire().await?;
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await?;
    let (commits, rows_written): (i64, i64) = sqlx::query_as(
        "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted
           FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(DbCounters {
        commits,
        rows_written,
    })
}

/// `requests` GETs of the files in `ids` (round robin) from 16 keep-alive clients;
/// returns each request's latency in milliseconds.
pub(super) async fn get_latencies(
    addr: SocketAddr,
    token: &str,
    ids: &Arc<Vec<String>>,
    requests: usize,
) -> anyhow::Result<Vec<f64>> {
    anyhow::ensure!(!ids.is_empty(), "no files to read");
    let next = Arc::new(AtomicUsize::new(0));
    let token = Arc::new(token.to_string());
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (next, ids, token) = (next.clone(), ids.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut ms = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return Ok::<_, anyhow::Error>(ms);
                }
                let path = format!("/v1/files/{}", ids[i % ids.len()]);
                let sent = Instant::now();
                let r = conn.request("GET", &path, Some(&token), "").await?;
                ms.push(sent.elapsed().as_secs_f64() * 1e3);
                anyhow::ensure!(r.status == 200, "GET {path} answered {}", r.status);
            }
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}
