//! `chronicle bench store`: the event store's workloads W1–W4 (W4 for every projector),
//! the plain-INSERT limit L1 and cqrs-es's own default Postgres setup as a baseline, in
//! throwaway databases on the configured Postgres server. Prints one markdown table.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cqrs_es::{Aggregate, EventStore};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::aggregates::{File, FileCommand, FileEvent};
use crate::commands;
use crate::db::{self, DbRole};
use crate::ids::{TenantId, UserId};
use crate::projections::{self, runtime};
use crate::store::{Actor, ChronicleStore, EventLog, EventMetadata};

const CLIENTS: usize = 16;
const W1_STREAMS: usize = 10_000;
const W2_STREAMS: usize = 200;
const W2_COMMANDS: usize = 50;
const W3_EVENTS: usize = 10_000;
const W4_EVENTS: i64 = 100_000;

pub struct Row {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub note: String,
}

/// A display name that makes the FileCreated payload about 200 bytes, as the issue asks.
fn display_name(i: usize) -> String {
    format!("{i:08}-{}", "quarterly-report-draft-".repeat(6))
}

fn create(i: usize) -> FileCommand {
    FileCommand::Create {
        owner_id: UserId::new(),
        display_name: display_name(i),
    }
}

/// Runs `jobs` items over `clients` concurrent workers; returns the elapsed time.
async fn run_concurrently<F, Fut>(clients: usize, jobs: usize, job: F) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (job, next) = (job.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    return Ok::<_, anyhow::Error>(());
                }
                job(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

fn per_second(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

/// `server_url` naming database `name` instead, its parameters (`?sslmode=…`) kept.
fn with_database(server_url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(server_url)?;
    anyhow::ensure!(url.path().len() > 1, "DATABASE_URL must name a database");
    url.set_path(name);
    Ok(url.into())
}

pub(super) async fn fresh_database(server_url: &str, name: &str) -> anyhow::Result<String> {
    let url = with_database(server_url, name)?;
    drop_database(server_url, name).await?;
    db::ensure_database(&url).await?;
    Ok(url)
}

pub(super) async fn drop_database(server_url: &str, name: &str) -> anyhow::Result<()> {
    let admin = with_database(server_url, "postgres")?;
    let pool = PgPool::connect(&admin).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

pub async fn run(server_url: &str, snapshot_every: u64) -> anyhow::Result<Vec<Row>> {
    let url = fresh_database(server_url, "chronicle_bench").await?;
    db::migrate(&url).await?;
    let app = db::pool(&url, DbRole::App, CLIENTS as u32 + 2).await?;
    let worker = db::pool(&url, DbRole::Worker, 4).await?;
    let tenant = TenantId::new();
    let store = ChronicleStore::<File>::new(EventLog::new(app.clone()), tenant, snapshot_every);
    let mut rows = Vec::new();

    // L1: the limit — single-row INSERTs of the same rows, no load, no hashing.
    let sample_payload = serde_json::to_string(&FileEvent::FileCreated {
        owner_id: UserId::new(),
        display_name: display_name(0),
    })?;
    let payload_bytes = sample_payload.len();
    let l1 = {
        let pool = app.clone();
        let payload = sample_payload.clone();
        let meta =
            serde_json::to_string(&EventMetadata::system(tenant, Actor::System("bench")).to_map())?;
        run_concurrently(CLIENTS, W1_STREAMS, move |i| {
            let (pool, payload, meta) = (pool.clone(), payload.clone(), meta.clone());
            async move {
                sqlx::query(
                    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, tenant_id)
                     VALUES ('l1', $1, 1, 'FileCreated', '1', $2::json, $3::json, $4)",
                )
                .bind(format!("l1-{i}"))
                .bind(payload)
                .bind(meta)
                .bind(tenant.0)
                .execute(&pool)
                .await?;
                Ok(())
            }
        })
        .await?
    };
    let l1_rate = per_second(W1_STREAMS, l1);
    rows.push(Row {
        name: "L1 plain INSERT, 16 clients",
        value: l1_rate,
        unit: "rows/s",
        note: format!("{payload_bytes}-byte payloads"),
    });

    // W1: new streams, one event each, through the full command path.
    let w1 = {
        let store = store.clone();
        run_concurrently(CLIENTS, W1_STREAMS, move |i| {
            let store = store.clone();
            async move {
                let m = EventMetadata::system(store.tenant(), Actor::System("bench"));
                commands::execute(&store, &format!("w1-{i}"), create(i), &m, &()).await?;
                Ok(())
            }
        })
        .await?
    };
    let w1_rate = per_second(W1_STREAMS, w1);
    rows.push(Row {
        name: "W1 10k new streams x 1 event, 16 clients",
        value: w1_rate,
        unit: "events/s",
        note: format!("{:.0} % of L1", 100.0 * w1_rate / l1_rate),
    });

    // W2: load + append, each stream driven by one client at a time.
    let w2 = {
        let store = store.clone();
        run_concurrently(CLIENTS, W2_STREAMS, move |s| {
            let store = store.clone();
            async move { w2_stream(&store, s).await }
        })
        .await?
    };
    let w2_rate = per_second(W2_STREAMS * W2_COMMANDS, w2);
    rows.push(Row {
        name: "W2 200 streams x 50 commands, 16 in flight",
        value: w2_rate,
        unit: "commands/s",
        note: format!("SNAPSHOT_EVERY={snapshot_every}"),
    });

    // W3: loading a long stream, with and without its snapshot.
    let long_id = "w3-long";
    build_long_stream(&store, long_id, W3_EVENTS).await?;
    let with = median_ms(20, || async {
        store.load_aggregate(long_id).await.map(|_| ())
    })
    .await?;
    let without = median_ms(20, || async {
        store.load_full_replay(long_id).await.map(|_| ())
    })
    .await?;
    rows.push(Row {
        name: "W3 load 10k-event stream, with snapshot",
        value: with,
        unit: "ms (median of 20)",
        note: String::new(),
    });
    rows.push(Row {
        name: "W3 load 10k-event stream, full replay",
        value: without,
        unit: "ms (median of 20)",
        note: String::new(),
    });

    // W4: projector catch-up over the log (topped up to at least 100k events).
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app)
        .await?;
    if existing < W4_EVENTS {
        bulk_events(&url, tenant, W4_EVENTS - existing, &sample_payload).await?;
    }
    // So the first projector does not pay for setting hint bits on the fresh rows.
    let owner = db::pool(&url, DbRole::Owner, 1).await?;
    sqlx::query("VACUUM (ANALYZE) events")
        .execute(&owner)
        .await?;
    owner.close().await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app)
        .await?;
    // Every projector Chronicle runs, one after the other over the same log. The domain
    // projectors skip the streams that are not theirs (the bulk rows), as they skip
    // other aggregates' events in production.
    let projectors = projections::all();
    runtime::register(&worker, &projectors).await?;
    for p in &projectors {
        let started = Instant::now();
        let applied = runtime::catch_up(&worker, p.as_ref()).await?;
        let elapsed = started.elapsed();
        rows.push(Row {
            name: "W4 catch-up",
            value: per_second(applied, elapsed),
            unit: "events/s",
            note: format!("`{}`: {applied} events of {total}", p.name()),
        });
    }
    app.close().await;
    worker.close().await;
    drop_database(server_url, "chronicle_bench").await?;

    // Baseline: cqrs-es 0.5's own Postgres setup (postgres_cqrs, no snapshots).
    let (b1, b2) = baseline(server_url).await?;
    rows.push(Row {
        name: "Baseline postgres_cqrs W1",
        value: b1,
        unit: "events/s",
        note: format!("ours is {:.2}x", w1_rate / b1),
    });
    rows.push(Row {
        name: "Baseline postgres_cqrs W2",
        value: b2,
        unit: "commands/s",
        note: format!("ours is {:.2}x", w2_rate / b2),
    });
    Ok(rows)
}

fn w2_command(c: usize) -> FileCommand {
    match c % 3 {
        0 => FileCommand::Tag {
            tag: format!("t{}", c % 7),
        },
        1 => FileCommand::Untag {
            tag: format!("t{}", (c + 3) % 7),
        },
        _ => FileCommand::Rename {
            display_name: display_name(c),
        },
    }
}

async fn w2_stream(store: &ChronicleStore<File>, s: usize) -> anyhow::Result<()> {
    let id = format!("w2-{s}");
    let m = EventMetadata::system(store.tenant(), Actor::System("bench"));
    commands::execute(store, &id, create(s), &m, &()).await?;
    for c in 1..W2_COMMANDS {
        commands::execute(store, &id, w2_command(c), &m, &()).await?;
    }
    Ok(())
}

/// Appends `n` Renamed events to one stream, 500 per commit, through the store.
async fn build_long_stream(store: &ChronicleStore<File>, id: &str, n: usize) -> anyhow::Result<()> {
    let m = EventMetadata::system(store.tenant(), Actor::System("bench"));
    commands::execute(store, id, create(0), &m, &()).await?;
    let mut written = 1;
    while written < n {
        let mut ctx = store.load_aggregate(id).await?;
        let events: Vec<FileEvent> = (written..(written + 500).min(n))
            .map(|i| FileEvent::Renamed {
                display_name: display_name(i),
            })
            .collect();
        for e in &events {
            ctx.aggregate.apply(e.clone());
        }
        written += events.len();
        store.commit(events, ctx, m.to_map()).await?;
    }
    Ok(())
}

async fn median_ms<F, Fut, E>(runs: usize, f: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    f().await?; // warm the connection and caches
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        f().await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[runs / 2])
}

/// Fills the log quickly (set-based INSERT) so W4 has enough to chew on.
async fn bulk_events(url: &str, tenant: TenantId, n: i64, payload: &str) -> anyhow::Result<()> {
    let owner = db::pool(url, DbRole::Owner, 1).await?;
    let meta =
        serde_json::to_string(&EventMetadata::system(tenant, Actor::System("bench")).to_map())?;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, tenant_id)
         SELECT 'bulk', 'bulk-' || (g / 10), g % 10 + 1, 'FileCreated', '1', $2::json, $3::json, $4
           FROM generate_series(0, $1 - 1) AS g",
    )
    .bind(n)
    .bind(payload)
    .bind(meta)
    .bind(tenant.0)
    .execute(&owner)
    .await?;
    owner.close().await;
    Ok(())
}

/// cqrs-es's default: postgres-es's schema and `postgres_cqrs`, on its own database.
async fn baseline(server_url: &str) -> anyhow::Result<(f64, f64)> {
    let url = fresh_database(server_url, "chronicle_bench_baseline").await?;
    let pool = PgPoolOptions::new()
        .max_connections(CLIENTS as u32)
        .connect(&url)
        .await?;
    for statement in POSTGRES_ES_SCHEMA
        .split(';')
        .filter(|s| !s.trim().is_empty())
    {
        sqlx::query(statement).execute(&pool).await?;
    }
    let cqrs = Arc::new(postgres_es::postgres_cqrs::<File>(pool.clone(), vec![], ()));
    let w1 = {
        let cqrs = cqrs.clone();
        run_concurrently(CLIENTS, W1_STREAMS, move |i| {
            let cqrs = cqrs.clone();
            async move {
                cqrs.execute(&format!("w1-{i}"), create(i)).await?;
                Ok(())
            }
        })
        .await?
    };
    let w2 = {
        let cqrs = cqrs.clone();
        run_concurrently(CLIENTS, W2_STREAMS, move |s| {
            let cqrs = cqrs.clone();
            async move {
                let id = format!("w2-{s}");
                cqrs.execute(&id, create(s)).await?;
                for c in 1..W2_COMMANDS {
                    cqrs.execute(&id, w2_command(c)).await?;
                }
                Ok(())
            }
        })
        .await?
    };
    pool.close().await;
    drop_database(server_url, "chronicle_bench_baseline").await?;
    Ok((
        per_second(W1_STREAMS, w1),
        per_second(W2_STREAMS * W2_COMMANDS, w2),
    ))
}

/// postgres-es 0.5's db/init.sql (events and snapshots tables).
const POSTGRES_ES_SCHEMA: &str = r#"
CREATE TABLE events (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL,
    sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL,
    event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence));
CREATE TABLE snapshots (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL,
    last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))
"#;

/// Prints rows as a markdown table.
pub fn print(rows: &[Row]) {
    println!("| workload | result | unit | note |");
    println!("|---|---:|---|---|");
    for r in rows {
        let value = if r.value >= 100.0 {
            format!("{:.0}", r.value)
        } else {
            format!("{:.3}", r.value)
        };
        println!("| {} | {} | {} | {} |", r.name, value, r.unit, r.note);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bench_database_keeps_the_connection_parameters() {
        let url = "postgres://root@127.0.0.1:5432/postgres?sslmode=disable";
        assert_eq!(
            super::with_database(url, "chronicle_bench").unwrap(),
            "postgres://root@127.0.0.1:5432/chronicle_bench?sslmode=disable"
        );
        assert!(super::with_database("postgres://root@127.0.0.1:5432", "x").is_err());
    }
}
