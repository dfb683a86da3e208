//! `chronicle bench all`: every throughput benchmark in one run (scan, upload, store,
//! auth, reads — each prints its own table), then the speed targets in one table: each figure
//! beside the limit measured in the same run, the ratio and the target. The limits come
//! from the same run because the machine's speed changes with its neighbours' load.

use super::store::{Row, print};
use super::{auth, reads, scan, store, upload};
use crate::config::Config;

/// One target: the figure, its limit and what the ratio must reach.
struct Target {
    path: &'static str,
    figure: &'static str,
    limit: &'static str,
    goal: &'static str,
}

const TARGETS: [Target; 11] = [
    Target {
        path: "builtin scanner alone, random bytes",
        figure: "builtin scanner, random bytes in memory",
        limit: "limit: SHA-256 (sha2, one thread) of the same bytes",
        goal: "≥ 1000 MB/s",
    },
    Target {
        path: "1 GiB from 202 to completed (builtin scanner)",
        figure: "worker: large upload to completed",
        limit: "limit: SHA-256 in-process (sha2, one thread) of the same bytes",
        goal: "≥ 50 %",
    },
    Target {
        path: "tus 1 GiB in 8 MiB PATCHes vs multipart",
        figure: "tus upload over loopback, 8 MiB PATCHes",
        limit: "large upload over loopback",
        goal: "≥ 80 %",
    },
    Target {
        path: "1,000 × 10 KiB: accepted vs ingestion limit",
        figure: upload::ACCEPTED,
        limit: upload::INGESTION_LIMIT,
        goal: "≥ 60 %",
    },
    Target {
        path: "1,000 × 10 KiB: completed vs accepted",
        figure: upload::COMPLETED,
        limit: upload::ACCEPTED,
        goal: "≥ 90 %",
    },
    Target {
        path: "1,000 × 10 KiB to the API alone (`web`): accepted vs ingestion limit",
        figure: upload::API_ALONE,
        limit: upload::INGESTION_LIMIT,
        goal: "none: the ceiling of the ≥ 60 % above",
    },
    Target {
        path: "GET /v1/files/{id} vs GET /health, 16 connections",
        figure: reads::FILE,
        limit: reads::HEALTH,
        goal: "≥ 40 %, p99 ≤ 10 ms",
    },
    Target {
        path: "GET /v1/me vs GET /health, 16 connections",
        figure: reads::ME,
        limit: reads::HEALTH,
        goal: "≥ 40 %, p99 ≤ 10 ms",
    },
    Target {
        path: "GET /v1/files?limit=20 vs GET /health, 16 connections",
        figure: reads::LIST,
        limit: reads::HEALTH,
        goal: "≥ 40 %, p99 ≤ 10 ms",
    },
    Target {
        path: "event store W1 vs cqrs-es default",
        figure: "W1 10k new streams x 1 event, 16 clients",
        limit: "Baseline postgres_cqrs W1",
        goal: "≥ 150 %",
    },
    Target {
        path: "event store W2 vs cqrs-es default",
        figure: "W2 200 streams x 50 commands, 16 in flight",
        limit: "Baseline postgres_cqrs W2",
        goal: "≥ 150 %",
    },
];

pub async fn run(config: &Config) -> anyhow::Result<()> {
    let mut rows = tokio::task::spawn_blocking(|| scan::run(256, 3)).await??;
    print(&rows);
    let exe = std::env::current_exe()?;
    let target = upload::Target {
        server_url: config.database_url.expose(),
        database: "chronicle_bench_upload",
        redis_url: config.redis_url.expose(),
        exe: &exe,
    };
    let outcome = upload::run(&target, &upload::Sizes::ISSUE).await?;
    print(&outcome.rows);
    rows.extend(outcome.rows);
    let store_rows = store::run(config.database_url.expose(), config.snapshot_every).await?;
    print(&store_rows);
    rows.extend(store_rows);
    let auth_rows = auth::run(config.database_url.expose()).await?;
    print(&auth_rows);
    rows.extend(auth_rows);
    let read_rows = reads::run(config.database_url.expose(), None, 10).await?;
    print(&read_rows);
    rows.extend(read_rows);

    println!();
    println!("| path | figure | limit (same run) | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    for t in &TARGETS {
        let (Some(figure), Some(limit)) = (find(&rows, t.figure), find(&rows, t.limit)) else {
            println!("| {} | — | — | — | {} |", t.path, t.goal);
            continue;
        };
        let (value, unit) = rate(figure);
        let (limit_value, limit_unit) = rate(limit);
        println!(
            "| {} | {value:.0} {unit} | {limit_value:.0} {limit_unit} | {:.0} % | {} |",
            t.path,
            100.0 * value / limit_value,
            t.goal
        );
    }
    Ok(())
}

fn find<'a>(rows: &'a [Row], name: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.name == name)
}

/// A row as a rate (higher is better). The only row in seconds here is the worker's
/// time for the large upload: its bytes over its seconds.
fn rate(row: &Row) -> (f64, &'static str) {
    if row.unit == "s" {
        let bytes = upload::Sizes::ISSUE.large_bytes as f64;
        return (bytes / 1e6 / row.value, "MB/s");
    }
    (row.value, row.unit)
}
