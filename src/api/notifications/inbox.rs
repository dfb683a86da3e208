//! `/v1/notifications`: the caller's notifications, newest first, and marking one or all
//! read. Rows come from the `notifications` projection; reading one is a
//! `NotificationRead` event on the notification's own stream, reading all an `InboxRead`
//! on the caller's inbox stream, so the read table can be rebuilt.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use uuid::Uuid;

use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::{ApiPath, ApiQuery};
use crate::auth::TenantContext;
use crate::commands;
use crate::error::{AppError, ErrorBody};
use crate::queries::notifications::{ListQuery, NotificationPage, inbox_of};
use crate::state::AppState;

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
    Ok(Json(inbox_of(&state, &ctx, q).await?))
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

/// Marks all my unread notifications read, however many: those I have when asking (one
/// arriving meanwhile stays unread). Idempotent; with nothing unread it records nothing.
/// Like one read, it shows in the listing and `unread_count` a moment later.
#[utoipa::path(post, path = "/v1/notifications/read", tag = "notifications", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn mark_all_read(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
) -> Result<StatusCode, AppError> {
    commands::notifications::mark_all_read(&state, &ctx, &caller_metadata(&ctx, &headers)).await?;
    Ok(StatusCode::NO_CONTENT)
}
