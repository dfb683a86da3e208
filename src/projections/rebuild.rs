//! Rebuild a projector's read tables from event zero, atomically: the events are
//! replayed into temporary tables inside one transaction that holds the projector's
//! lease; then the live tables are emptied and refilled and the checkpoint moved, and
//! the transaction commits. Readers see the old rows until the commit and the new rows
//! after it — never a half-built table. Indexes, policies, grants and dependent views
//! stay as they are, because the live tables are refilled, not replaced.

use sqlx::PgPool;

use super::Projector;
use super::record::{CatchUpPosition, next_batch};
use super::runtime::{
    BATCH_SIZE, last_committed_position, lock_checkpoint, register, save_checkpoint,
};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    pub projector: &'static str,
    pub events: u64,
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
    loop {
        let batch = next_batch(&mut tx, cursor, BATCH_SIZE).await?;
        let Some(tail) = batch.last() else {
            if cursor_reached(&mut tx, cursor, target).await? {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        projector.apply(&mut tx, &batch).await?;
        cursor = tail.position;
        events += batch.len() as u64;
        last = Some(tail.clone());
    }
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
        Some(last) => save_checkpoint(&mut tx, name, last, events as usize, true).await?,
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
    tracing::info!(projector = name, events, "projection rebuilt");
    Ok(RebuildReport {
        projector: name,
        events,
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
