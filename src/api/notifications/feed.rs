//! `GET /v1/feed` (pages) and `GET /v1/feed/stream` (SSE): the tenant's events in commit
//! order from an opaque cursor (src/feed, docs/feed.md). Readers of history only
//! (`FeedReader`: auditors and admins, and API keys of those roles with `feed:read`).
//!
//! A cursor is `feed:<transaction_id>:<global_position>`, sealed like the listing
//! cursors (src/queries/cursor.rs: HMAC bound to the tenant), so it carries everything a
//! consumer needs to resume on any instance, after any restart, and cannot be forged to
//! point anywhere else.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use crate::aggregates::Role;
use crate::api::edge::extract::ApiQuery;
use crate::auth::context::session_standing;
use crate::auth::{FeedReader, TenantContext};
use crate::error::{AppError, ErrorBody};
use crate::feed::{self, FeedEvent, FeedFilter, FeedItem, FeedPosition, MAX_FILTER_LEN, MAX_TYPES};
use crate::queries::cursor::CursorKey;
use crate::state::AppState;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
/// Events per read while a stream catches up.
const STREAM_PAGE: i64 = 500;
/// How often a caught-up stream looks for new events.
const STREAM_POLL: Duration = Duration::from_millis(250);
/// How often a long-lived stream re-checks that its caller may still read the feed.
const STANDING_EVERY: Duration = Duration::from_secs(60);

/// What `/v1/feed` takes (documentation; parsed by `FeedQuery::parse`, since `type`
/// repeats).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // the OpenAPI description of what FeedQuery::parse reads
pub struct FeedParams {
    /// Start after this cursor (an item's `cursor` or a page's `next`); absent or empty:
    /// from the tenant's first event.
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub after: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Only these event types (repeat the parameter for several), e.g. `FileCreated`.
    #[serde(rename = "type")]
    #[param(rename = "type", pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub event_type: Option<Vec<String>>,
    /// Only events of this aggregate type, e.g. `file`.
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub aggregate_type: Option<String>,
    /// Only events of this aggregate (requires `aggregate_type`).
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub aggregate_id: Option<String>,
}

/// The parsed query of both routes.
#[derive(Debug, Default)]
struct FeedQuery {
    after: Option<String>,
    limit: i64,
    filter: FeedFilter,
}

fn bad(message: impl Into<String>) -> AppError {
    AppError::BadRequest(message.into())
}

impl FeedQuery {
    fn parse(uri: &Uri) -> Result<Self, AppError> {
        let ApiQuery(pairs) = ApiQuery::<Vec<(String, String)>>::from_uri(uri)?;
        let mut q = FeedQuery {
            limit: DEFAULT_LIMIT,
            ..Default::default()
        };
        let mut seen_limit = false;
        for (name, value) in pairs {
            let once = |slot: &Option<String>| {
                if slot.is_some() {
                    Err(bad(format!("{name} is given twice")))
                } else {
                    Ok(())
                }
            };
            if value.len() > MAX_FILTER_LEN && name != "after" {
                return Err(bad(format!("{name} is longer than {MAX_FILTER_LEN} bytes")));
            }
            match name.as_str() {
                "after" => {
                    once(&q.after)?;
                    q.after = Some(value);
                }
                "limit" => {
                    if std::mem::replace(&mut seen_limit, true) {
                        return Err(bad("limit is given twice"));
                    }
                    q.limit = value
                        .parse::<i64>()
                        .ok()
                        .filter(|l| (1..=MAX_LIMIT).contains(l))
                        .ok_or_else(|| bad(format!("limit must be between 1 and {MAX_LIMIT}")))?;
                }
                "type" if !value.is_empty() => {
                    if q.filter.event_types.len() == MAX_TYPES {
                        return Err(bad(format!("at most {MAX_TYPES} types")));
                    }
                    q.filter.event_types.push(value);
                }
                "aggregate_type" if !value.is_empty() => {
                    once(&q.filter.aggregate_type)?;
                    q.filter.aggregate_type = Some(value);
                }
                "aggregate_id" if !value.is_empty() => {
                    once(&q.filter.aggregate_id)?;
                    q.filter.aggregate_id = Some(value);
                }
                // Unknown parameters are ignored, as on every other route.
                _ => {}
            }
        }
        if q.filter.aggregate_id.is_some() && q.filter.aggregate_type.is_none() {
            return Err(bad("aggregate_id requires aggregate_type"));
        }
        Ok(q)
    }
}

/// Seals a feed position for `tenant`.
fn encode_cursor(key: &CursorKey, tenant: Uuid, at: FeedPosition) -> String {
    key.seal(
        tenant,
        &format!("feed:{}:{}", at.transaction_id, at.global_position),
    )
}

/// The position of a cursor `encode_cursor` made for this tenant; anything else is 400.
fn decode_cursor(key: &CursorKey, tenant: Uuid, cursor: &str) -> Result<FeedPosition, AppError> {
    let invalid = || bad("invalid cursor");
    let text = key.open(tenant, cursor)?;
    let rest = text.strip_prefix("feed:").ok_or_else(invalid)?;
    let (xid, position) = rest.split_once(':').ok_or_else(invalid)?;
    Ok(FeedPosition {
        transaction_id: xid.parse().map_err(|_| invalid())?,
        global_position: position.parse().map_err(|_| invalid())?,
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedPage {
    /// Oldest first, in commit order.
    pub items: Vec<FeedItem>,
    /// Pass as `after` for the following page (also when this one is empty).
    pub next: String,
}

fn item(key: &CursorKey, tenant: Uuid, e: FeedEvent) -> Result<FeedItem, AppError> {
    let cursor = encode_cursor(key, tenant, e.position);
    e.into_item(Some(cursor))
        .map_err(|err| AppError::Internal(err.into()))
}

fn start(key: &CursorKey, tenant: Uuid, after: Option<&str>) -> Result<FeedPosition, AppError> {
    match after.filter(|a| !a.is_empty()) {
        Some(cursor) => decode_cursor(key, tenant, cursor),
        None => Ok(FeedPosition::default()),
    }
}

/// The tenant's events in commit order after `after`, filtered, one page at a time. A
/// page never skips or repeats an event whatever writers do concurrently; `next` is
/// always present (an empty page means: nothing new yet, ask again later with `next`).
#[utoipa::path(get, path = "/v1/feed", tag = "feed", security(("bearer" = [])),
    params(FeedParams),
    responses((status = 200, body = FeedPage), (status = 400, body = ErrorBody),
               (status = 403, body = ErrorBody)))]
pub async fn page(
    State(state): State<AppState>,
    FeedReader(ctx): FeedReader,
    uri: Uri,
) -> Result<Json<FeedPage>, AppError> {
    let q = FeedQuery::parse(&uri)?;
    let key = CursorKey::new(state.config.jwt_secret.expose());
    let tenant = ctx.tenant_id.0;
    let after = start(&key, tenant, q.after.as_deref())?;
    let page = feed::read_page(&state.db, ctx.tenant_id, after, q.limit, &q.filter).await?;
    let items = page
        .events
        .into_iter()
        .map(|e| item(&key, tenant, e))
        .collect::<Result<_, _>>()?;
    Ok(Json(FeedPage {
        items,
        next: encode_cursor(&key, tenant, page.next),
    }))
}

/// The feed live (`text/event-stream`): every event after `Last-Event-ID` (or
/// `?after=`, or from the first event) as `event: feed`, `id:` its cursor, `data:` a
/// `FeedItem`; then new events as they commit. Reconnect with the last id to resume on
/// any instance. Filters as on `/v1/feed`; `limit` is ignored.
#[utoipa::path(get, path = "/v1/feed/stream", tag = "feed", security(("bearer" = [])),
    params(FeedParams, ("Last-Event-ID" = Option<String>, Header, pattern = "^[A-Za-z0-9_-]*$", description = "resume after this cursor")),
    responses((status = 200, content_type = "text/event-stream", description = "text/event-stream of FeedItem objects"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    FeedReader(ctx): FeedReader,
    headers: HeaderMap,
    uri: Uri,
) -> Result<impl IntoResponse, AppError> {
    let q = FeedQuery::parse(&uri)?;
    let key = CursorKey::new(state.config.jwt_secret.expose());
    // Both are checked; the header wins. A browser's `EventSource` reconnects to the
    // URL it was opened with (`?after=` and all) adding `Last-Event-ID`, so the header is
    // the later position; but a malformed `after` is refused even beside a good header.
    let tenant = ctx.tenant_id.0;
    let from_query = start(&key, tenant, q.after.as_deref())?;
    let after = match headers.get("last-event-id") {
        Some(v) => {
            let cursor = v
                .to_str()
                .map_err(|_| bad("Last-Event-ID: invalid cursor"))?;
            start(&key, tenant, Some(cursor))?
        }
        None => from_query,
    };
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(pump(state, ctx, key, after, q.filter, tx));
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

type Tx = mpsc::Sender<Result<Event, Infallible>>;

/// Feeds one client until it goes away, loses the right to read, or the server shuts
/// down. Any failure ends the stream; the client resumes with its last id.
async fn pump(
    state: AppState,
    ctx: TenantContext,
    key: CursorKey,
    mut after: FeedPosition,
    filter: FeedFilter,
    tx: Tx,
) {
    let shutdown = state.live.shutdown().clone();
    let tenant = ctx.tenant_id.0;
    let mut standing = tokio::time::interval(STANDING_EVERY);
    standing.tick().await;
    loop {
        let page = match feed::read_page(&state.db, ctx.tenant_id, after, STREAM_PAGE, &filter)
            .await
        {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(error = %err, "feed stream ended; the client resumes with its last id");
                return;
            }
        };
        let caught_up = (page.events.len() as i64) < STREAM_PAGE;
        for e in page.events {
            let event = item(&key, tenant, e).and_then(|i| {
                Event::default()
                    .id(i.cursor.clone().unwrap_or_default())
                    .event("feed")
                    .json_data(&i)
                    .map_err(|e| AppError::Internal(e.into()))
            });
            match event {
                Ok(event) => {
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                Err(err) => {
                    tracing::error!(error = ?err, "feed item not serializable");
                    return;
                }
            }
        }
        after = page.next;
        if !caught_up {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
            _ = tokio::time::sleep(STREAM_POLL) => {}
            _ = standing.tick() => {
                // A key's role is fixed at creation: its standing is revocation, expiry
                // and its creator; a person's role can change under the stream.
                let allowed = if ctx.via_key {
                    ctx.still_standing(&state.db).await
                } else {
                    session_standing(&state.db, tenant, ctx.session_id, ctx.user_id.0)
                        .await
                        .map(|s| matches!(s, Ok(Role::Auditor | Role::Admin)))
                };
                match allowed {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(err) => {
                        tracing::warn!(error = %err, "feed stream ended: standing unknown");
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(q: &str) -> Uri {
        format!("/v1/feed?{q}").parse().unwrap()
    }

    #[test]
    fn feed_cursors_round_trip_and_refuse_other_kinds() {
        let key = CursorKey::new("secret");
        let tenant = Uuid::now_v7();
        let at = FeedPosition {
            transaction_id: 1234,
            global_position: 99,
        };
        let cursor = encode_cursor(&key, tenant, at);
        assert_eq!(decode_cursor(&key, tenant, &cursor).unwrap(), at);
        assert!(decode_cursor(&key, Uuid::now_v7(), &cursor).is_err());
        assert!(decode_cursor(&key, tenant, &key.seal(tenant, "audit:1:2")).is_err());
        assert!(decode_cursor(&key, tenant, &key.seal(tenant, "feed:x:2")).is_err());
        assert!(decode_cursor(&key, tenant, "bm90LWEtY3Vyc29y").is_err());
    }

    #[test]
    fn the_query_takes_repeated_types_and_refuses_bad_values() {
        let q = FeedQuery::parse(&uri("type=A&type=B&aggregate_type=file&limit=7")).unwrap();
        assert_eq!(q.filter.event_types, ["A", "B"]);
        assert_eq!(q.filter.aggregate_type.as_deref(), Some("file"));
        assert_eq!(q.limit, 7);
        assert_eq!(FeedQuery::parse(&uri("")).unwrap().limit, DEFAULT_LIMIT);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "limit=1&limit=2",
            "aggregate_id=x",
            "after=a&after=b",
        ] {
            assert!(FeedQuery::parse(&uri(bad)).is_err(), "accepted {bad}");
        }
    }
}
