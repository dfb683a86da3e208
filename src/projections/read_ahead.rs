//! Reading the next batch while the current one is applied. A projector's batch is a
//! read (Postgres scans the log, this process decodes and opens the events) followed by
//! the projector's writes; done one after the other, only one of them is busy at a time.
//! Catching up, the runtime reads batch N+1 on a second connection while batch N is
//! applied, so the two overlap.
//!
//! Why a batch read ahead is the batch the runtime would read itself: it is read from
//! where the current batch ends, and only events of transactions older than every
//! transaction running at that moment are read (the no-skip rule,
//! docs/projections.md). Such a transaction has ended, so no event can appear later
//! between that position and the events read. The batch is used only if the checkpoint,
//! once locked, is exactly where it was read from — otherwise (the current batch failed
//! part-way, another instance moved the lease on) it is dropped and the runtime reads
//! again.

use sqlx::PgPool;
use tokio::task::JoinHandle;

use super::record::{Batch, CatchUpPosition, next_batch};

/// The batch being read ahead, if any. Dropping it abandons the read.
#[derive(Default)]
pub(super) struct ReadAhead {
    pending: Option<(CatchUpPosition, JoinHandle<Result<Batch, sqlx::Error>>)>,
}

impl ReadAhead {
    /// Starts reading the `limit` events after `after` on a connection of its own.
    pub(super) fn start(&mut self, pool: &PgPool, after: CatchUpPosition, limit: i64) {
        let pool = pool.clone();
        let read = tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            next_batch(&mut conn, after, limit).await
        });
        if let Some((_, stale)) = self.pending.replace((after, read)) {
            stale.abort();
        }
    }

    /// Waits for the batch being read ahead: where it was read from and the batch, if it
    /// was read and holds anything (an empty one may be out of date already). `None`
    /// means: read it in the transaction (a failed read ahead surfaces again there, if
    /// it persists). Called before the batch's transaction takes its connection: the
    /// read needs a pooled connection of its own, and waiting for it while holding one
    /// could starve a small pool.
    pub(super) async fn finish(&mut self) -> Option<(CatchUpPosition, Batch)> {
        let (after, read) = self.pending.take()?;
        match read.await {
            Ok(Ok(batch)) if !batch.is_empty() => Some((after, batch)),
            _ => None,
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let Some((_, read)) = self.pending.take() {
            read.abort();
        }
    }
}
