//! Rebuild a projector's read tables from event zero, atomically: the events are
//! replayed into temporary tables inside one transaction that holds the projector's
//! lease; then the live tables are emptied and refilled and the checkpoint moved, and
//! the transaction commits. Readers see the old rows until the commit and the new rows
//! after it — never a half-built table. Indexes, policies, grants and dependent views
//! stay as they are, because the live tables are refilled, not replaced.
//!
//! An event the projector cannot apply does not abort the rebuild: it is parked at once
//! (a rebuild is one transaction and cannot wait to retry) and reported. The rebuild
//! starts the projector's failure record afresh: the parked events are then exactly
//! those of this replay.

use sqlx::PgPool;

use super::Projector;
use super::failures::{self, Failure, apply_isolating};
use super::record::{CatchUpPosition, next_batch};
use super::runtime::{
    BATCH_SIZE, last_committed_position, lock_checkpoint, register, save_checkpoint,
};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    pub projector: &'static str,
    /// Events applied.
    pub events: u64,
    /// Events the projector could not apply, parked (`retry-parked` applies them later).
    pub parked: Vec<ParkedEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEvent {
    pub event: super::EventRef,
    pub error: String,
}

pub async fn rebuild(
    pool: &PgPool,
    projector: Arc<dyn Projector>,
) -> anyhow::Result<RebuildReport> {
    register(pool, std::slice::from_ref(&projector)).await?;
    let name = projector.name();
    let mut tx = pool.begin().await?;
    // Wait for the live batch to finish, then keep the lease until we commit.
    lock_checkpoint(&mut tx, name, true).await?;
    sqlx::query("DELETE FROM projector_failures WHERE projector = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    for table in projector.tables() {
        // Temporary tables shadow the live ones for unqualified names (pg_temp is
        // searched first), so the projector writes here without knowing.
        sqlx::query(&format!(
            "CREATE TEMP TABLE {table} (LIKE public.{table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES) ON COMMIT DROP"
        ))
        .execute(&mut *tx)
        .await?;
    }
    // Replay everything committed before the rebuild started. Events of transactions
    // that are still running become eligible only when those end, so wait for them;
    // anything committed later is left to the live projector after the swap.
    let target = last_committed_position(&mut *tx).await?;
    let mut cursor = CatchUpPosition::default();
    let mut events: u64 = 0;
    let mut last = None;
    let mut parked = Vec::new();
    loop {
        let batch = next_batch(&mut tx, cursor, BATCH_SIZE).await?;
        if batch.is_empty() {
            if cursor_reached(&mut tx, cursor, target).await? {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        }
        let (applied, failed) = apply_isolating(&mut tx, projector.as_ref(), &batch.events).await?;
        if let Some(tail) = batch.events[..applied].last() {
            cursor = tail.position;
            last = Some(tail.position);
        }
        events += applied as u64;
        if let Some(failure) = failed.or_else(|| batch.unreadable.map(Failure::from)) {
            failures::park(&mut tx, name, &failure).await?;
            tracing::error!(
                projector = name,
                global_position = failure.event.position.global_position,
                event_type = %failure.event.event_type,
                error = %failure.error,
                "rebuild parked an event it cannot apply"
            );
            cursor = failure.event.position;
            last = Some(cursor);
            parked.push(ParkedEvent {
                event: failure.event,
                error: failure.error,
            });
        }
    }
    // Work the projector deferred (bounded shares, live) is finished here: the tables
    // swapped in must be what the events say, and nobody waits on this transaction's
    // temporary tables.
    while projector.deferred(&mut tx).await? {}
    for table in projector.tables() {
        sqlx::query(&format!("TRUNCATE public.{table}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO public.{table} SELECT * FROM pg_temp.{table}"
        ))
        .execute(&mut *tx)
        .await?;
    }
    match &last {
        Some(last) => save_checkpoint(&mut tx, name, *last, events as usize, true).await?,
        None => {
            sqlx::query(
                "UPDATE projector_checkpoints SET last_transaction_id = '0', last_position = 0, events_processed = 0, updated_at = now() WHERE name = $1",
            )
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    tracing::info!(
        projector = name,
        events,
        parked = parked.len(),
        "projection rebuilt"
    );
    Ok(RebuildReport {
        projector: name,
        events,
        parked,
    })
}

/// True when no committed event at or below `target` lies beyond `cursor`.
async fn cursor_reached(
    conn: &mut sqlx::PgConnection,
    cursor: CatchUpPosition,
    target: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM events WHERE global_position <= $3 AND (transaction_id, global_position) > ($1::text::xid8, $2))",
    )
    .bind(cursor.transaction_id.to_string())
    .bind(cursor.global_position)
    .bind(target)
    .fetch_one(conn)
    .await
}
