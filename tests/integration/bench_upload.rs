//! `chronicle bench upload` at tiny sizes, so the benchmark's code path (child server,
//! streamed multipart, RSS sampling, worker completion, cache on/off reads) cannot rot.

use std::path::Path;

use chronicle::bench::upload::{Sizes, Target, run};

use crate::common::{base_url, init_tracing, redis_url};

#[tokio::test]
async fn the_upload_bench_runs_end_to_end_at_tiny_sizes() {
    init_tracing();
    let database = format!("chronicle_bench_smoke_{}", uuid::Uuid::now_v7().simple());
    let sizes = Sizes {
        large_bytes: 1024 * 1024 + 17, // not a multiple of the client's chunk
        small_uploads: 20,
        small_bytes: 10 * 1024,
        gets: 200,
        worker_concurrency: 2,
    };
    let base = base_url();
    let target = Target {
        server_url: &base,
        database: &database,
        redis_url: &redis_url(),
        exe: Path::new(env!("CARGO_BIN_EXE_chronicle")),
    };
    let redis = redis::Client::open(redis_url()).unwrap();
    let mut redis = redis.get_multiplexed_async_connection().await.unwrap();
    let bench_keys = |keys: Vec<String>| keys.into_iter().filter(|k| k.starts_with("bench-"));
    let before: Vec<String> = redis::cmd("KEYS")
        .arg("bench-*")
        .query_async(&mut redis)
        .await
        .unwrap();
    let before: Vec<String> = bench_keys(before).collect();

    let outcome = run(&target, &sizes).await.expect("bench runs");

    assert!(outcome.large_completed, "the large upload completed");
    assert!(
        outcome.large_sha_matches,
        "the server stored exactly the bytes sha256sum hashed"
    );
    assert!(
        outcome.tus_matches,
        "the tus upload completed with the same bytes"
    );
    assert_eq!(outcome.small_accepted, 20);
    assert_eq!(outcome.small_completed, 20);
    let names: Vec<&str> = outcome.rows.iter().map(|r| r.name).collect();
    for expected in [
        "large upload over loopback",
        "sha256sum of the same bytes",
        "upload / sha256sum",
        "server RSS growth during the upload",
        "tus upload over loopback, 8 MiB PATCHes",
        "server RSS growth during the tus upload",
        "small files: ingestion limit, 16 tasks",
        "small uploads, 16 clients: accepted",
        "small uploads, 16 clients: completed",
        "small uploads: accepted / ingestion limit",
        "small uploads: completed / accepted",
        "small uploads, 16 clients, the API alone: accepted",
        "small uploads, the API alone: accepted / ingestion limit",
        "GET /v1/files/{id}, 16 clients, cache on",
        "GET /v1/files/{id}, 16 clients, cache off",
    ] {
        assert!(
            names.contains(&expected),
            "missing row {expected}: {names:?}"
        );
    }
    for row in &outcome.rows {
        // RSS growth may legitimately be zero for a 1 MiB upload; every rate and latency
        // must be a real positive measurement.
        let may_be_zero = row.name.starts_with("server RSS growth during the");
        assert!(
            row.value.is_finite() && (row.value > 0.0 || may_be_zero && row.value == 0.0),
            "{}: {} {}",
            row.name,
            row.value,
            row.unit
        );
    }

    // The bench cleans up after itself: its throwaway database is gone.
    let pool = sqlx::PgPool::connect(&base).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&database)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the bench database was dropped");
    // …and its Redis keys (other runs' keys may come and go meanwhile).
    let after: Vec<String> = redis::cmd("KEYS")
        .arg("bench-*")
        .query_async(&mut redis)
        .await
        .unwrap();
    let new: Vec<String> = bench_keys(after).filter(|k| !before.contains(k)).collect();
    assert!(
        new.is_empty(),
        "keys left behind: {:?}",
        &new[..new.len().min(5)]
    );
}
