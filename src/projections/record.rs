//! An event as projectors see it: a row of the log in catch-up order.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::storable::storable_json;
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
    /// or `[erased]` (`privacy::open`), with what Postgres cannot store (`\u0000`,
    /// unpaired surrogates) replaced by U+FFFD (`storable::storable_json`). Exactly the
    /// stored text (canonical JSON) for ordinary current-version events without personal
    /// fields; the stored bytes themselves are what `store::verify` hashes, never this.
    pub payload: String,
    pub metadata: Map<String, Value>,
    pub recorded_at: DateTime<Utc>,
}

impl EventRecord {
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }

    /// The event's identity, for failure records and logs.
    pub fn reference(&self) -> EventRef {
        EventRef {
            position: self.position,
            tenant_id: self.tenant_id,
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            event_type: self.event_type.clone(),
        }
    }

    /// A row of the catch-up query. `Err` only when the row itself cannot be read (the
    /// database answered something else than the query asks); an event whose metadata
    /// is not a JSON object is `Ok(Err(_))`: that event is unreadable, not the batch.
    fn from_row(row: LogRow) -> Result<Result<Self, Unreadable>, sqlx::Error> {
        let record = Self {
            position: CatchUpPosition {
                transaction_id: row
                    .xid
                    .parse()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                global_position: row.global_position,
            },
            tenant_id: row.tenant_id,
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence,
            event_type: row.event_type,
            event_version: row.event_version,
            payload: storable_json(&row.payload).into_owned(),
            metadata: Map::new(),
            recorded_at: row.recorded_at,
        };
        Ok(match serde_json::from_str(&storable_json(&row.metadata)) {
            Ok(metadata) => Ok(Self { metadata, ..record }),
            Err(err) => Err(Unreadable {
                event: record.reference(),
                error: format!("metadata is not a JSON object: {err}"),
            }),
        })
    }
}

/// Which event: enough to find it again (position) and to tell an operator what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    pub position: CatchUpPosition,
    pub tenant_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
}

/// An event that cannot be read into an [`EventRecord`]: metadata that is not an object,
/// a version no upcaster knows, a payload that does not parse, a personal field that
/// does not open. A failure of that one event, like a projector refusing it.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub event: EventRef,
    pub error: String,
}

/// The next events in catch-up order. Reading stops at the first unreadable event:
/// `events` are the readable ones before it, `unreadable` (if any) comes right after
/// them, so the runtime handles it exactly as an event its projector failed to apply.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<EventRecord>,
    pub unreadable: Option<Unreadable>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.unreadable.is_none()
    }
}

/// A row of `NEXT_BATCH_SQL` / `EVENT_AT_SQL`: the transaction id and the JSON columns
/// as text (xid8 has no Rust type; the text is what the hash chain covered).
#[derive(sqlx::FromRow)]
struct LogRow {
    xid: String,
    global_position: i64,
    tenant_id: Uuid,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
    recorded_at: DateTime<Utc>,
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
) -> Result<Batch, sqlx::Error> {
    let rows = sqlx::query_as(NEXT_BATCH_SQL)
        .bind(after.transaction_id.to_string())
        .bind(after.global_position)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    read_rows(conn, rows).await
}

/// Reads the one event at `position` (retrying a parked event); `None` if there is no
/// such event.
pub async fn read_event(
    conn: &mut PgConnection,
    position: CatchUpPosition,
) -> Result<Option<Result<EventRecord, Unreadable>>, sqlx::Error> {
    let rows = sqlx::query_as(EVENT_AT_SQL)
        .bind(position.transaction_id.to_string())
        .bind(position.global_position)
        .fetch_all(&mut *conn)
        .await?;
    let mut batch = read_rows(conn, rows).await?;
    Ok(match (batch.events.pop(), batch.unreadable) {
        (_, Some(unreadable)) => Some(Err(unreadable)),
        (Some(event), None) => Some(Ok(event)),
        (None, None) => None,
    })
}

const EVENT_AT_SQL: &str = r#"
SELECT transaction_id::text AS xid, global_position, tenant_id, aggregate_type,
       aggregate_id, sequence, event_type, event_version, payload::text AS payload,
       metadata::text AS metadata, recorded_at
  FROM events
 WHERE transaction_id = $1::text::xid8 AND global_position = $2"#;

async fn read_rows(conn: &mut PgConnection, rows: Vec<LogRow>) -> Result<Batch, sqlx::Error> {
    let mut events = Vec::with_capacity(rows.len());
    let mut unreadable = None;
    for row in rows {
        match EventRecord::from_row(row)? {
            Ok(record) => events.push(record),
            Err(u) => {
                unreadable = Some(u);
                break;
            }
        }
    }
    match open_payloads(conn, &mut events).await {
        Ok(()) => {}
        Err(OpenError::Db(err)) => return Err(err),
        // Some event of the batch does not open (opening is all or nothing): find the
        // first one, opening one event at a time.
        Err(_) => {
            for i in 0..events.len() {
                match open_payloads(conn, &mut events[i..=i]).await {
                    Ok(()) => {}
                    Err(OpenError::Db(err)) => return Err(err),
                    Err(err) => {
                        unreadable = Some(Unreadable {
                            event: events[i].reference(),
                            error: err.to_string(),
                        });
                        events.truncate(i);
                        break;
                    }
                }
            }
        }
    }
    Ok(Batch { events, unreadable })
}

/// Upcasts and opens the batch's payloads (one key query for the whole batch), so every
/// projector — live, catching up or rebuilding — decodes the current form. A decrypted
/// personal field may hold what Postgres cannot store, so the result is made storable
/// again.
async fn open_payloads(
    conn: &mut PgConnection,
    records: &mut [EventRecord],
) -> Result<(), OpenError> {
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
    let opened = privacy::open(conn, &stored).await?;
    for (record, current) in records.iter_mut().zip(opened) {
        if let Some(current) = current {
            record.payload = storable_json(&current).into_owned();
        }
    }
    Ok(())
}
