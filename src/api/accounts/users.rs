//! `/v1/me` and the admin's user management (roles, bans). State is read from the
//! user's stream (or remembered from it under an unchanged standing epoch), so an answer
//! never lags a change just made.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use cqrs_es::EventStore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregates::{Role, User};
use crate::api::edge::caller::JudgedUnder;
use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::ApiPath;
use crate::api::edge::json::JsonBody;
use crate::auth::{Admin, TenantContext};
use crate::commands::store;
use crate::commands::users::{self, UserChange};
use crate::error::{AppError, ErrorBody};
use crate::ids::UserId;
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub handle: String,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub is_banned: bool,
}

fn view(ctx: &TenantContext, id: UserId, user: User) -> Result<UserView, AppError> {
    if !user.exists {
        return Err(AppError::NotFound("user not found".into()));
    }
    Ok(UserView {
        id: id.0,
        tenant_id: ctx.tenant_id.0,
        handle: user.handle,
        name: user.name,
        email: user.email,
        role: user.role.unwrap_or(Role::User),
        is_banned: user.banned,
    })
}

/// The caller's own account.
#[utoipa::path(get, path = "/v1/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)))]
pub async fn me(
    State(state): State<AppState>,
    ctx: TenantContext,
    JudgedUnder(epoch): JudgedUnder,
) -> Result<Json<UserView>, AppError> {
    let (tenant, id) = (ctx.tenant_id.0, ctx.user_id.0);
    // Every event of a user changes its tenant's standing epoch, so the account read
    // under an unchanged epoch is still what its stream says (src/auth/standing.rs).
    if let Some(user) = state.standings.user(tenant, id, &epoch) {
        return Ok(Json(view(&ctx, ctx.user_id, user)?));
    }
    let loaded = store::<User>(&state, ctx.tenant_id)
        .load_aggregate(&ctx.user_id.to_string())
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("event store: {e}")))?;
    if loaded.aggregate.exists {
        state
            .standings
            .remember_user(tenant, id, &epoch, loaded.aggregate.clone());
    }
    Ok(Json(view(&ctx, ctx.user_id, loaded.aggregate)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub role: Role,
}

/// An admin's change to a user of the tenant, rendered.
async fn change(
    state: &AppState,
    admin: Admin,
    headers: &HeaderMap,
    id: Uuid,
    change: UserChange,
) -> Result<Json<UserView>, AppError> {
    let meta = caller_metadata(&admin, headers);
    let user = users::change(state, &admin, &meta, UserId(id), change).await?;
    Ok(Json(view(&admin, UserId(id), user)?))
}

/// Admin: set a user's role.
#[utoipa::path(put, path = "/v1/users/{id}/role", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id")), request_body = RoleChange,
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
               (status = 409, body = ErrorBody, description = "last_admin: the tenant's last admin would lose the role")))]
pub async fn set_role(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    JsonBody(body): JsonBody<RoleChange>,
) -> Result<Json<UserView>, AppError> {
    change(&state, admin, &headers, id, UserChange::SetRole(body.role)).await
}

/// Admin: ban a user. Their sessions are refused from the next request on.
#[utoipa::path(post, path = "/v1/users/{id}/ban", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
               (status = 409, body = ErrorBody, description = "last_admin: the tenant's last admin"),
               (status = 422, body = ErrorBody, description = "yourself")))]
pub async fn ban(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<UserView>, AppError> {
    change(&state, admin, &headers, id, UserChange::Ban).await
}

/// Admin: lift a ban.
#[utoipa::path(post, path = "/v1/users/{id}/unban", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unban(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<UserView>, AppError> {
    change(&state, admin, &headers, id, UserChange::Unban).await
}
