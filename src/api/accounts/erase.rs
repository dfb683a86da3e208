//! `POST /v1/users/{id}/erase`: crypto-shredding of one user's personal data
//! (src/commands/erase.rs). Admins only, within their own tenant.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use uuid::Uuid;

use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::ApiPath;
use crate::auth::Admin;
use crate::commands::erase::erase_user;
use crate::error::{AppError, ErrorBody};
use crate::ids::UserId;
use crate::state::AppState;

/// Admin: erase a user's personal data. Destroys the user's data key (their name, email,
/// IPs and user agents in the log become unreadable and read as `"[erased]"`), removes
/// their credentials, revokes their sessions and records `UserErased`. Idempotent: a
/// repeated call answers 204 and records nothing. Another tenant's user id is 404.
#[utoipa::path(post, path = "/v1/users/{id}/erase", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "last_admin: the tenant's last admin"),
              (status = 422, body = ErrorBody)))]
pub async fn erase(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, AppError> {
    if id == ctx.user_id.0 {
        // As with bans: an admin must not lock the tenant out by accident; another
        // admin erases them.
        return Err(AppError::Validation("you cannot erase yourself".into()));
    }
    let meta = caller_metadata(&ctx, &headers);
    erase_user(
        &state.db,
        &state.events,
        state.config.snapshot_every,
        ctx.tenant_id,
        UserId(id),
        &meta,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
