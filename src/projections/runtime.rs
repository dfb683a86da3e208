//! The projector runtime: one transaction per batch holding the projector's checkpoint
//! row lock (the lease), the read-table writes and the new checkpoint. A crash anywhere
//! rolls the whole batch back, so no event is skipped or applied twice.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::record::{CatchUpPosition, next_batch};
use super::{EventRecord, Projector};

/// Events per batch: large enough to amortise the transaction, small enough to keep
/// lock times short.
pub const BATCH_SIZE: i64 = 1000;
/// Polling fallback when no notification arrives (and for events that become eligible
/// only when an older transaction ends).
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Applied this many events (more may be waiting).
    Applied(usize),
    /// Nothing eligible to apply.
    Idle,
    /// Another instance holds this projector's lease right now.
    Busy,
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
    last: &EventRecord,
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
    .bind(last.position.transaction_id.to_string())
    .bind(last.position.global_position)
    .bind(applied as i64)
    .bind(reset)
    .execute(conn)
    .await?;
    Ok(())
}

/// Runs one batch of `projector` in its own transaction.
pub async fn run_batch(pool: &PgPool, projector: &dyn Projector) -> anyhow::Result<BatchOutcome> {
    let mut tx = pool.begin().await?;
    let Some(checkpoint) = lock_checkpoint(&mut tx, projector.name(), false).await? else {
        return Ok(BatchOutcome::Busy);
    };
    let events = next_batch(&mut tx, checkpoint, BATCH_SIZE).await?;
    let Some(last) = events.last() else {
        tx.commit().await?;
        return Ok(BatchOutcome::Idle);
    };
    projector.apply(&mut tx, &events).await?;
    save_checkpoint(&mut tx, projector.name(), last, events.len(), false).await?;
    tx.commit().await?;
    projector.after_commit(&events).await;
    Ok(BatchOutcome::Applied(events.len()))
}

/// Applies every event committed before the call, waiting where needed: an event
/// becomes eligible only once every older transaction in the cluster has ended.
/// Returns how many events this call applied (another instance may apply some).
pub async fn catch_up(pool: &PgPool, projector: &dyn Projector) -> anyhow::Result<usize> {
    let target = last_committed_position(pool).await?;
    let mut total = 0;
    loop {
        match run_batch(pool, projector).await? {
            BatchOutcome::Applied(n) => total += n,
            BatchOutcome::Idle | BatchOutcome::Busy => {
                if !has_pending(pool, projector.name(), target).await? {
                    return Ok(total);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Whether each named projector has applied every event committed before this call:
/// what a job that trusts a read table's *absence* of a row (the temp sweeper) must
/// know first, or a lagging projector would make live data look orphaned.
pub async fn caught_up(pool: &PgPool, names: &[&str]) -> Result<bool, sqlx::Error> {
    let target = last_committed_position(pool).await?;
    for name in names {
        if has_pending(pool, name, target).await? {
            return Ok(false);
        }
    }
    Ok(true)
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

/// Runs `projector` until `shutdown`: a batch whenever events are appended (notified)
/// or the poll interval passes. A batch in flight is finished, never abandoned.
pub async fn run(
    pool: PgPool,
    projector: Arc<dyn Projector>,
    mut wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let name = projector.name();
    let mut failures: u32 = 0;
    while !shutdown.is_cancelled() {
        let pause = match run_batch(&pool, projector.as_ref()).await {
            Ok(BatchOutcome::Applied(_)) => {
                failures = 0;
                continue;
            }
            Ok(BatchOutcome::Idle) | Ok(BatchOutcome::Busy) => {
                failures = 0;
                POLL_INTERVAL
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
            _ = wake.changed() => {}
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
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (tx, rx) = watch::channel(0u64);
    let mut handles = vec![tokio::spawn(listen(listen_url, tx, shutdown.clone()))];
    for p in projectors {
        handles.push(tokio::spawn(run(
            pool.clone(),
            p,
            rx.clone(),
            shutdown.clone(),
        )));
    }
    handles
}
