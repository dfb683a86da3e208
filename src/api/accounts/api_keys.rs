//! `/v1/api-keys`: an admin creates, lists and revokes the tenant's API keys
//! (docs/api-keys.md). Admins signed in as people only (`KeyManager`): a key never
//! manages keys.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregates::{ApiKey, Role};
use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::ApiPath;
use crate::api::edge::json::JsonBody;
use crate::auth::KeyManager;
use crate::auth::scopes::Scope;
use crate::commands::api_keys::{self, NewKey};
use crate::commands::store;
use crate::error::{AppError, ErrorBody};
use crate::projections::api_keys::{ApiKeyView, list as list_keys};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "nightly backup", "role": "user", "scopes": ["files:read", "files:write"], "expires_at": "2030-01-01T00:00:00Z"}))]
pub struct CreateApiKey {
    /// 1–100 bytes, not blank, no control characters.
    #[schema(
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    /// The key's role (default `user`): `user`, `auditor` or `admin`.
    #[serde(default)]
    pub role: Option<Role>,
    /// Narrow the key to these scopes, each within the role's rights; omitted: every
    /// right of the role.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub scopes: Option<Vec<Scope>>,
    /// After this instant the key is refused; omitted: until revoked.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A new key. `key` is the secret: shown this once, never again.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "0190f5a0-0000-7000-8000-000000000001", "key": "chk_q0aVd1c2ZXJ5LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlYw.AZD1oAAAcACAAAAAAAAAAQGQ9aAAAHAAgAAAAAAAAAE", "name": "nightly backup", "prefix": "chk_q0aVd1c2", "role": "user", "scopes": ["files:read", "files:write"], "expires_at": "2030-01-01T00:00:00Z"}))]
pub struct CreatedApiKey {
    pub id: Uuid,
    /// The whole key, to send as `Authorization: Bearer <key>`. Shown once.
    pub key: String,
    pub name: String,
    pub prefix: String,
    pub role: Role,
    pub scopes: Option<Vec<Scope>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Admin (signed in as a person): create an API key. The key acts as its own principal
/// with the given role, narrowed to `scopes` when given; the answer holds the secret,
/// shown once (never stored: only its SHA-256 is). Not keyed by `Idempotency-Key`: a
/// stored answer would keep the secret.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", security(("bearer" = [])),
    request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    KeyManager(ctx): KeyManager,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), AppError> {
    let meta = caller_metadata(&ctx, &headers);
    let new = NewKey {
        name: body.name,
        role: body.role.unwrap_or(Role::User),
        scopes: body.scopes,
        expires_at: body.expires_at.map(|at| at.timestamp()),
    };
    let store = store::<ApiKey>(&state, ctx.tenant_id);
    let created = api_keys::create(&store, ctx.tenant_id, ctx.user_id, new, &meta).await?;
    let key = created.state;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            id: created.id,
            key: created.key,
            name: key.name,
            prefix: created.prefix,
            role: key.role.unwrap_or(Role::User),
            scopes: key.scopes,
            expires_at: key.expires_at.and_then(|t| DateTime::from_timestamp(t, 0)),
        }),
    ))
}

/// Admin (signed in as a person): the tenant's API keys, newest first, revoked ones
/// included, with when each was last used (from the read table: a key created a moment
/// ago may take a few hundred milliseconds to appear).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", security(("bearer" = [])),
    responses((status = 200, body = [ApiKeyView]), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    KeyManager(ctx): KeyManager,
) -> Result<Json<Vec<ApiKeyView>>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let keys = list_keys(&mut tx, ctx.tenant_id).await?;
    tx.commit().await?;
    Ok(Json(keys))
}

/// Admin (signed in as a person): revoke an API key. It is refused from the next request
/// on. Revoking a revoked key answers 204 again; an unknown key is 404.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "API key id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    KeyManager(ctx): KeyManager,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, AppError> {
    let meta = caller_metadata(&ctx, &headers);
    api_keys::revoke(&store::<ApiKey>(&state, ctx.tenant_id), id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
