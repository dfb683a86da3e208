//! Reading one stream as stored — for `GET /v1/files/{id}/history`, time travel and
//! `chronicle audit history`. The event store decodes events into an aggregate; this
//! shows them as an auditor sees them: payload, metadata, time and hashes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use super::metadata::keys;
use crate::ids::TenantId;

/// One stored event of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    /// Position in the stream (1-based): the aggregate's version after this event.
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub metadata: EventMeta,
    pub recorded_at: DateTime<Utc>,
    pub prev_hash: String,
    pub hash: String,
}

/// Who caused the event and as part of what.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EventMeta {
    /// A user id, or `system:<component>`.
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
}

/// Names one stream of one tenant.
#[derive(Debug, Clone, Copy)]
pub struct StreamRef<'a> {
    pub tenant: TenantId,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
}

/// Up to `limit` events with `sequence > after`, in order.
pub async fn page(
    pool: &PgPool,
    stream: StreamRef<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows: Vec<EventRow> = sqlx::query_as(
        r#"
SELECT sequence, event_type, event_version, payload::text AS payload,
       metadata::text AS metadata, recorded_at
  FROM events
 WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3 AND sequence > $4
 ORDER BY sequence
 LIMIT $5"#,
    )
    .bind(stream.tenant.0)
    .bind(stream.aggregate_type)
    .bind(stream.aggregate_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(stored_event).collect()
}

/// An event row as `page` selects it (JSON columns as text).
#[derive(sqlx::FromRow)]
struct EventRow {
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
    recorded_at: DateTime<Utc>,
}

fn stored_event(row: EventRow) -> Result<StoredEvent, sqlx::Error> {
    let json = |text: &str| -> Result<Value, sqlx::Error> {
        serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    let metadata = json(&row.metadata)?;
    let meta = |key: &str| {
        metadata
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(StoredEvent {
        sequence: row.sequence,
        event_type: row.event_type,
        event_version: row.event_version,
        payload: json(&row.payload)?,
        metadata: EventMeta {
            actor: meta(keys::ACTOR),
            request_id: meta(keys::REQUEST_ID),
            correlation_id: meta(keys::CORRELATION_ID),
            causation_id: meta(keys::CAUSATION_ID),
        },
        recorded_at: row.recorded_at,
        prev_hash: meta(keys::PREV_HASH).unwrap_or_default(),
        hash: meta(keys::HASH).unwrap_or_default(),
    })
}

/// The stream's last sequence (0 when it has no events).
pub async fn end(pool: &PgPool, stream: StreamRef<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(max(sequence), 0) FROM events
          WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3",
    )
    .bind(stream.tenant.0)
    .bind(stream.aggregate_type)
    .bind(stream.aggregate_id)
    .fetch_one(pool)
    .await
}

/// Whether the stream holds a `Purged` event (a file purged for good).
pub async fn purged(pool: &PgPool, stream: StreamRef<'_>) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events
          WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3
            AND event_type = 'Purged')",
    )
    .bind(stream.tenant.0)
    .bind(stream.aggregate_type)
    .bind(stream.aggregate_id)
    .fetch_one(pool)
    .await
}

/// The last sequence recorded at or before `as_of` (0 when the stream started later).
/// A stream's `recorded_at` never decreases: one writer at a time prepares a stream's
/// next commit after loading the previous one, and stamps it then (instances' clocks
/// must agree, docs/audit.md); older events hold their transaction's start.
pub async fn sequence_at(
    pool: &PgPool,
    stream: StreamRef<'_>,
    as_of: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(max(sequence), 0) FROM events
          WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3
            AND recorded_at <= $4",
    )
    .bind(stream.tenant.0)
    .bind(stream.aggregate_type)
    .bind(stream.aggregate_id)
    .bind(as_of)
    .fetch_one(pool)
    .await
}

/// The tenant owning a stream, for tools that are given only an aggregate id (ids are
/// UUIDv7, so one id names at most one stream in practice; the oldest wins otherwise).
pub async fn tenant_of(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<TenantId>, sqlx::Error> {
    let tenant: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT tenant_id FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
          ORDER BY global_position LIMIT 1",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_optional(pool)
    .await?;
    Ok(tenant.map(TenantId))
}

/// One event as a line for people: `seq  time  Type vN  actor  short-hash  payload`.
pub struct StoreEventLine<'a>(pub &'a StoredEvent);

/// Payloads longer than this are cut (with `…`) to keep one line per event readable.
const PAYLOAD_CHARS: usize = 200;

impl std::fmt::Display for StoreEventLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.0;
        let payload = e.payload.to_string();
        let payload = match payload.char_indices().nth(PAYLOAD_CHARS) {
            Some((cut, _)) => format!("{}…", &payload[..cut]),
            None => payload,
        };
        write!(
            f,
            "{:>6}  {}  {} v{}  {}  {}  {}",
            e.sequence,
            e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3fZ"),
            e.event_type,
            e.event_version,
            e.metadata.actor.as_deref().unwrap_or("?"),
            e.hash.get(..12).unwrap_or(&e.hash),
            payload
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_sequence_time_type_actor_short_hash_and_cut_payload() {
        let event = StoredEvent {
            sequence: 7,
            event_type: "Renamed".into(),
            event_version: "1".into(),
            payload: serde_json::json!({"Renamed": {"display_name": "x".repeat(300)}}),
            metadata: EventMeta {
                actor: Some("system:cli".into()),
                request_id: None,
                correlation_id: None,
                causation_id: None,
            },
            recorded_at: DateTime::from_timestamp_micros(1_764_081_000_123_000).unwrap(),
            prev_hash: "0".repeat(64),
            hash: "5d4a46fec6d6198a9825ecd02c2359b3f4982fcca811f4554f9df77d0a4cc9f3".into(),
        };
        let line = StoreEventLine(&event).to_string();
        assert!(
            line.starts_with("     7  2025-11-25 14:30:00.123Z  Renamed v1  system:cli  5d4a46fec6d6  {\"Renamed\""),
            "{line}"
        );
        assert!(line.ends_with('…') && !line.contains('\n'), "{line}");
        let prefix = r#"{"Renamed":{"display_name":""#;
        assert_eq!(
            line.chars().filter(|c| *c == 'x').count(),
            200 - prefix.len()
        );
    }
}
