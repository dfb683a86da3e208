//! `/v1/sessions`: the caller's logins, and revoking one (a lost device).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::api::accounts::auth::caller_metadata;
use crate::api::edge::extract::{ApiPath, ApiQuery, NoParams};
use crate::auth::TenantContext;
use crate::commands::sessions;
use crate::error::{AppError, ErrorBody};
use crate::state::AppState;

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub user_agent: String,
    pub ip_address: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoke_reason: Option<String>,
    /// The session this request is made with.
    #[sqlx(default)]
    pub current: bool,
}

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

/// The caller's sessions, newest first (the API's list and the console's Devices page).
pub(crate) async fn sessions_of(
    state: &AppState,
    ctx: &TenantContext,
) -> Result<Vec<SessionView>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let mut rows: Vec<SessionView> = sqlx::query_as(
        "SELECT id, user_agent, ip_address, created_at, last_seen_at, revoked_at, revoke_reason
           FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 100",
    )
    .bind(ctx.user_id.0)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    for row in &mut rows {
        row.current = row.id == ctx.session_id;
    }
    Ok(rows)
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
