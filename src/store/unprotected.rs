//! The unprotected window: what no checkpoint covers yet — events after the heads the
//! newest checkpoint of their tenant signed, and whole streams it does not know. Those
//! can be deleted without a trace a checkpoint would show (event signatures do not show
//! a deletion), so verify always says how much there is. Normally it is what the last
//! `CHECKPOINT_EVERY_SECS` wrote; more means checkpoints stopped or were rolled back.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::checkpoint::timestamp_text;

/// One tenant's unprotected window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unprotected {
    pub tenant_id: Uuid,
    /// The newest checkpoint (`None`: the tenant has none).
    pub checkpoint_id: Option<i64>,
    pub checkpoint_taken_at: Option<String>,
    /// Events after the signed heads (in any stream).
    pub events: i64,
    /// Streams with such events, and of those, streams no checkpoint knows at all.
    pub streams: i64,
    pub new_streams: i64,
    /// When the oldest unprotected event was recorded.
    pub oldest_recorded_at: Option<String>,
}

/// Every tenant in scope that has events, in tenant order (one query: the tenants, by a
/// loose index scan, then their events joined with their newest checkpoint's heads).
pub async fn window(
    conn: &mut PgConnection,
    tenant: Option<Uuid>,
) -> Result<Vec<Unprotected>, sqlx::Error> {
    let rows = sqlx::query(
        r#"
WITH RECURSIVE t AS (
    (SELECT tenant_id AS id FROM events WHERE $1::uuid IS NULL OR tenant_id = $1
      ORDER BY tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT e.tenant_id FROM events e WHERE $1::uuid IS NULL AND e.tenant_id > t.id
             ORDER BY e.tenant_id LIMIT 1)
      FROM t WHERE t.id IS NOT NULL),
tenants AS (SELECT id AS tenant_id FROM t WHERE id IS NOT NULL),
newest AS (
    SELECT t.tenant_id, c.id, c.taken_at
      FROM tenants t
      LEFT JOIN LATERAL (SELECT id, taken_at FROM checkpoints
                          WHERE tenant_id = t.tenant_id ORDER BY id DESC LIMIT 1) c ON true),
heads AS (
    SELECT DISTINCT ON (h.tenant_id, h.aggregate_type, h.aggregate_id)
           h.tenant_id, h.aggregate_type, h.aggregate_id, h.last_sequence
      FROM checkpoint_heads h JOIN newest n ON n.tenant_id = h.tenant_id AND h.checkpoint_id <= n.id
     ORDER BY h.tenant_id, h.aggregate_type, h.aggregate_id, h.checkpoint_id DESC),
outside AS (
    SELECT e.tenant_id, e.aggregate_type, e.aggregate_id, e.recorded_at,
           h.last_sequence IS NULL AS new_stream
      FROM events e
      LEFT JOIN heads h ON h.tenant_id = e.tenant_id AND h.aggregate_type = e.aggregate_type
                       AND h.aggregate_id = e.aggregate_id
     WHERE ($1::uuid IS NULL OR e.tenant_id = $1) AND e.sequence > coalesce(h.last_sequence, 0))
SELECT n.tenant_id, n.id AS checkpoint_id, n.taken_at,
       count(o.tenant_id) AS events,
       count(DISTINCT (o.aggregate_type, o.aggregate_id)) AS streams,
       count(DISTINCT (o.aggregate_type, o.aggregate_id)) FILTER (WHERE o.new_stream) AS new_streams,
       min(o.recorded_at) AS oldest
  FROM newest n LEFT JOIN outside o ON o.tenant_id = n.tenant_id
 GROUP BY n.tenant_id, n.id, n.taken_at
 ORDER BY n.tenant_id"#,
    )
    .bind(tenant)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Unprotected {
                tenant_id: r.try_get("tenant_id")?,
                checkpoint_id: r.try_get("checkpoint_id")?,
                checkpoint_taken_at: r
                    .try_get::<Option<DateTime<Utc>>, _>("taken_at")?
                    .map(timestamp_text),
                events: r.try_get("events")?,
                streams: r.try_get("streams")?,
                new_streams: r.try_get("new_streams")?,
                oldest_recorded_at: r
                    .try_get::<Option<DateTime<Utc>>, _>("oldest")?
                    .map(timestamp_text),
            })
        })
        .collect()
}
