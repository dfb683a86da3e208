//! `GET /v1/events`: the caller's notifications and version status changes as
//! Server-Sent Events, live from the instance's hub (src/live) and resumable without
//! loss from the `notifications` table.
//!
//! Order of work per client: subscribe to the hub *first*, then read the table after
//! `Last-Event-ID`, then forward live rows — so nothing committed in between is missed.
//! Every row carries its per-recipient `seq`: a live row that is not the next one
//! (lost or reordered publication), a lagging client, or a hub reconnect makes the
//! client re-read the table from its last id instead of skipping anything. Duplicates
//! (`seq` already sent) are dropped.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::api::edge::extract::ApiQuery;
use crate::auth::credentials::Bearer;
use crate::auth::{Credentials, TenantContext};
use crate::error::{AppError, AuthFailure};
use crate::live::message::{EventId, NotificationView, UploadProgress};
use crate::live::{Live, Subscription};
use crate::queries::notifications;
use crate::state::AppState;

/// Rows per backfill query.
const PAGE: i64 = 500;
/// How often a long-lived stream re-checks that its session is alive and the user not
/// banned (a request would check on every call; a stream has only one request).
const STANDING_EVERY: Duration = Duration::from_secs(60);

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The access token, for clients that cannot send headers (browser `EventSource`).
    /// Accepted on this route only; prefer the `Authorization` header.
    pub access_token: Option<String>,
    /// Resume after this event id (same as the `Last-Event-ID` header, which wins).
    #[param(pattern = "^[0-9]{1,18}-[0-9]{1,18}$")]
    pub last_event_id: Option<String>,
}

/// The caller of the stream: a `TenantContext` built from the `Authorization` header
/// or, on this route only, `?access_token=`; plus when the token expires (from the
/// claims verified once for the request, src/auth/credentials.rs).
pub struct StreamCaller {
    ctx: TenantContext,
    expires_at: i64,
    last_event_id: Option<String>,
}

impl FromRequestParts<AppState> for StreamCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let ApiQuery(query) = ApiQuery::<EventsQuery>::from_uri(&parts.uri)?;
        if !parts.headers.contains_key(AUTHORIZATION)
            && let Some(token) = query.access_token
        {
            // The request's one verification: the layer found no header to verify.
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| AppError::Unauthorized(AuthFailure::MalformedToken))?;
            let credentials = Credentials::verify(Some(&value), &state.verifier()).await?;
            parts.extensions.insert(credentials);
        }
        let ctx = TenantContext::from_request_parts(parts, state).await?;
        let expires_at = match Credentials::of(parts, &state.tokens).bearer() {
            Some(Bearer::Token(claims)) => claims.exp,
            // A key without expiry: the stream ends only with its standing.
            Some(Bearer::Key(grant)) => grant.expires_at.unwrap_or(i64::MAX / 2),
            // The console's cookie: the stream ends when the cookie would.
            Some(Bearer::Browser(grant)) => grant.expires_at,
            None => return Err(AppError::Unauthorized(AuthFailure::MalformedToken)),
        };
        Ok(StreamCaller {
            ctx,
            expires_at,
            last_event_id: query.last_event_id,
        })
    }
}

/// Where a client stands: the last row sent (or the point it started from).
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    id: EventId,
    seq: i64,
}

/// My notifications and version status changes, live (`text/event-stream`). Each
/// event's `id` is `<transaction_id>-<global_position>`, its `event` is `notification`
/// or `version_status`, its `data` a notification object. My resumable uploads'
/// progress comes as `upload_progress` events without an id (an `UploadProgress`). Send `Last-Event-ID` (or
/// `?last_event_id=`) to receive exactly what was missed; without it the stream starts
/// now. The stream ends when the access token expires, the session is revoked, or the
/// server shuts down: reconnect with a fresh token and the last id.
#[utoipa::path(get, path = "/v1/events", tag = "notifications", security(("bearer" = [])),
    params(EventsQuery, ("Last-Event-ID" = Option<String>, Header, pattern = "^[0-9]{1,18}-[0-9]{1,18}$", description = "resume after this event id")),
    responses((status = 200, content_type = "text/event-stream", description = "text/event-stream of NotificationView objects"),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    caller: StreamCaller,
    headers: HeaderMap,
) -> Result<impl IntoResponse, AppError> {
    // Both are checked; the header wins (an `EventSource` reconnecting to a URL with
    // `?last_event_id=` adds the later position as the header), but a malformed query
    // value is refused even beside a good header.
    let parse = |id: &str, name: &str| {
        id.parse::<EventId>()
            .map_err(|e| AppError::BadRequest(format!("{name}: {e}")))
    };
    let from_query = caller
        .last_event_id
        .as_deref()
        .map(|id| parse(id, "last_event_id"))
        .transpose()?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(parse(v.to_str().unwrap_or("invalid"), "Last-Event-ID")?),
        None => from_query,
    };
    let ctx = caller.ctx;
    // Subscribe before reading the table: a row committed meanwhile arrives live.
    let subscription = state.live.subscribe(ctx.tenant_id.0, ctx.user_id.0);
    let start = match resume {
        Some(id) => Cursor {
            id,
            seq: notifications::seq_at(&state, &ctx, id).await?,
        },
        None => latest(&state, &ctx).await?,
    };
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(pump(
        state,
        caller,
        subscription,
        start,
        resume.is_some(),
        tx,
    ));
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

type Tx = mpsc::Sender<Result<Event, Infallible>>;

/// Feeds one client until it goes away, its token expires, its session dies, or the
/// server shuts down. Any failure ends the stream; the client resumes with its last id.
async fn pump(
    state: AppState,
    caller: StreamCaller,
    mut subscription: Subscription,
    mut cursor: Cursor,
    backfill: bool,
    tx: Tx,
) {
    let ctx = caller.ctx;
    let shutdown = state.live.shutdown().clone();
    if backfill && resync(&state, &ctx, &mut cursor, &tx).await.is_err() {
        return;
    }
    let remaining = (caller.expires_at - chrono::Utc::now().timestamp()).max(0) as u64;
    let expiry = tokio::time::sleep(Duration::from_secs(remaining));
    tokio::pin!(expiry);
    let mut standing = tokio::time::interval(STANDING_EVERY);
    standing.tick().await;
    loop {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
            _ = &mut expiry => return,
            _ = standing.tick() => {
                match ctx.still_standing(&state.db).await {
                    Ok(true) => Ok(()),
                    Ok(false) => return,
                    Err(err) => Err(anyhow::Error::from(err)),
                }
            }
            live = subscription.recv() => match live {
                Ok(Live::Row(p)) if p.seq <= cursor.seq => Ok(()),
                Ok(Live::Row(p)) if p.seq == cursor.seq + 1 => {
                    let next = Cursor { id: p.row.event_id.parse().unwrap_or(cursor.id), seq: p.seq };
                    match send(&tx, &p.row).await {
                        Ok(()) => { cursor = next; Ok(()) }
                        Err(()) => return,
                    }
                }
                Ok(Live::Progress(p)) => match send_progress(&tx, &p.progress).await {
                    Ok(()) => Ok(()),
                    Err(()) => return,
                },
                // A gap: a publication was lost or overtaken. The table has it.
                Ok(Live::Row(_)) | Ok(Live::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    resync(&state, &ctx, &mut cursor, &tx).await
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if let Err(err) = outcome {
            tracing::warn!(
                error = format!("{err:#}"),
                "event stream ended; the client resumes with its last id"
            );
            return;
        }
    }
}

async fn send(tx: &Tx, row: &NotificationView) -> Result<(), ()> {
    let kind = if row.is_notification() {
        "notification"
    } else {
        "version_status"
    };
    let event = Event::default()
        .id(row.event_id.clone())
        .event(kind)
        .json_data(row)
        .map_err(|err| tracing::error!(error = %err, "event not serializable"))?;
    tx.send(Ok(event)).await.map_err(|_| ())
}

/// Upload progress: no id, so it never moves the client's resume point.
async fn send_progress(tx: &Tx, progress: &UploadProgress) -> Result<(), ()> {
    let event = Event::default()
        .event("upload_progress")
        .json_data(progress)
        .map_err(|err| tracing::error!(error = %err, "event not serializable"))?;
    tx.send(Ok(event)).await.map_err(|_| ())
}

/// Sends every row after the cursor from the table, in catch-up order.
async fn resync(
    state: &AppState,
    ctx: &TenantContext,
    cursor: &mut Cursor,
    tx: &Tx,
) -> anyhow::Result<()> {
    loop {
        let rows = notifications::after(state, ctx, cursor.id, PAGE).await?;
        for (seq, view) in &rows {
            let id = view.event_id.parse().unwrap_or(cursor.id);
            if send(tx, view).await.is_err() {
                anyhow::bail!("client gone");
            }
            *cursor = Cursor { id, seq: *seq };
        }
        if (rows.len() as i64) < PAGE {
            return Ok(());
        }
    }
}

/// My newest row: a stream without `Last-Event-ID` starts after it.
async fn latest(state: &AppState, ctx: &TenantContext) -> Result<Cursor, AppError> {
    Ok(match notifications::newest(state, ctx).await? {
        None => Cursor::default(),
        Some((seq, id)) => Cursor { id, seq },
    })
}
