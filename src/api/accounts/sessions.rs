//! `/v1/sessions`: the caller's logins, and revoking one (a lost device).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use uuid::Uuid;

use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::{ApiPath, ApiQuery, NoParams};
use crate::auth::TenantContext;
use crate::commands::sessions;
use crate::error::{AppError, ErrorBody};
use crate::queries::sessions::{SessionView, sessions_of};
use crate::state::AppState;

/// My sessions, newest first (from the `sessions` read table; a login made a moment ago
/// may take a few hundred milliseconds to appear).
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])),
    params(NoParams),
    responses((status = 200, body = [SessionView]), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ctx: TenantContext,
    _: ApiQuery<NoParams>,
) -> Result<Json<Vec<SessionView>>, AppError> {
    Ok(Json(sessions_of(&state, &ctx).await?))
}

/// Revoke one of my sessions (admins: any session of their tenant).
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "session id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, AppError> {
    sessions::revoke(&state, &ctx, &caller_metadata(&ctx, &headers), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
