//! Projectors catching up take turns through the process's gate (src/projections/
//! runtime.rs, `catch_up_gate`): a batch that follows a full one waits for a permit; a
//! projector's first batch after start and its live batches never do. Here the test holds
//! the gate's only permit to see who waits.

use std::sync::Arc;
use std::time::Duration;

use chronicle::projections::{self, runtime};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::common::{TestDb, eventually_within};

/// Appends `n` events in one transaction, as a burst of uploads leaves them.
async fn append(pool: &PgPool, n: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, tenant_id)
         SELECT 'load', gen_random_uuid()::text, 1, 'Loaded', '1', '{\"Loaded\":{}}',
                '{\"actor\":\"system:test\"}', '0190f5a0-0000-7000-8000-000000000001'
           FROM generate_series(1, $1)",
    )
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
}

async fn processed(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT events_processed FROM projector_checkpoints WHERE name = 'audit_logs'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits until the projector has applied at least `n` events.
async fn reaches(pool: &PgPool, n: i64) {
    eventually_within(
        "the projector reaches its count",
        Duration::from_secs(30),
        async || (processed(pool).await >= n).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catching_up_waits_for_a_turn_and_live_batches_do_not() {
    let db = TestDb::new().await;
    let audit = projections::by_name("audit_logs").expect("registered");
    runtime::register(&db.worker, std::slice::from_ref(&audit))
        .await
        .unwrap();
    let backlog = 3 * runtime::BATCH_SIZE;
    append(&db.owner, backlog).await;

    let gate = Arc::new(Semaphore::new(1));
    let every_turn = gate.clone().acquire_owned().await.unwrap();
    let shutdown = CancellationToken::new();
    let tasks = runtime::spawn_all_with_gate(
        db.worker.clone(),
        // LISTEN needs a session of its own: never through the pooler.
        crate::common::direct(&db.url),
        vec![audit],
        Default::default(),
        gate.clone(),
        shutdown.clone(),
    );
    // The first batch needs no turn; the next one, catching up, waits for one.
    reaches(&db.worker, runtime::BATCH_SIZE).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(processed(&db.worker).await, runtime::BATCH_SIZE);

    // A turn: the rest of the backlog.
    drop(every_turn);
    reaches(&db.worker, backlog).await;
    assert_eq!(processed(&db.worker).await, backlog);
    // Its batch after the last full one finds nothing and leaves it live.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Live batches never wait: with every turn taken again, a new event is projected.
    let _every_turn = gate.clone().acquire_owned().await.unwrap();
    append(&db.owner, 1).await;
    reaches(&db.worker, backlog + 1).await;
    assert_eq!(processed(&db.worker).await, backlog + 1);

    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
}
