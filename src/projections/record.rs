//! An event as projectors see it: a row of the log in catch-up order.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

/// The position of an event in catch-up order: (writing transaction, global position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct CatchUpPosition {
    pub transaction_id: u64,
    pub global_position: i64,
}

#[derive(Debug, Clone)]
pub struct EventRecord {
    pub position: CatchUpPosition,
    pub tenant_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The payload's JSON text, exactly as stored (canonical JSON).
    pub payload: String,
    pub metadata: Map<String, Value>,
    pub recorded_at: DateTime<Utc>,
}

impl EventRecord {
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }

    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let transaction_id: String = row.try_get("xid")?;
        let metadata: String = row.try_get("metadata")?;
        Ok(Self {
            position: CatchUpPosition {
                transaction_id: transaction_id
                    .parse()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                global_position: row.try_get("global_position")?,
            },
            tenant_id: row.try_get("tenant_id")?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: serde_json::from_str(&metadata)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            recorded_at: row.try_get("recorded_at")?,
        })
    }
}

/// The catch-up query. Public so a test can check its plan orders by the xid8 column.
pub const NEXT_BATCH_SQL: &str = r#"
SELECT transaction_id::text AS xid, global_position, tenant_id, aggregate_type,
       aggregate_id, sequence, event_type, event_version, payload::text AS payload,
       metadata::text AS metadata, recorded_at
  FROM events
 WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY events.transaction_id, events.global_position -- the xid8 column, never a text alias
 LIMIT $3"#;

/// Reads the next `limit` events after `after` in catch-up order — only those written by
/// transactions older than every transaction still running, so no event can later
/// appear before a position already handed out (the no-skip rule, docs/projections.md).
pub async fn next_batch(
    conn: &mut PgConnection,
    after: CatchUpPosition,
    limit: i64,
) -> Result<Vec<EventRecord>, sqlx::Error> {
    let rows = sqlx::query(NEXT_BATCH_SQL)
        .bind(after.transaction_id.to_string())
        .bind(after.global_position)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(EventRecord::from_row).collect()
}
