//! The projector runtime: one transaction per batch holding the projector's checkpoint
//! row lock (the lease), the read-table writes and the new checkpoint. A crash anywhere
//! rolls the whole batch back, so no event is skipped or applied twice. An event the
//! projector cannot apply is retried with backoff, then parked (failures.rs), in the
//! same transaction as the events before it.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::failures::{self, Failure, Verdict, apply_isolating};
use super::read_ahead::ReadAhead;
use super::record::{CatchUpPosition, next_batch};
use super::shared_reads::{Cadence, FRESH_FOR, SharedBatch, SharedReads};
use super::{EventRecord, Projector};
use crate::config::ProjectorRetry;

/// Events per batch: large enough to amortise the transaction, small enough to keep
/// lock times short.
pub const BATCH_SIZE: i64 = 1000;
/// Events per batch read ahead, i.e. once a batch came back full: the projector is
/// catching up (after a restart, a deploy, a burst), and each batch's fixed cost — its
/// transaction, lease, checkpoint and commit flush, some eight round trips — is then
/// spread over five times as many events. A batch of this size still commits within a
/// fraction of a second (docs/benchmarks.md, W4).
pub const CATCH_UP_BATCH_SIZE: i64 = 5000;
/// Polling fallback when no notification arrives (and for events that become eligible
/// only when an older transaction ends).
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The least time from one live batch's start to the next's when the first was not
/// full: the most a burst of appends waits for its projection (docs/projections.md).
pub const PACE: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Applied this many events (more may be waiting).
    Applied(usize),
    /// No event to apply, but a share of the projector's deferred work done
    /// (`Projector::deferred`; more of it may be waiting).
    Deferred,
    /// Nothing eligible to apply.
    Idle,
    /// Another instance holds this projector's lease right now.
    Busy,
    /// The next event failed; it is retried after this pause.
    Backoff(Duration),
}

/// Makes sure every projector has a checkpoint row.
pub async fn register(pool: &PgPool, projectors: &[Arc<dyn Projector>]) -> Result<(), sqlx::Error> {
    for p in projectors {
        sqlx::query("INSERT INTO projector_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(p.name())
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Locks the projector's checkpoint row. `wait = false` skips a row another instance
/// holds (live projection); `wait = true` queues behind it (rebuild).
pub(super) async fn lock_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    wait: bool,
) -> Result<Option<CatchUpPosition>, sqlx::Error> {
    let sql = if wait {
        "SELECT last_transaction_id::text AS xid, last_position FROM projector_checkpoints WHERE name = $1 FOR UPDATE"
    } else {
        "SELECT last_transaction_id::text AS xid, last_position FROM projector_checkpoints WHERE name = $1 FOR UPDATE SKIP LOCKED"
    };
    let row = sqlx::query(sql).bind(name).fetch_optional(conn).await?;
    row.map(|r| {
        let xid: String = r.get("xid");
        Ok(CatchUpPosition {
            transaction_id: xid.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            global_position: r.get("last_position"),
        })
    })
    .transpose()
}

pub(super) async fn save_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    last: CatchUpPosition,
    applied: usize,
    reset: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
UPDATE projector_checkpoints
   SET last_transaction_id = $2::text::xid8, last_position = $3,
       events_processed = CASE WHEN $5 THEN 0 ELSE events_processed END + $4,
       updated_at = now()
 WHERE name = $1"#,
    )
    .bind(name)
    .bind(last.transaction_id.to_string())
    .bind(last.global_position)
    .bind(applied as i64)
    .bind(reset)
    .execute(conn)
    .await?;
    Ok(())
}

/// Runs one batch of `projector` in its own transaction, with the default retry policy.
pub async fn run_batch(pool: &PgPool, projector: &dyn Projector) -> anyhow::Result<BatchOutcome> {
    run_batch_with(pool, projector, &ProjectorRetry::default()).await
}

/// Runs one batch of `projector` in its own transaction. When an event fails, the
/// events before it commit with the checkpoint just before it, and the failure is
/// recorded: retried after a pause, or, its attempts spent, parked with the checkpoint
/// moved past it (docs/projections.md, "Failures and parking").
pub async fn run_batch_with(
    pool: &PgPool,
    projector: &dyn Projector,
    policy: &ProjectorRetry,
) -> anyhow::Result<BatchOutcome> {
    Ok(run_batch_ahead(pool, projector, policy, None, None)
        .await?
        .outcome)
}

/// Where a live projector's checkpoint stood after its last batch, to ask the shared
/// reads for the events after it (shared_reads.rs).
#[derive(Clone, Copy)]
struct SharedAsk<'a> {
    reads: &'a SharedReads,
    after: CatchUpPosition,
    /// The wake-up generation this batch acts on.
    generation: u64,
}

/// What one batch did, for the live loop.
struct Ran {
    outcome: BatchOutcome,
    /// The checkpoint as the batch left it, when known.
    checkpoint: Option<CatchUpPosition>,
    /// The read stopped at its limit: more events may be waiting.
    more: bool,
    /// The batch came from a read older than the wake-up it acted on.
    stale: bool,
}

impl Ran {
    fn new(outcome: BatchOutcome) -> Self {
        Self {
            outcome,
            checkpoint: None,
            more: false,
            stale: false,
        }
    }
}

/// [`run_batch_with`]; with `ahead`, it uses the batch read ahead when that starts at
/// the checkpoint, and a full batch starts reading the next one (read_ahead.rs); with
/// `shared`, a read shared with the process's other projectors, on the same condition
/// (shared_reads.rs).
async fn run_batch_ahead(
    pool: &PgPool,
    projector: &dyn Projector,
    policy: &ProjectorRetry,
    mut ahead: Option<&mut ReadAhead>,
    shared: Option<SharedAsk<'_>>,
) -> anyhow::Result<Ran> {
    let name = projector.name();
    let mut prepared = match ahead.as_mut() {
        Some(ahead) => ahead
            .finish()
            .await
            .map(|(after, b)| (after, SharedBatch::whole(b, CATCH_UP_BATCH_SIZE))),
        None => None,
    };
    if prepared.is_none()
        && let Some(ask) = shared
    {
        prepared = ask
            .reads
            .after(ask.after, BATCH_SIZE, ask.generation)
            .await
            .map(|batch| (ask.after, batch));
    }
    let mut tx = pool.begin().await?;
    let Some(checkpoint) = lock_checkpoint(&mut tx, name, false).await? else {
        return Ok(Ran::new(BatchOutcome::Busy));
    };
    let head = failures::failing_head(&mut tx, name).await?;
    if let Some((_, wait)) = head
        && !wait.is_zero()
    {
        tx.commit().await?;
        return Ok(Ran::new(BatchOutcome::Backoff(wait)));
    }
    let batch = match prepared {
        Some((after, batch)) if after == checkpoint => batch,
        _ => SharedBatch::whole(
            next_batch(&mut tx, checkpoint, BATCH_SIZE).await?,
            BATCH_SIZE,
        ),
    };
    if batch.is_empty() {
        let deferred = projector.deferred(&mut tx).await?;
        tx.commit().await?;
        return Ok(Ran {
            outcome: if deferred {
                BatchOutcome::Deferred
            } else {
                BatchOutcome::Idle
            },
            checkpoint: Some(checkpoint),
            more: deferred,
            stale: batch.predates_wake_up(),
        });
    }
    let events = batch.events();
    let more = batch.unreadable().is_none()
        && (events.len() as i64 >= BATCH_SIZE || batch.read_was_full());
    if let Some(ahead) = ahead
        && more
        && let Some(last) = events.last()
    {
        // More is likely waiting: read it, in a catch-up sized batch, while this batch
        // is applied.
        ahead.start(pool, last.position, CATCH_UP_BATCH_SIZE);
    }
    let (applied, failed) = apply_isolating(&mut tx, projector, events).await?;
    let done = &events[..applied];
    let failed = failed.or_else(|| batch.unreadable().cloned().map(Failure::from));
    let Some(failure) = failed else {
        if head.is_some() {
            failures::clear_failing(&mut tx, name).await?;
        }
        let last = done
            .last()
            .expect("a batch without failure applied its events");
        // Under a steady stream of events the batch is never empty: deferred work
        // advances with every batch too, or it would wait for a quiet moment.
        let deferred = projector.deferred(&mut tx).await?;
        save_checkpoint(&mut tx, name, last.position, applied, false).await?;
        commit(tx, projector, done).await?;
        return Ok(Ran {
            outcome: BatchOutcome::Applied(applied),
            checkpoint: Some(last.position),
            more: more || deferred,
            stale: batch.predates_wake_up(),
        });
    };
    let verdict = failures::record(&mut tx, name, &failure, policy).await?;
    let checkpoint = match verdict {
        Verdict::Parked { .. } => Some(failure.event.position),
        Verdict::Retry { .. } => done.last().map(|e| e.position),
    };
    if let Some(position) = checkpoint {
        save_checkpoint(&mut tx, name, position, applied, false).await?;
    }
    commit(tx, projector, done).await?;
    log_failure(name, &failure, verdict);
    Ok(Ran::new(match verdict {
        Verdict::Retry { after, .. } if applied == 0 => BatchOutcome::Backoff(after),
        _ => BatchOutcome::Applied(applied),
    }))
}

/// Commits a batch that applied `done`, between the projector's announcements
/// (`before_commit`: an error rolls the batch back) and their end (`after_commit`, or
/// `commit_failed`), so a reader never sees the batch's rows under an epoch read before
/// them (docs/listing-cache.md).
async fn commit(
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    projector: &dyn Projector,
    done: &[EventRecord],
) -> anyhow::Result<()> {
    projector.before_commit(done).await?;
    match tx.commit().await {
        Ok(()) => {
            projector.after_commit(done).await;
            Ok(())
        }
        Err(err) => {
            projector.commit_failed(done).await;
            Err(err.into())
        }
    }
}

fn log_failure(name: &str, failure: &Failure, verdict: Verdict) {
    let e = &failure.event;
    match verdict {
        Verdict::Retry { attempts, after } => tracing::warn!(
            projector = name,
            global_position = e.position.global_position,
            tenant_id = %e.tenant_id,
            aggregate_type = %e.aggregate_type,
            aggregate_id = %e.aggregate_id,
            event_type = %e.event_type,
            error = %failure.error,
            attempts,
            retry_in_ms = after.as_millis() as u64,
            "projector cannot apply an event; retrying it after a pause"
        ),
        Verdict::Parked { attempts } => tracing::error!(
            projector = name,
            global_position = e.position.global_position,
            tenant_id = %e.tenant_id,
            aggregate_type = %e.aggregate_type,
            aggregate_id = %e.aggregate_id,
            event_type = %e.event_type,
            error = %failure.error,
            attempts,
            "event parked: the projector moved past it; fix the cause, then \
             `chronicle projections retry-parked`"
        ),
    }
}

/// Applies every event committed before the call, waiting where needed: an event
/// becomes eligible only once every older transaction in the cluster has ended.
/// Returns how many events this call applied (another instance may apply some).
/// A failing event is retried and parked with the default policy.
pub async fn catch_up(pool: &PgPool, projector: &dyn Projector) -> anyhow::Result<usize> {
    catch_up_with(pool, projector, &ProjectorRetry::default()).await
}

/// [`catch_up`] with a retry policy.
pub async fn catch_up_with(
    pool: &PgPool,
    projector: &dyn Projector,
    policy: &ProjectorRetry,
) -> anyhow::Result<usize> {
    let target = last_committed_position(pool).await?;
    let mut total = 0;
    let mut ahead = ReadAhead::default();
    loop {
        let pause = match run_batch_ahead(pool, projector, policy, Some(&mut ahead), None)
            .await?
            .outcome
        {
            BatchOutcome::Applied(n) => {
                total += n;
                continue;
            }
            BatchOutcome::Deferred => continue,
            BatchOutcome::Backoff(wait) => wait.max(Duration::from_millis(10)),
            BatchOutcome::Idle | BatchOutcome::Busy => Duration::from_millis(10),
        };
        if !has_pending(pool, projector.name(), target).await? {
            return Ok(total);
        }
        tokio::time::sleep(pause).await;
    }
}

/// Whether each named projector has applied every event committed before this call,
/// none of them parked: what a job that trusts a read table's *absence* of a row (the
/// temp sweeper) must know first, or a lagging projector — or a parked event's missing
/// row — would make live data look orphaned.
pub async fn caught_up(pool: &PgPool, names: &[&str]) -> Result<bool, sqlx::Error> {
    let target = last_committed_position(pool).await?;
    for name in names {
        if has_pending(pool, name, target).await? {
            return Ok(false);
        }
    }
    let parked: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM projector_failures WHERE projector = ANY($1))",
    )
    .bind(names)
    .fetch_one(pool)
    .await?;
    Ok(!parked)
}

/// The highest global position committed so far (0 for an empty log).
pub(super) async fn last_committed_position(
    conn: impl sqlx::PgExecutor<'_>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
        .fetch_one(conn)
        .await
}

/// Whether committed events at or below `target` are still beyond the checkpoint.
async fn has_pending(pool: &PgPool, name: &str, target: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        r#"
SELECT EXISTS (
  SELECT 1 FROM events e, projector_checkpoints c
   WHERE c.name = $1 AND e.global_position <= $2
     AND (e.transaction_id, e.global_position) > (c.last_transaction_id, c.last_position))"#,
    )
    .bind(name)
    .bind(target)
    .fetch_one(pool)
    .await
}

/// Projectors of one process that may apply a catch-up batch at once: half the cores,
/// at least one. Catching up is CPU-bound (PostgreSQL's inserts, this process's decoding)
/// and every projector of a process catches up together after a restart on an
/// unprojected log, a deploy or a burst; all ten at once left requests ~1 % of their
/// usual rate, p50 ~100 ms, until they were done (docs/benchmarks.md, "The API while the
/// projectors catch up"). Live batches, which keep up with appends, never wait here.
pub fn catch_up_gate() -> Arc<Semaphore> {
    Arc::new(Semaphore::new((crate::config::cores() / 2).max(1)))
}

/// What a process's projectors share: the wake-ups of the `chronicle_events`
/// notification, the reads of the log (shared_reads.rs), the ticks their live batches
/// start on, and the turns they take while catching up ([`catch_up_gate`]).
#[derive(Clone)]
struct Shared {
    wake: watch::Receiver<u64>,
    reads: Arc<SharedReads>,
    cadence: Cadence,
    gate: Arc<Semaphore>,
}

/// Runs `projector` until `shutdown`: a batch whenever events are appended (notified)
/// or the poll interval passes. A batch in flight is finished, never abandoned. While
/// catching up (the last batch came back full), each batch first takes a permit of
/// the gate shared with the process's other projectors.
async fn run(
    pool: PgPool,
    projector: Arc<dyn Projector>,
    policy: ProjectorRetry,
    shared: Shared,
    shutdown: CancellationToken,
) {
    let Shared {
        mut wake,
        reads,
        cadence,
        gate,
    } = shared;
    let name = projector.name();
    let mut failures: u32 = 0;
    let mut ahead = ReadAhead::default();
    // Where this projector's last batch left its checkpoint, when known.
    let mut position = None;
    let mut catching_up = false;
    while !shutdown.is_cancelled() {
        // Held for the batch only; fair, so the projectors catching up take turns.
        let turn = if catching_up {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = gate.clone().acquire_owned() => permit.ok(),
            }
        } else {
            None
        };
        catching_up = false;
        let started = tokio::time::Instant::now();
        // Marked seen here: a notification from now on wakes the wait below.
        let generation = *wake.borrow_and_update();
        let shared = position.map(|after| SharedAsk {
            reads: &reads,
            after,
            generation,
        });
        let ran =
            run_batch_ahead(&pool, projector.as_ref(), &policy, Some(&mut ahead), shared).await;
        drop(turn);
        position = ran.as_ref().ok().and_then(|ran| ran.checkpoint);
        let more = ran.as_ref().is_ok_and(|ran| ran.more);
        if ran.as_ref().is_ok_and(|ran| ran.stale) {
            // A shared read older than this wake-up may lack what it announced: look
            // again on the next tick, as if it were still pending.
            wake.mark_changed();
        }
        let pause = match ran.map(|ran| ran.outcome) {
            // A full batch (or the end of a full read), or a share of deferred work:
            // more are waiting.
            Ok(BatchOutcome::Applied(n)) if n as i64 >= BATCH_SIZE || more => {
                failures = 0;
                catching_up = true;
                continue;
            }
            Ok(BatchOutcome::Deferred) => {
                failures = 0;
                catching_up = true;
                continue;
            }
            // Caught up with what was visible; the next batch when more arrives.
            Ok(BatchOutcome::Applied(_)) => {
                failures = 0;
                POLL_INTERVAL
            }
            Ok(BatchOutcome::Idle) | Ok(BatchOutcome::Busy) => {
                failures = 0;
                POLL_INTERVAL
            }
            // A wake-up before the retry is due finds it still pending: cheap.
            Ok(BatchOutcome::Backoff(wait)) => {
                failures = 0;
                wait
            }
            Err(err) => {
                failures += 1;
                tracing::error!(
                    projector = name,
                    error = format!("{err:#}"),
                    failures,
                    "projection batch failed"
                );
                Duration::from_millis(200 * 2u64.pow(failures.min(5)))
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.changed() => {
                // Under a steady stream of appends every wake-up would find a handful of
                // events, and each batch costs a transaction (its lease, the checkpoint,
                // a commit) whatever its size: wake-ups within `PACE` of the last
                // batch's start fold into one batch, which starts on the process's next
                // tick, with the other projectors' (shared_reads.rs). After a quiet
                // spell the batch starts at once.
                let next = cadence.tick_at_or_after(started + PACE);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(next) => {}
                }
            }
            _ = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!(projector = name, "projector stopped");
}

/// Listens for the `chronicle_events` notification and bumps `wake`. Reconnects on
/// failure; projectors keep polling meanwhile. Needs a direct (non-pooled) connection.
pub async fn listen(url: String, wake: watch::Sender<u64>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let result = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen("chronicle_events").await?;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok::<_, sqlx::Error>(()),
                    n = listener.recv() => {
                        n?;
                        wake.send_modify(|v| *v = v.wrapping_add(1));
                    }
                }
            }
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "LISTEN connection lost; polling until it is back");
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Starts every projector plus the listener; returns their task handles.
pub fn spawn_all(
    pool: PgPool,
    listen_url: String,
    projectors: Vec<Arc<dyn Projector>>,
    policy: ProjectorRetry,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    spawn_all_with_gate(
        pool,
        listen_url,
        projectors,
        policy,
        catch_up_gate(),
        shutdown,
    )
}

/// [`spawn_all`] with the projectors taking turns through `gate` while catching up
/// (tests hold its permits to watch who waits).
pub fn spawn_all_with_gate(
    pool: PgPool,
    listen_url: String,
    projectors: Vec<Arc<dyn Projector>>,
    policy: ProjectorRetry,
    gate: Arc<Semaphore>,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (tx, rx) = watch::channel(0u64);
    let shared = Shared {
        reads: SharedReads::new(pool.clone(), rx.clone(), FRESH_FOR),
        wake: rx,
        cadence: Cadence::new(PACE),
        gate,
    };
    let mut handles = vec![tokio::spawn(listen(listen_url, tx, shutdown.clone()))];
    for p in projectors {
        handles.push(tokio::spawn(run(
            pool.clone(),
            p,
            policy.clone(),
            shared.clone(),
            shutdown.clone(),
        )));
    }
    handles
}
