//! `chronicle bench tlog`: the transparency log at N events (default 1,000,000) of one
//! tenant — the deepest tree N events can make. Seeds the events (SQL, in transactions
//! of 10,000), then measures the tree builder's catch-up (cost per event, storage per
//! event), signing the head, and inclusion and consistency proofs for random events and
//! sizes: latency, size, and that each one checks (`tlog_tiles::check_*`).

use std::time::{Duration, Instant};

use super::store::{Row, fresh_database};
use crate::config::CheckpointKey;
use crate::db::{self, DbRole};
use crate::transparency::{builder, heads, proofs};

/// Events per seeding transaction (each its own xid, like many commits).
const SEED_BATCH: u64 = 10_000;
/// Proofs of each kind measured.
const PROOFS: usize = 1_000;

pub async fn run(server_url: &str, events: u64) -> anyhow::Result<Vec<Row>> {
    let url = fresh_database(server_url, "chronicle_bench_tlog").await?;
    db::migrate(&url).await?;
    let owner = db::pool(&url, DbRole::Owner, 2).await?;
    let pool = db::pool(&url, DbRole::Worker, 4).await?;
    let tenant = uuid::Uuid::now_v7();
    let mut rows = Vec::new();

    let started = Instant::now();
    let mut from = 0;
    while from < events {
        let to = (from + SEED_BATCH).min(events);
        // 100-event streams; the hash text is a SHA-256 in hex, like a real chain hash.
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata, tenant_id)
             SELECT 'file', 's' || (i / 100), i % 100 + 1, 'Tagged', '1', '{\"Tagged\":{}}',
                    json_build_object('hash', encode(sha256(i::text::bytea), 'hex')), $3
               FROM generate_series($1::bigint, $2::bigint - 1) AS i",
        )
        .bind(from as i64)
        .bind(to as i64)
        .bind(tenant)
        .execute(&owner)
        .await?;
        from = to;
    }
    rows.push(per_second("seed events (SQL)", events, started.elapsed()));

    let started = Instant::now();
    let appended = builder::catch_up(&pool).await?;
    let took = started.elapsed();
    anyhow::ensure!(appended as u64 == events, "appended {appended} of {events}");
    rows.push(per_second("build the tree (catch-up)", events, took));
    rows.push(Row {
        name: "build cost per event",
        value: took.as_secs_f64() * 1e6 / events as f64,
        unit: "µs",
        note: format!(
            "batches of {} events, one transaction each",
            builder::BATCH_SIZE
        ),
    });
    for (name, table) in [
        ("storage: stored hashes", "merkle_hash_tiles"),
        ("storage: leaf index", "merkle_leaves"),
    ] {
        let bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
            .bind(table)
            .fetch_one(&owner)
            .await?;
        rows.push(Row {
            name,
            value: bytes as f64 / events as f64,
            unit: "bytes/event",
            note: format!("{table}, {:.1} MiB with indexes", bytes as f64 / 1048576.0),
        });
    }

    let key = CheckpointKey::from_seed(rand::random());
    let started = Instant::now();
    let signed = heads::sign_due(&pool, &key, "chronicle", Duration::ZERO).await?;
    anyhow::ensure!(signed.len() == 1, "one head signed");
    rows.push(Row {
        name: "sign a head (root + checks)",
        value: started.elapsed().as_secs_f64() * 1e3,
        unit: "ms",
        note: format!("tree of {events}"),
    });

    let mut conn = pool.acquire().await?;
    let size = events;
    let root = signed[0].root;
    let positions: Vec<(i64, String)> = sqlx::query_as(
        "SELECT global_position, metadata->>'hash' FROM events
          WHERE tenant_id = $1 ORDER BY random() LIMIT $2",
    )
    .bind(tenant)
    .bind(PROOFS as i64)
    .fetch_all(&owner)
    .await?;
    let mut latencies = Vec::new();
    let (mut hashes, mut json_bytes) = (0usize, 0usize);
    for (position, hash) in &positions {
        let started = Instant::now();
        let proof = proofs::prove_inclusion(&mut conn, tenant, *position, None).await?;
        latencies.push(started.elapsed());
        let path: Vec<tlog_tiles::Hash> = proof
            .inclusion_path
            .iter()
            .map(|h| tlog_tiles::Hash::parse_hash(h))
            .collect::<Result<_, _>>()?;
        tlog_tiles::check_record(
            &path,
            size,
            root,
            proof.leaf_index,
            crate::transparency::leaf_hash(Some(hash)),
        )?;
        hashes += path.len();
        json_bytes += serde_json::to_vec(&proof)?.len();
    }
    rows.extend(latency_rows("inclusion proof", &mut latencies));
    rows.push(sizes(
        "inclusion proof size",
        hashes,
        json_bytes,
        positions.len(),
    ));

    let mut latencies = Vec::new();
    let (mut hashes, mut json_bytes) = (0usize, 0usize);
    for _ in 0..PROOFS {
        let first = rand::random_range(1..=size);
        let started = Instant::now();
        let proof = proofs::prove_consistency(&mut conn, tenant, first, None).await?;
        latencies.push(started.elapsed());
        let path: Vec<tlog_tiles::Hash> = proof
            .consistency_path
            .iter()
            .map(|h| tlog_tiles::Hash::parse_hash(h))
            .collect::<Result<_, _>>()?;
        let first_root = tlog_tiles::Hash::parse_hash(&proof.first.root_hash)?;
        tlog_tiles::check_tree(&path, size, root, first, first_root)?;
        hashes += path.len();
        json_bytes += serde_json::to_vec(&proof)?.len();
    }
    rows.extend(latency_rows("consistency proof", &mut latencies));
    rows.push(sizes("consistency proof size", hashes, json_bytes, PROOFS));

    pool.close().await;
    owner.close().await;
    super::store::drop_database(server_url, "chronicle_bench_tlog").await?;
    Ok(rows)
}

fn per_second(name: &'static str, events: u64, took: Duration) -> Row {
    Row {
        name,
        value: events as f64 / took.as_secs_f64(),
        unit: "events/s",
        note: format!("{events} events in {:.1} s", took.as_secs_f64()),
    }
}

fn latency_rows(what: &'static str, latencies: &mut [Duration]) -> Vec<Row> {
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = latencies.iter().map(|d| ms(*d)).sum::<f64>() / latencies.len() as f64;
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    vec![Row {
        name: what,
        value: mean,
        unit: "ms mean",
        note: format!(
            "p50 {:.2} ms, p99 {:.2} ms, {} proofs from the database, each checked",
            ms(latencies[latencies.len() / 2]),
            ms(p99),
            latencies.len()
        ),
    }]
}

fn sizes(name: &'static str, hashes: usize, json_bytes: usize, n: usize) -> Row {
    Row {
        name,
        value: hashes as f64 / n as f64,
        unit: "hashes",
        note: format!(
            "{:.0} bytes of hashes, {:.0} bytes of JSON with the signed head, mean of {n}",
            hashes as f64 * 32.0 / n as f64,
            json_bytes as f64 / n as f64
        ),
    }
}
