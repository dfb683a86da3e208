//! The tenant-wide event feed (`GET /v1/feed`, docs/feed.md): one tenant's events in
//! catch-up order, (transaction_id, global_position), from a position, with the rule
//! the projectors follow (docs/projections.md) so that a consumer paging from cursor to
//! cursor sees every committed event exactly once, however writers interleave:
//!
//! - only events whose writing transaction is older than every transaction still
//!   running are read (`transaction_id < xmin` of the reading snapshot): nothing can
//!   later commit *before* a position already handed out;
//! - a page that reached the end of what is readable moves the position to
//!   `(xmin − 1, i64::MAX)`: every event still to commit has a transaction id ≥ xmin,
//!   so it sorts after that position, and a filtered consumer does not re-scan the
//!   events it skipped.
//!
//! Payloads and metadata are the stored JSON text, as in the audit export: personal
//! fields stay sealed (`{"aes256gcm": …}`; after an erasure nobody can open them), and a
//! consumer can recompute each event's hash (docs/audit.md).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};

use crate::ids::TenantId;
use crate::store::checkpoint::timestamp_text;

/// Rows a filtered page examines at most: a filter that matches rarely costs one bounded
/// scan per page, not a walk of the whole log in one request. The page's `next` then
/// points past what was examined.
pub const FILTER_SCAN: i64 = 10_000;
/// Longest accepted filter value; longer ones can match nothing.
pub const MAX_FILTER_LEN: usize = 255;
/// At most this many event types per request.
pub const MAX_TYPES: usize = 32;

/// A place in the feed: after the event at (transaction_id, global_position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct FeedPosition {
    pub transaction_id: u64,
    pub global_position: i64,
}

/// Which events a consumer wants (all of the tenant's when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFilter {
    /// Any of these event types (`FileCreated`, …).
    pub event_types: Vec<String>,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
}

impl FeedFilter {
    pub fn is_empty(&self) -> bool {
        self.event_types.is_empty() && self.aggregate_type.is_none() && self.aggregate_id.is_none()
    }
}

/// One event as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FeedEvent {
    #[sqlx(skip)]
    pub position: FeedPosition,
    xid: String,
    pub global_position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The stored JSON text (canonical; what the hash covers).
    pub payload: String,
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct FeedPage {
    pub events: Vec<FeedEvent>,
    /// Where the next page starts (never before the position asked for).
    pub next: FeedPosition,
}

fn decode_xid(text: &str) -> Result<u64, sqlx::Error> {
    text.parse()
        .map_err(|e: std::num::ParseIntError| sqlx::Error::Decode(Box::new(e)))
}

/// Up to `limit` of the tenant's events after `after` that match `filter`, read in one
/// REPEATABLE READ snapshot (the horizon and the rows must come from the same one).
pub async fn read_page(
    pool: &PgPool,
    tenant: TenantId,
    after: FeedPosition,
    limit: i64,
    filter: &FeedFilter,
) -> Result<FeedPage, sqlx::Error> {
    let mut db = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *db)
        .await?;
    let xmin: String = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(&mut *db)
        .await?;
    let xmin = decode_xid(&xmin)?;
    let scan = if filter.is_empty() {
        limit
    } else {
        FILTER_SCAN.max(limit)
    };
    // The scanned window in catch-up order; non-matching rows come back without their
    // JSON (only their position matters: the page's `next` moves past them).
    let mut q = QueryBuilder::<Postgres>::new(
        "WITH scanned AS (
           SELECT transaction_id, global_position, aggregate_type, aggregate_id, sequence,
                  event_type, event_version, payload, metadata, recorded_at
             FROM events
            WHERE tenant_id = ",
    );
    q.push_bind(tenant.0)
        .push(" AND (transaction_id, global_position) > (")
        .push_bind(after.transaction_id.to_string())
        .push("::xid8, ")
        .push_bind(after.global_position)
        .push(") AND transaction_id < ")
        .push_bind(xmin.to_string())
        .push("::xid8 ORDER BY transaction_id, global_position LIMIT ")
        .push_bind(scan)
        .push(
            ")
         SELECT transaction_id::text AS xid, global_position, aggregate_type, aggregate_id,
                sequence, event_type, event_version, recorded_at,
                CASE WHEN matched THEN payload::text ELSE '' END AS payload,
                CASE WHEN matched THEN metadata::text ELSE '' END AS metadata,
                matched
           FROM (SELECT scanned.*, (true",
        );
    if !filter.event_types.is_empty() {
        q.push(" AND event_type = ANY(")
            .push_bind(filter.event_types.clone())
            .push(")");
    }
    if let Some(t) = &filter.aggregate_type {
        q.push(" AND aggregate_type = ").push_bind(t.clone());
    }
    if let Some(id) = &filter.aggregate_id {
        q.push(" AND aggregate_id = ").push_bind(id.clone());
    }
    q.push(") AS matched FROM scanned) s ORDER BY transaction_id, global_position");

    let rows: Vec<(FeedEvent, bool)> = {
        use sqlx::Row;
        let raw = q.build().fetch_all(&mut *db).await?;
        raw.iter()
            .map(|row| {
                let event = <FeedEvent as sqlx::FromRow<_>>::from_row(row)?;
                Ok((event, row.try_get::<bool, _>("matched")?))
            })
            .collect::<Result<_, sqlx::Error>>()?
    };
    db.commit().await?;

    let scanned = rows.len() as i64;
    let mut last_scanned = None;
    let mut events = Vec::new();
    for (mut event, matched) in rows {
        event.position = FeedPosition {
            transaction_id: decode_xid(&event.xid)?,
            global_position: event.global_position,
        };
        last_scanned = Some(event.position);
        if matched {
            events.push(event);
            if events.len() as i64 == limit {
                break;
            }
        }
    }
    let next = if events.len() as i64 == limit {
        events.last().map(|e| e.position).unwrap_or(after)
    } else if scanned == scan {
        // The window ended before the page filled: more may follow right away.
        last_scanned.unwrap_or(after)
    } else {
        // Everything readable was read: skip to the horizon, which every event still to
        // commit sorts after.
        let horizon = FeedPosition {
            transaction_id: xmin.saturating_sub(1),
            global_position: i64::MAX,
        };
        after.max(horizon)
    };
    Ok(FeedPage { events, next })
}

/// Any JSON value (no `type` in the schema).
fn any_json() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .build()
}

/// One event of the feed, as `GET /v1/feed` lists it and webhooks carry it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedItem {
    /// Resume after this event: pass it as `after` (or as `Last-Event-ID`). Webhooks,
    /// which are not resumed by cursor, carry none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// The event's global position (unique; commit order is the feed's order).
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The event's sequence in its stream (1, 2, …).
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The payload exactly as stored and hashed (personal fields sealed, as in the audit
    /// export): an object, or a string for an event without fields.
    #[schema(schema_with = any_json)]
    pub payload: Box<RawValue>,
    /// The stored metadata (actor, request ids, hash chain, signature).
    #[schema(schema_with = any_json)]
    pub metadata: Box<RawValue>,
    /// SHA-256 of the event (docs/audit.md), hex; empty for events written before hashes.
    pub hash: String,
    pub prev_hash: String,
    /// When the event was recorded (microseconds, UTC), as hashed.
    pub recorded_at: String,
}

#[derive(Deserialize, Default)]
struct Hashes {
    #[serde(default)]
    hash: String,
    #[serde(default)]
    prev_hash: String,
}

/// Stored JSON as a raw value on one line (a value stored with line breaks, possible
/// only by writing the table directly, is re-serialized compactly: SSE data and
/// webhook consumers get one line).
fn raw(text: String) -> Result<Box<RawValue>, serde_json::Error> {
    if text.contains(['\n', '\r']) {
        let value: serde_json::Value = serde_json::from_str(&text)?;
        return RawValue::from_string(value.to_string());
    }
    RawValue::from_string(text)
}

impl FeedEvent {
    pub fn into_item(self, cursor: Option<String>) -> Result<FeedItem, serde_json::Error> {
        let hashes: Hashes = serde_json::from_str(&self.metadata).unwrap_or_default();
        Ok(FeedItem {
            cursor,
            position: self.global_position,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version: self.event_version,
            payload: raw(self.payload)?,
            metadata: raw(self.metadata)?,
            hash: hashes.hash,
            prev_hash: hashes.prev_hash,
            recorded_at: timestamp_text(self.recorded_at),
        })
    }
}

/// The tenant's event at `global_position`, as stored (webhook bodies).
pub async fn read_event(
    conn: &mut PgConnection,
    tenant: TenantId,
    global_position: i64,
) -> Result<Option<FeedEvent>, sqlx::Error> {
    let event: Option<FeedEvent> = sqlx::query_as(
        "SELECT transaction_id::text AS xid, global_position, aggregate_type, aggregate_id,
                sequence, event_type, event_version, payload::text AS payload,
                metadata::text AS metadata, recorded_at
           FROM events WHERE tenant_id = $1 AND global_position = $2",
    )
    .bind(tenant.0)
    .bind(global_position)
    .fetch_optional(conn)
    .await?;
    event
        .map(|mut e| {
            e.position = FeedPosition {
                transaction_id: decode_xid(&e.xid)?,
                global_position: e.global_position,
            };
            Ok(e)
        })
        .transpose()
}
