//! An event as projectors see it: a row of the log in catch-up order.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::privacy::{self, OpenError, StoredEvent};

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
    /// The version as stored (`payload` is already upcast to the current one).
    pub event_version: String,
    /// The payload's JSON text in the current version's form, personal fields readable
    /// or `[erased]` (`privacy::open`). Exactly the stored text (canonical JSON) for
    /// current-version events without personal fields; the stored bytes themselves are
    /// what `store::verify` hashes, never this.
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
        .fetch_all(&mut *conn)
        .await?;
    let mut records = rows
        .iter()
        .map(EventRecord::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    open_payloads(conn, &mut records).await?;
    Ok(records)
}

/// Upcasts and opens the batch's payloads (one key query for the whole batch), so every
/// projector — live, catching up or rebuilding — decodes the current form.
async fn open_payloads(
    conn: &mut PgConnection,
    records: &mut [EventRecord],
) -> Result<(), sqlx::Error> {
    let stored: Vec<StoredEvent<'_>> = records
        .iter()
        .map(|r| StoredEvent {
            tenant_id: r.tenant_id,
            aggregate_type: &r.aggregate_type,
            aggregate_id: &r.aggregate_id,
            event_type: &r.event_type,
            event_version: &r.event_version,
            payload: &r.payload,
        })
        .collect();
    let opened = privacy::open(conn, &stored).await.map_err(|e| match e {
        OpenError::Db(e) => e,
        other => sqlx::Error::Decode(Box::new(other)),
    })?;
    for (record, current) in records.iter_mut().zip(opened) {
        if let Some(current) = current {
            record.payload = current;
        }
    }
    Ok(())
}
