//! `/v1/notifications`: the caller's notifications, newest first, and marking one read.
//! Rows come from the `notifications` projection; reading is a `NotificationRead`
//! event on the notification's own stream, so the read table can be rebuilt.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::api::accounts::auth::caller_metadata;
use crate::api::edge::extract::{ApiPath, ApiQuery};
use crate::auth::TenantContext;
use crate::commands;
use crate::error::{AppError, ErrorBody};
use crate::live::message::{self, EventId, NotificationView};
use crate::state::AppState;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 100;

/// The columns `row_view` reads.
pub(in crate::api) const COLUMNS: &str = "id, seq, transaction_id::text AS xid, global_position, kind, file_id,
    file_name, version_number, status::text AS status, details::text AS details, created_at, read_at";

/// A stored row as clients see it, with its per-recipient `seq`.
pub(in crate::api) fn row_view(row: &PgRow) -> Result<(i64, NotificationView), sqlx::Error> {
    let event_id = EventId {
        transaction_id: row
            .get::<String, _>("xid")
            .parse()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        global_position: row.get("global_position"),
    };
    let details: serde_json::Value =
        serde_json::from_str(row.get("details")).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let kind: String = row.get("kind");
    let file_name: Option<String> = row.get("file_name");
    let version_number: Option<i32> = row.get("version_number");
    let status: Option<String> = row.get("status");
    Ok((
        row.get("seq"),
        NotificationView {
            id: row.get("id"),
            event_id: event_id.to_string(),
            message: message::message(
                &kind,
                file_name.as_deref(),
                version_number,
                status.as_deref(),
                &details,
            ),
            kind,
            file_id: row.get("file_id"),
            file_name,
            version_number,
            status,
            details,
            created_at: row.get("created_at"),
            read_at: row.get("read_at"),
        },
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only notifications not yet marked read.
    #[serde(default)]
    pub unread: bool,
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NotificationPage {
    /// Newest first.
    pub items: Vec<NotificationView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
    /// All of the caller's unread notifications (for a badge), whatever the page.
    pub unread_count: i64,
}

/// My notifications (completed, duplicate, virus found, failed, shared with me; for admins,
/// webhook endpoints disabled after failures), newest first. A
/// notification appears a moment after its event (the projection runs asynchronously).
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = NotificationPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ctx: TenantContext,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<NotificationPage>, AppError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::Validation(format!(
            "limit must be 1 to {MAX_LIMIT}"
        )));
    }
    let before: Option<i64> = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| AppError::BadRequest("cursor is not valid".into()))?,
        ),
    };
    let mut tx = ctx.begin(&state.db).await?;
    // RLS limits rows to the tenant; naming it lets the planner use the listing index.
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM notifications
          WHERE tenant_id = $1 AND recipient_id = $2 AND kind <> 'version_status'
            AND ($3::bigint IS NULL OR seq < $3) AND (NOT $4 OR read_at IS NULL)
          ORDER BY seq DESC
          LIMIT $5"
    ))
    .bind(ctx.tenant_id.0)
    .bind(ctx.user_id.0)
    .bind(before)
    .bind(q.unread)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await?;
    let unread_count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications
          WHERE tenant_id = $1 AND recipient_id = $2 AND kind <> 'version_status' AND read_at IS NULL",
    )
    .bind(ctx.tenant_id.0)
    .bind(ctx.user_id.0)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let has_more = rows.len() as i64 > limit;
    let mut items = Vec::with_capacity(rows.len());
    let mut last_seq = 0;
    for row in rows.iter().take(limit as usize) {
        let (seq, view) = row_view(row)?;
        last_seq = seq;
        items.push(view);
    }
    let next_cursor = has_more.then(|| last_seq.to_string());
    Ok(Json(NotificationPage {
        items,
        next_cursor,
        unread_count,
    }))
}

/// Marks one of my notifications read. Idempotent: reading it again records nothing.
/// Someone else's notification, a status-only event id, or an unknown id: 404.
#[utoipa::path(post, path = "/v1/notifications/{id}/read", tag = "notifications", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "notification id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn mark_read(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, AppError> {
    commands::notifications::mark_read(&state, &ctx, &caller_metadata(&ctx, &headers), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
