//! Events a projector cannot apply (docs/projections.md, "Failures and parking"): finding
//! the one event of a batch that fails, recording it, backing off, parking it so the
//! projector moves on. One event must never stop a projector for every tenant; nothing is
//! skipped silently either: every parked event stays in `projector_failures`.

use std::time::Duration;

use sqlx::{Connection, PgConnection, Row};

use super::record::CatchUpPosition;
use super::{EventRecord, EventRef, Projector, Unreadable};
use crate::config::ProjectorRetry;

/// Longest error text kept per failure (characters).
const ERROR_MAX_CHARS: usize = 2000;

/// An event that failed, and why.
#[derive(Debug, Clone)]
pub struct Failure {
    pub event: EventRef,
    pub error: String,
}

impl Failure {
    fn new(event: &EventRecord, error: &sqlx::Error) -> Self {
        Failure {
            event: event.reference(),
            error: describe(error),
        }
    }
}

impl From<Unreadable> for Failure {
    fn from(u: Unreadable) -> Self {
        Failure {
            event: u.event,
            error: truncate(format!("unreadable event: {}", u.error)),
        }
    }
}

/// The error as an operator needs it: the message and, from Postgres, the SQLSTATE.
pub(super) fn describe(err: &sqlx::Error) -> String {
    let text = match err.as_database_error() {
        Some(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_string(),
        },
        None => err.to_string(),
    };
    truncate(text)
}

fn truncate(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(ERROR_MAX_CHARS) {
        text.truncate(at);
        text.push('…');
    }
    text
}

/// Applies `events` as one batch inside a savepoint. When the projector refuses the
/// batch, finds the first event it refuses by applying them one at a time (each in its
/// own savepoint), and leaves applied exactly the events before it. Returns how many
/// events are applied (a prefix of `events`) and the failure, if any.
///
/// An `Err` is a failure to talk to the database (a savepoint that cannot be rolled
/// back): nothing can be recorded then, and the caller's transaction is lost anyway.
pub(super) async fn apply_isolating(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    events: &[EventRecord],
) -> Result<(usize, Option<Failure>), sqlx::Error> {
    if events.is_empty() || try_apply(conn, projector, events).await?.is_ok() {
        return Ok((events.len(), None));
    }
    let mut probe = conn.begin().await?;
    let Some((i, err)) = apply_one_by_one(&mut probe, projector, events).await? else {
        // The batch fails, each of its events applies: a failure of the moment (a
        // deadlock, a timeout) or of the batch as a whole. Keep the events applied one
        // by one: retrying the batch could fail the same way forever.
        probe.commit().await?;
        return Ok((events.len(), None));
    };
    let failure = Failure::new(&events[i], &err);
    // Apply the events before it again as one batch, as projectors expect (a batch's
    // after-commit effects, such as live notifications, describe the whole batch).
    probe.rollback().await?;
    if i > 0
        && try_apply(conn, projector, &events[..i]).await?.is_err()
        && apply_one_by_one(conn, projector, &events[..i])
            .await?
            .is_some()
    {
        return Err(sqlx::Error::Protocol(format!(
            "projector {}: events before position {} applied a moment ago and fail now",
            projector.name(),
            failure.event.position.global_position
        )));
    }
    Ok((i, Some(failure)))
}

/// Applies `events` in a savepoint: the projector's verdict inside, database trouble
/// outside.
pub(super) async fn try_apply(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    events: &[EventRecord],
) -> Result<Result<(), sqlx::Error>, sqlx::Error> {
    let mut savepoint = conn.begin().await?;
    match projector.apply(&mut savepoint, events).await {
        Ok(()) => {
            savepoint.commit().await?;
            Ok(Ok(()))
        }
        Err(err) => {
            savepoint.rollback().await?;
            Ok(Err(err))
        }
    }
}

/// Applies `events` one at a time until one fails: its index and error.
async fn apply_one_by_one(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    events: &[EventRecord],
) -> Result<Option<(usize, sqlx::Error)>, sqlx::Error> {
    for (i, e) in events.iter().enumerate() {
        if let Err(err) = try_apply(conn, projector, std::slice::from_ref(e)).await? {
            return Ok(Some((i, err)));
        }
    }
    Ok(None)
}

/// What became of a recorded failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Retried after this pause (the projector waits just before the event).
    Retry { attempts: u32, after: Duration },
    /// Retries spent: the projector moves past the event.
    Parked { attempts: u32 },
}

/// The projector's failing event (the one just after its checkpoint), if any: its
/// position and how long until it may be retried (zero when due).
pub(super) async fn failing_head(
    conn: &mut PgConnection,
    projector: &str,
) -> Result<Option<(i64, Duration)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT global_position,
                greatest(extract(epoch FROM next_retry_at - now()), 0)::float8 AS wait
           FROM projector_failures WHERE projector = $1 AND state = 'failing'",
    )
    .bind(projector)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| {
        let wait: f64 = r.get("wait");
        (r.get("global_position"), Duration::from_secs_f64(wait))
    }))
}

/// The failing event applied after all (its failure was of the moment).
pub(super) async fn clear_failing(
    conn: &mut PgConnection,
    projector: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM projector_failures WHERE projector = $1 AND state = 'failing'")
        .bind(projector)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records one more failed attempt of `failure`'s event; parks it once `policy`'s
/// attempts are spent. The caller moves the checkpoint past a parked event in the same
/// transaction.
pub(super) async fn record(
    conn: &mut PgConnection,
    projector: &str,
    failure: &Failure,
    policy: &ProjectorRetry,
) -> Result<Verdict, sqlx::Error> {
    let position = failure.event.position.global_position;
    // A failing row at another position is stale: that event has applied since.
    sqlx::query(
        "DELETE FROM projector_failures
          WHERE projector = $1 AND state = 'failing' AND global_position <> $2",
    )
    .bind(projector)
    .bind(position)
    .execute(&mut *conn)
    .await?;
    let before: Option<i32> = sqlx::query_scalar(
        "SELECT attempts FROM projector_failures WHERE projector = $1 AND global_position = $2",
    )
    .bind(projector)
    .bind(position)
    .fetch_optional(&mut *conn)
    .await?;
    let attempts = before.unwrap_or(0).max(0) as u32 + 1;
    let verdict = if attempts >= policy.max_attempts {
        Verdict::Parked { attempts }
    } else {
        Verdict::Retry {
            attempts,
            after: policy.delay(attempts),
        }
    };
    upsert(conn, projector, failure, attempts, verdict).await?;
    Ok(verdict)
}

/// Parks `failure`'s event at once, attempt 1: what a rebuild does (it runs in one
/// transaction and cannot wait for a retry).
pub(super) async fn park(
    conn: &mut PgConnection,
    projector: &str,
    failure: &Failure,
) -> Result<(), sqlx::Error> {
    upsert(conn, projector, failure, 1, Verdict::Parked { attempts: 1 }).await
}

async fn upsert(
    conn: &mut PgConnection,
    projector: &str,
    failure: &Failure,
    attempts: u32,
    verdict: Verdict,
) -> Result<(), sqlx::Error> {
    let (state, retry_in) = match verdict {
        Verdict::Retry { after, .. } => ("failing", Some(after.as_secs_f64())),
        Verdict::Parked { .. } => ("parked", None),
    };
    let e = &failure.event;
    sqlx::query(
        r#"
INSERT INTO projector_failures (projector, global_position, transaction_id, tenant_id,
            aggregate_type, aggregate_id, event_type, error, attempts, first_failed_at,
            last_failed_at, next_retry_at, state)
VALUES ($1, $2, $3::text::xid8, $4, $5, $6, $7, $8, $9, now(), now(),
        now() + make_interval(secs => $10), $11)
ON CONFLICT (projector, global_position) DO UPDATE
   SET error = EXCLUDED.error, attempts = EXCLUDED.attempts,
       last_failed_at = EXCLUDED.last_failed_at, next_retry_at = EXCLUDED.next_retry_at,
       state = EXCLUDED.state"#,
    )
    .bind(projector)
    .bind(e.position.global_position)
    .bind(e.position.transaction_id.to_string())
    .bind(e.tenant_id)
    .bind(&e.aggregate_type)
    .bind(&e.aggregate_id)
    .bind(&e.event_type)
    .bind(&failure.error)
    .bind(attempts as i32)
    .bind(retry_in)
    .bind(state)
    .execute(conn)
    .await?;
    Ok(())
}

/// A row of `projector_failures`, as status and retry-parked show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailureRow {
    pub projector: String,
    pub global_position: i64,
    #[serde(skip)]
    pub position: CatchUpPosition,
    pub tenant_id: uuid::Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub error: String,
    pub attempts: i32,
    pub first_failed_at: chrono::DateTime<chrono::Utc>,
    pub last_failed_at: chrono::DateTime<chrono::Utc>,
    pub state: String,
}

/// Every failing or parked event (of `projector`, or all), in catch-up order.
pub async fn list(
    conn: impl sqlx::PgExecutor<'_>,
    projector: Option<&str>,
) -> Result<Vec<FailureRow>, sqlx::Error> {
    let rows: Vec<StoredFailure> = sqlx::query_as(
        "SELECT projector, global_position, transaction_id::text AS xid, tenant_id,
                aggregate_type, aggregate_id, event_type, error, attempts, first_failed_at,
                last_failed_at, state
           FROM projector_failures
          WHERE $1::text IS NULL OR projector = $1
          ORDER BY projector, transaction_id, global_position",
    )
    .bind(projector)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(FailureRow::try_from).collect()
}

/// `projector_failures` as `list` selects it: the xid8 as text (it has no Rust type).
#[derive(sqlx::FromRow)]
struct StoredFailure {
    projector: String,
    global_position: i64,
    xid: String,
    tenant_id: uuid::Uuid,
    aggregate_type: String,
    aggregate_id: String,
    event_type: String,
    error: String,
    attempts: i32,
    first_failed_at: chrono::DateTime<chrono::Utc>,
    last_failed_at: chrono::DateTime<chrono::Utc>,
    state: String,
}

impl TryFrom<StoredFailure> for FailureRow {
    type Error = sqlx::Error;

    fn try_from(r: StoredFailure) -> Result<Self, sqlx::Error> {
        Ok(FailureRow {
            projector: r.projector,
            global_position: r.global_position,
            position: CatchUpPosition {
                transaction_id: r
                    .xid
                    .parse()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                global_position: r.global_position,
            },
            tenant_id: r.tenant_id,
            aggregate_type: r.aggregate_type,
            aggregate_id: r.aggregate_id,
            event_type: r.event_type,
            error: r.error,
            attempts: r.attempts,
            first_failed_at: r.first_failed_at,
            last_failed_at: r.last_failed_at,
            state: r.state,
        })
    }
}

/// Per projector with any: parked and failing events. One small query on the counts
/// view (all the API role may read of failures), cheap enough for readiness probes.
pub async fn counts(conn: impl sqlx::PgExecutor<'_>) -> Result<Vec<FailureCounts>, sqlx::Error> {
    sqlx::query_as(
        "SELECT projector, parked_events, failing_events
           FROM projector_failure_counts ORDER BY projector",
    )
    .fetch_all(conn)
    .await
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct FailureCounts {
    pub projector: String,
    pub parked_events: i64,
    pub failing_events: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_at_a_character() {
        let long = "é".repeat(ERROR_MAX_CHARS + 10);
        let cut = truncate(long);
        assert_eq!(cut.chars().count(), ERROR_MAX_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short".into()), "short");
    }
}
