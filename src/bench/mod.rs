//! Benchmarks (`chronicle bench …`). Figures go in docs/benchmarks.md; targets are
//! checked by reading the table, never by timed tests.

mod all;
mod audit;
mod auth;
mod cpu;
mod feed;
mod reads;
mod scan;
mod store;
mod tlog;
pub mod upload;
mod work_dir;

use clap::Subcommand;

use crate::config::Config;

/// The per-minute rate limits a bench's server runs with: high enough that no run on a
/// fast machine reaches them (16 connections at 40,000 requests/s make 2.4 million a
/// minute), while each request still pays for the check.
const NO_RATE_LIMIT: &str = "1000000000";

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Scan, uploads, event store and accounts in one go, then one table of the speed
    /// targets: each figure beside its limit measured in the same run, and the ratio.
    All,
    /// Event store: W1–W4, the plain-INSERT limit L1 and the cqrs-es baseline.
    Store,
    /// Accounts: login latency, authenticated request throughput, per-request auth cost.
    Auth,
    /// Authenticated reads (`GET /v1/files/{id}`, `/v1/me`, `/v1/files?limit=20`) beside
    /// `GET /health` from the same 16 connections in the same run: req/s, p50, p99.
    Reads {
        /// A server already running (http://ip:port) instead of one started here.
        #[arg(long)]
        url: Option<String>,
        /// Seconds of load per route.
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
    /// The builtin scanner alone over random bytes in memory, beside SHA-256 of the same
    /// bytes, and a deflate bomb stopped at the archive limit.
    Scan {
        #[arg(long, default_value_t = 256)]
        mib: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Uploads: 1 GiB over loopback vs sha256sum with the server's RSS, 1,000 small
    /// uploads from 16 clients end to end beside the ingestion limit measured in the same
    /// run, file reads with the cache on and off.
    Upload {
        /// Only the small uploads and their ingestion limit (about 10 s).
        #[arg(long)]
        small_only: bool,
        /// Only the 1 GiB upload, multipart then tus, and their ratio (about 30 s).
        #[arg(long, conflicts_with = "small_only")]
        large_only: bool,
        /// The server's `WORKER_CONCURRENCY` (default: the server's default).
        #[arg(long)]
        worker_concurrency: Option<usize>,
    },
    /// History: seed N events with valid chains, then NDJSON export (events/s, peak RSS),
    /// a signed checkpoint and `audit verify` (events/s).
    Audit {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
    },
    /// Feed: catch-up of N events by pages of 1,000 (unfiltered and filtered) beside a
    /// plain SELECT of the same rows.
    Feed {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
    },
    /// Transparency log: N events of one tenant, the tree built (cost and storage per
    /// event), a head signed, 1,000 inclusion and consistency proofs (latency, size).
    Tlog {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
    },
}

pub async fn run(command: BenchCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        BenchCommand::Store => {
            let rows = store::run(config.database_url.expose(), config.snapshot_every).await?;
            store::print(&rows);
        }
        BenchCommand::Auth => {
            let rows = auth::run(config.database_url.expose()).await?;
            store::print(&rows);
        }
        BenchCommand::Reads { url, secs } => {
            let rows = reads::run(config.database_url.expose(), url.as_deref(), secs).await?;
            store::print(&rows);
        }
        BenchCommand::Scan { mib, runs } => {
            let rows = tokio::task::spawn_blocking(move || scan::run(mib, runs)).await??;
            store::print(&rows);
        }
        BenchCommand::Audit { events } => {
            let rows = audit::run(config.database_url.expose(), events).await?;
            store::print(&rows);
        }
        BenchCommand::Feed { events } => {
            let rows = feed::run(config.database_url.expose(), events).await?;
            store::print(&rows);
        }
        BenchCommand::Tlog { events } => {
            let rows = tlog::run(config.database_url.expose(), events).await?;
            store::print(&rows);
        }
        BenchCommand::All => all::run(config).await?,
        BenchCommand::Upload {
            small_only,
            large_only,
            worker_concurrency,
        } => {
            let exe = std::env::current_exe()?;
            let target = upload::Target {
                server_url: config.database_url.expose(),
                database: "chronicle_bench_upload",
                redis_url: config.redis_url.expose(),
                exe: &exe,
            };
            let mut sizes = if small_only {
                upload::Sizes::SMALL_ONLY
            } else if large_only {
                upload::Sizes::LARGE_ONLY
            } else {
                upload::Sizes::ISSUE
            };
            if let Some(n) = worker_concurrency {
                sizes.worker_concurrency = n;
            }
            let outcome = upload::run(&target, &sizes).await?;
            store::print(&outcome.rows);
            // (Every small upload completed: `run` fails otherwise.)
            if small_only {
                return Ok(());
            }
            anyhow::ensure!(
                outcome.large_completed && outcome.large_sha_matches,
                "the large upload did not complete with sha256sum's digest"
            );
            anyhow::ensure!(
                outcome.tus_matches,
                "the tus upload did not complete with the multipart upload's digest"
            );
        }
    }
    Ok(())
}
