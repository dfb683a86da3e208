//! `chronicle projections retry-parked`: applies parked events again once their cause is
//! fixed (docs/projections.md, "Failures and parking"). Each event, in catch-up order,
//! in its own transaction holding the projector's lease: applied and its failure row
//! deleted together, or — failing still — kept parked with one more attempt recorded.
//!
//! A parked event applied now lands after events that followed it in the log. For a
//! projection whose rows are one per event (audit_logs, notifications) that changes
//! nothing; for one that folds a stream into a row (files, uploads, accounts) the later
//! events of the same stream were applied without it, so the report counts them: when
//! there are any, `chronicle projections rebuild <name>` is the exact fix.

use std::sync::Arc;

use sqlx::PgPool;

use super::failures::{self, describe, try_apply};
use super::record::read_event;
use super::runtime::lock_checkpoint;
use super::{EventRef, Projector};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetriedEvent {
    pub event: EventRef,
    /// `None` when it applied; else the error of this attempt.
    pub error: Option<String>,
    /// Events of the same stream after it in the log: applied before it, they may
    /// have needed it (see the module documentation).
    pub later_in_stream: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryReport {
    pub projector: &'static str,
    pub events: Vec<RetriedEvent>,
}

impl RetryReport {
    pub fn applied(&self) -> usize {
        self.events.iter().filter(|e| e.error.is_none()).count()
    }

    pub fn still_parked(&self) -> usize {
        self.events.len() - self.applied()
    }
}

/// Applies `projector`'s parked events again, in catch-up order.
pub async fn retry_parked(
    pool: &PgPool,
    projector: Arc<dyn Projector>,
) -> anyhow::Result<RetryReport> {
    let name = projector.name();
    let parked: Vec<_> = failures::list(pool, Some(name))
        .await?
        .into_iter()
        .filter(|row| row.state == "parked")
        .collect();
    let mut events = Vec::with_capacity(parked.len());
    for row in parked {
        let mut tx = pool.begin().await?;
        // Wait for a live batch to end, then keep it (and any rebuild) away.
        lock_checkpoint(&mut tx, name, true).await?;
        let still_parked: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM projector_failures
                             WHERE projector = $1 AND global_position = $2 AND state = 'parked'
                             FOR UPDATE)",
        )
        .bind(name)
        .bind(row.global_position)
        .fetch_one(&mut *tx)
        .await?;
        if !still_parked {
            // Applied by a concurrent retry, or replaced by a rebuild meanwhile.
            tx.commit().await?;
            continue;
        }
        let (event, outcome) = match read_event(&mut tx, row.position).await? {
            Some(Ok(record)) => {
                let outcome = try_apply(&mut tx, projector.as_ref(), std::slice::from_ref(&record))
                    .await?
                    .map_err(|err| describe(&err));
                (Some(record), outcome)
            }
            Some(Err(unreadable)) => (None, Err(format!("unreadable event: {}", unreadable.error))),
            None => (None, Err("the event is not in the log".to_string())),
        };
        match &outcome {
            Ok(()) => {
                sqlx::query(
                    "DELETE FROM projector_failures WHERE projector = $1 AND global_position = $2",
                )
                .bind(name)
                .bind(row.global_position)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE projector_checkpoints SET events_processed = events_processed + 1,
                            updated_at = now() WHERE name = $1",
                )
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            Err(error) => {
                sqlx::query(
                    "UPDATE projector_failures
                        SET attempts = attempts + 1, error = $3, last_failed_at = now()
                      WHERE projector = $1 AND global_position = $2",
                )
                .bind(name)
                .bind(row.global_position)
                .bind(error)
                .execute(&mut *tx)
                .await?;
            }
        }
        let later_in_stream: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events
              WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3
                AND global_position > $4",
        )
        .bind(row.tenant_id)
        .bind(&row.aggregate_type)
        .bind(&row.aggregate_id)
        .bind(row.global_position)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        if let (Some(record), Ok(())) = (&event, &outcome) {
            projector.after_commit(std::slice::from_ref(record)).await;
        }
        tracing::info!(
            projector = name,
            global_position = row.global_position,
            applied = outcome.is_ok(),
            "parked event retried"
        );
        events.push(RetriedEvent {
            event: EventRef {
                position: row.position,
                tenant_id: row.tenant_id,
                aggregate_type: row.aggregate_type,
                aggregate_id: row.aggregate_id,
                event_type: row.event_type,
            },
            error: outcome.err(),
            later_in_stream,
        });
    }
    Ok(RetryReport {
        projector: name,
        events,
    })
}
