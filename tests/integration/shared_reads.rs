//! Reads of the log shared by a process's projectors (src/projections/shared_reads.rs):
//! a projector gets exactly the events after its own position, from a read that may
//! have started further back, and learns when that read is older than its wake-up.
//! That every committed event is still projected exactly once with sharing live is
//! projections::concurrent_writers_with_rollbacks_project_every_committed_event_exactly_once
//! (two instances, each sharing its reads).

use std::sync::Arc;
use std::time::Duration;

use chronicle::projections::shared_reads::SharedReads;
use chronicle::projections::{CatchUpPosition, EventRecord, next_batch};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::common::TestDb;

/// Long enough that a read stays joinable for the whole test, whatever the machine.
const ALWAYS_FRESH: Duration = Duration::from_secs(3600);

/// Shared reads on `db`'s worker pool whose wake-up generation starts at `generation`
/// (the sender moves it on), joinable for `fresh_for`.
fn shared_reads(
    db: &TestDb,
    generation: u64,
    fresh_for: Duration,
) -> (watch::Sender<u64>, Arc<SharedReads>) {
    let (wake, woken) = watch::channel(generation);
    (wake, SharedReads::new(db.worker.clone(), woken, fresh_for))
}

/// Commits `n` events of one stream in one transaction.
async fn append(pool: &PgPool, stream: &str, n: usize) {
    let tenant = uuid::Uuid::now_v7();
    let mut tx = pool.begin().await.unwrap();
    for seq in 1..=n {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, tenant_id)
             VALUES ('load', $1, $2, 'Loaded', '1', '{\"Loaded\":{}}', $3::json, $4)",
        )
        .bind(stream)
        .bind(seq as i64)
        .bind(format!(r#"{{"actor":"system:test","tenant_id":"{tenant}","hash":"h-{stream}-{seq}"}}"#))
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

/// Waits until catch-up can see `n` events after `after`: events become eligible only
/// once every older transaction of the cluster has ended (other tests' included).
async fn eligible(pool: &PgPool, after: CatchUpPosition, n: usize) -> Vec<CatchUpPosition> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let read = own_read(pool, after, 1000).await;
        if read.len() >= n {
            return read;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} events became eligible",
            read.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a projector at `after` would read for itself right now.
async fn own_read(pool: &PgPool, after: CatchUpPosition, limit: i64) -> Vec<CatchUpPosition> {
    let mut conn = pool.acquire().await.unwrap();
    let batch = next_batch(&mut conn, after, limit).await.unwrap();
    positions(&batch.events)
}

fn positions(events: &[EventRecord]) -> Vec<CatchUpPosition> {
    events.iter().map(|e| e.position).collect()
}

#[tokio::test]
async fn a_projector_gets_the_events_after_its_position_from_a_read_that_covers_it() {
    let db = TestDb::new().await;
    append(&db.owner, "a", 3).await;
    append(&db.owner, "b", 3).await;
    let start = CatchUpPosition::default();
    let all = eligible(&db.worker, start, 6).await;
    let (_wake, reads) = shared_reads(&db, 0, ALWAYS_FRESH);

    let first = reads.after(start, 1000, 0).await.expect("read");
    assert_eq!(positions(first.events()), all);
    assert!(!first.read_was_full());

    // Appended after that read: a projector that joins it does not see it, which shows
    // it joined instead of reading again; what it gets is exactly its own read's events
    // as of that read.
    append(&db.owner, "c", 2).await;
    let third = all[2];
    let joined = reads.after(third, 1000, 0).await.expect("joined");
    assert_eq!(positions(joined.events()), all[3..].to_vec());
    let at_last = reads.after(all[5], 1000, 0).await.expect("joined");
    assert!(
        at_last.is_empty(),
        "nothing after the read's last event, as of that read"
    );

    // A position the read does not reach (an event appended after it) is not served:
    // that projector reads for itself.
    let later = eligible(&db.worker, all[5], 2).await;
    assert_eq!(later.len(), 2);
    assert!(reads.after(later[0], 1000, 0).await.is_none());
}

#[tokio::test]
async fn a_read_that_stopped_at_its_limit_says_more_may_be_waiting() {
    let db = TestDb::new().await;
    append(&db.owner, "a", 5).await;
    let start = CatchUpPosition::default();
    let all = eligible(&db.worker, start, 5).await;
    let (_wake, reads) = shared_reads(&db, 0, ALWAYS_FRESH);

    let first = reads.after(start, 3, 0).await.expect("read");
    let read = positions(first.events());
    assert_eq!(read, all[..3].to_vec());
    assert!(first.read_was_full());
    // One event of the full read is after this position, yet more may be waiting.
    let joined = reads.after(read[1], 3, 0).await.expect("joined");
    assert_eq!(positions(joined.events()), vec![read[2]]);
    assert!(joined.read_was_full());
}

#[tokio::test]
async fn a_read_older_than_the_wake_up_a_projector_acts_on_says_so() {
    let db = TestDb::new().await;
    append(&db.owner, "a", 2).await;
    let start = CatchUpPosition::default();
    eligible(&db.worker, start, 2).await;
    let (wake, reads) = shared_reads(&db, 0, ALWAYS_FRESH);

    let first = reads.after(start, 1000, 0).await.expect("read");
    assert_eq!(first.events().len(), 2);
    assert!(!first.predates_wake_up());
    // An append was notified after the read started: a projector woken by it joins the
    // read, and is told it may lack that append, so it looks again.
    append(&db.owner, "b", 1).await;
    wake.send(1).unwrap();
    let joined = reads.after(start, 1000, 1).await.expect("joined");
    assert_eq!(positions(joined.events()), positions(first.events()));
    assert!(joined.predates_wake_up());

    // A read started after that wake-up covers it.
    eligible(&db.worker, start, 3).await;
    let (_wake, fresh) = shared_reads(&db, 1, ALWAYS_FRESH);
    let own = fresh.after(start, 1000, 1).await.expect("read");
    assert!(!own.predates_wake_up());
    assert_eq!(own.events().len(), 3);
}

#[tokio::test]
async fn a_read_is_joined_only_while_fresh() {
    let db = TestDb::new().await;
    append(&db.owner, "a", 2).await;
    let start = CatchUpPosition::default();
    eligible(&db.worker, start, 2).await;
    let (_wake, reads) = shared_reads(&db, 0, Duration::from_millis(1));

    let first = reads.after(start, 1000, 0).await.expect("read");
    assert_eq!(first.events().len(), 2);
    append(&db.owner, "b", 1).await;
    eligible(&db.worker, start, 3).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Past its freshness the old read is not joined: a new one sees the append.
    let again = reads.after(start, 1000, 0).await.expect("read");
    assert_eq!(again.events().len(), 3);
}
