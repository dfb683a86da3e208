//! One read of the log for the projectors of this process that need the same events.
//!
//! Every projector reads the events after its own checkpoint. Read one by one, each new
//! event is scanned by Postgres and decoded here (metadata JSON, upcast and opened
//! payload) once per projector: ten times over, the largest statement of a small-upload
//! workload by Postgres's own count (docs/benchmarks.md). Here the first projector to
//! ask starts a read; the others join it when it covers their position.
//!
//! **Why a joined batch is one the projector could have read itself.** A read from
//! position `Y` returns the events after `Y` in catch-up order, only those of
//! transactions older than every running one (the no-skip rule, docs/projections.md):
//! no event can appear later between `Y` and the last event read. A projector whose
//! checkpoint `X` is `Y`, or the position of one of the events read, gets the events
//! after `X`: a suffix with the same guarantee. The runtime uses it only if its
//! checkpoint, once locked, is still `X` (read_ahead.rs argues the same for its reads);
//! otherwise, or when the read does not cover `X`, it reads in its transaction.
//!
//! **Why it is not staler than a read of its own.** A read is joined only while younger
//! than [`FRESH_FOR`]. A read that started before a wake-up the joiner acts on may lack
//! the append that was notified; the batch says so ([`SharedBatch::predates_wake_up`])
//! and the runtime then treats that wake-up as still pending, so the projector looks
//! again on its next tick instead of waiting for another notification.
//!
//! **Why projectors meet.** Live projectors start their batches on the same ticks of
//! [`Cadence`], so the reads they could share start together, and projectors that
//! applied the same read stand at the same position for the next one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;

use super::EventRecord;
use super::record::{Batch, CatchUpPosition, Unreadable, next_batch};

/// How long a started read may be joined: under the runtime's `PACE`, so sharing never
/// holds a batch back longer than the pacing of live batches already does.
pub const FRESH_FOR: Duration = Duration::from_millis(25);

/// A read in flight or done: `None` when it failed (a joiner then reads for itself, and
/// a persistent failure surfaces there).
type SharedRead = Shared<BoxFuture<'static, Option<Arc<Batch>>>>;

struct Entry {
    after: CatchUpPosition,
    limit: i64,
    /// The wake-up generation when the read started.
    generation: u64,
    started: Instant,
    read: SharedRead,
}

/// The events after a projector's checkpoint, out of a read that may have started
/// further back.
pub struct SharedBatch {
    batch: Arc<Batch>,
    from: usize,
    limit: i64,
    predates_wake_up: bool,
}

impl SharedBatch {
    pub fn events(&self) -> &[EventRecord] {
        &self.batch.events[self.from..]
    }

    /// The unreadable event right after [`Self::events`], if the read stopped at one.
    pub fn unreadable(&self) -> Option<&Unreadable> {
        self.batch.unreadable.as_ref()
    }

    pub fn is_empty(&self) -> bool {
        self.events().is_empty() && self.batch.unreadable.is_none()
    }

    /// Whether the read stopped at its limit: more events may be waiting beyond it,
    /// however few of them were after this projector's checkpoint.
    pub fn read_was_full(&self) -> bool {
        self.batch.events.len() as i64 >= self.limit
    }

    /// Whether the read started before the wake-up the projector acts on: an append
    /// that wake-up announced may be missing.
    pub fn predates_wake_up(&self) -> bool {
        self.predates_wake_up
    }

    /// A batch the runtime read itself.
    pub fn whole(batch: Batch, limit: i64) -> Self {
        Self {
            batch: Arc::new(batch),
            from: 0,
            limit,
            predates_wake_up: false,
        }
    }
}

/// The reads this process's projectors share; one per `projections::runtime::spawn_all`.
pub struct SharedReads {
    pool: PgPool,
    wake: watch::Receiver<u64>,
    /// [`FRESH_FOR`] live; tests choose.
    fresh_for: Duration,
    recent: Mutex<Vec<Entry>>,
}

impl SharedReads {
    /// Reads on `pool`, aware of the wake-up generations `wake` counts, joinable for
    /// `fresh_for` after they start.
    pub fn new(pool: PgPool, wake: watch::Receiver<u64>, fresh_for: Duration) -> Arc<Self> {
        Arc::new(Self {
            pool,
            wake,
            fresh_for,
            recent: Mutex::new(Vec::new()),
        })
    }

    /// The events after `after` (at most `limit` read) for a projector acting on wake-up
    /// `generation`: from a read joined if one started less than `fresh_for` ago from
    /// `after` or from before it, started otherwise. `None` when the read failed or
    /// does not reach `after`: the caller reads for itself.
    pub async fn after(
        &self,
        after: CatchUpPosition,
        limit: i64,
        generation: u64,
    ) -> Option<SharedBatch> {
        let (from, read_generation, read) = self.join_or_start(after, limit);
        let batch = read.await?;
        let from = if from == after {
            0
        } else {
            let at = batch
                .events
                .binary_search_by_key(&after, |e| e.position)
                .ok()?;
            at + 1
        };
        Some(SharedBatch {
            batch,
            from,
            limit,
            predates_wake_up: read_generation < generation,
        })
    }

    /// The read to use, where it reads from and the wake-up generation when it started:
    /// the fresh read starting nearest before (or at) `after`, or a new one from `after`.
    fn join_or_start(
        &self,
        after: CatchUpPosition,
        limit: i64,
    ) -> (CatchUpPosition, u64, SharedRead) {
        let now = Instant::now();
        let mut recent = self.recent.lock().expect("shared reads lock poisoned");
        recent.retain(|e| now.duration_since(e.started) < self.fresh_for);
        if let Some(entry) = recent
            .iter()
            .filter(|e| e.after <= after && e.limit == limit)
            .max_by_key(|e| e.after)
        {
            return (entry.after, entry.generation, entry.read.clone());
        }
        // The generation seen *before* the read starts: a notification arriving during
        // the read may or may not be covered by it, so it is not claimed.
        let started_at = *self.wake.borrow();
        let pool = self.pool.clone();
        // Spawned: the read goes on if the projector that started it stops waiting.
        let task = tokio::spawn(async move {
            let mut conn = pool.acquire().await.ok()?;
            next_batch(&mut conn, after, limit).await.ok().map(Arc::new)
        });
        let read = async move { task.await.ok().flatten() }.boxed().shared();
        recent.push(Entry {
            after,
            limit,
            generation: started_at,
            started: now,
            read: read.clone(),
        });
        (after, started_at, read)
    }
}

/// Ticks every `period` from one instant, shared by the live projectors of a process: a
/// projector pacing its batches waits for the next tick instead of a moment of its own,
/// so busy projectors start their batches (and reads) together.
#[derive(Clone, Copy)]
pub struct Cadence {
    epoch: Instant,
    period: Duration,
}

impl Cadence {
    pub fn new(period: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            period,
        }
    }

    /// The first tick at or after `at`.
    pub fn tick_at_or_after(&self, at: Instant) -> Instant {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        let period = self.period.as_nanos().max(1);
        let ticks = since.div_ceil(period);
        self.epoch + Duration::from_nanos((ticks * period) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_is_the_first_multiple_of_the_period_at_or_after_the_instant() {
        let cadence = Cadence::new(Duration::from_millis(50));
        let e = cadence.epoch;
        assert_eq!(cadence.tick_at_or_after(e), e);
        assert_eq!(
            cadence.tick_at_or_after(e + Duration::from_millis(1)),
            e + Duration::from_millis(50)
        );
        assert_eq!(
            cadence.tick_at_or_after(e + Duration::from_millis(50)),
            e + Duration::from_millis(50)
        );
        assert_eq!(
            cadence.tick_at_or_after(e + Duration::from_millis(120)),
            e + Duration::from_millis(150)
        );
    }
}
