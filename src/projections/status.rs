//! Where each projector stands: checkpoint and lag, in events and in seconds, and the
//! events it could not apply — lag alone would hide a parked event, which lies behind the
//! checkpoint.

use serde::Serialize;
use sqlx::{PgPool, Row};

#[derive(Debug, Clone, Serialize)]
pub struct ProjectorStatus {
    pub name: String,
    pub last_position: i64,
    pub events_processed: i64,
    /// Committed events not yet applied.
    pub lag_events: i64,
    /// Age of the oldest event not yet applied (0 when caught up).
    pub lag_seconds: f64,
    /// Events it could not apply and moved past (`projector_failures`, state `parked`):
    /// not counted in the lag, never applied until `retry-parked` or a rebuild.
    pub parked_events: i64,
    /// Events it is retrying (0 or 1: the projector waits just before it).
    pub failing_events: i64,
}

pub async fn status(pool: &PgPool) -> Result<Vec<ProjectorStatus>, sqlx::Error> {
    let rows = sqlx::query(
        r#"
SELECT c.name, c.last_position, c.events_processed,
       coalesce(l.lag_events, 0) AS lag_events,
       coalesce(extract(epoch FROM now() - l.oldest), 0)::float8 AS lag_seconds,
       coalesce(f.parked_events, 0) AS parked_events,
       coalesce(f.failing_events, 0) AS failing_events
  FROM projector_checkpoints c
  LEFT JOIN LATERAL (
       SELECT count(*) AS lag_events, min(e.recorded_at) AS oldest
         FROM events e
        WHERE (e.transaction_id, e.global_position) > (c.last_transaction_id, c.last_position)
  ) l ON true
  LEFT JOIN projector_failure_counts f ON f.projector = c.name
 ORDER BY c.name"#,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ProjectorStatus {
            name: r.get("name"),
            last_position: r.get("last_position"),
            events_processed: r.get("events_processed"),
            lag_events: r.get("lag_events"),
            lag_seconds: r.get("lag_seconds"),
            parked_events: r.get("parked_events"),
            failing_events: r.get("failing_events"),
        })
        .collect())
}
