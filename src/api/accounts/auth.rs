//! `/v1/auth`: register, login, refresh (rotation with reuse detection), logout, invite.
//! Each handler applies the edge's budgets, calls its use case in
//! `commands::accounts` and renders (tokens in the body, the refresh token in a cookie).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregates::Role;
use crate::api::edge::caller::{caller_metadata, origin, request_id};
use crate::api::edge::json::JsonBody;
use crate::auth::tokens::{ACCESS_TTL_SECS, REFRESH_TTL_SECS};
use crate::auth::{Admin, OpaqueToken, TenantContext};
use crate::commands::accounts::{self, NewAccount, Refreshed};
use crate::error::{AppError, AuthFailure, ErrorBody};
use crate::ids::{TenantId, UserId};
use crate::state::AppState;

const REFRESH_COOKIE: &str = "refresh_token";

// Unknown fields are refused (422), as in every JSON body: a misspelt optional field
// must not be ignored silently.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"tenant_name": "Acme", "handle": "ada", "name": "Ada Lovelace", "email": "ada@example.com", "password": "correct horse battery staple"}))]
pub struct RegisterRequest {
    /// Name of the new tenant; omit when joining with `invitation_token`.
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub tenant_name: Option<String>,
    /// Joins the inviting tenant with the invitation's role instead of creating one.
    #[serde(default)]
    #[schema(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub invitation_token: Option<String>,
    /// 3–32 of `a-z`, `0-9`, `_`, `-`, starting with a letter.
    #[schema(pattern = "^[a-z][a-z0-9_-]{2,31}$")]
    pub handle: String,
    /// 1–200 bytes, not blank, no control characters.
    #[schema(
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    #[schema(
        max_length = 254,
        pattern = "^[^@\\s\\u0000-\\u001F\\u007F-\\u009F]+@[^@\\s\\u0000-\\u001F\\u007F-\\u009F]*\\.[^@\\s\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub email: String,
    /// 10 characters to 1024 bytes.
    #[schema(min_length = 10, max_length = 1024)]
    pub password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RegisterResponse {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery staple"}))]
pub struct LoginRequest {
    #[schema(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub email: String,
    pub password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.sig", "token_type": "Bearer", "expires_in": 900, "session_id": "0190f5a0-0000-7000-8000-000000000003"}))]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub session_id: Uuid,
}

/// Creates a tenant and its first user (an admin), or — with an invitation token —
/// a user of the inviting tenant. The credential row and the streams are written in one
/// transaction: either all exist or none does.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = RegisterResponse), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<(StatusCode, Json<RegisterResponse>), AppError> {
    let account = NewAccount {
        tenant_name: req.tenant_name,
        invitation_token: req.invitation_token,
        handle: req.handle,
        name: req.name,
        email: req.email,
        password: req.password,
    };
    let done = accounts::register(&state, &origin(&state, peer.ip(), &headers), account).await?;
    Ok((
        StatusCode::CREATED,
        Json(RegisterResponse {
            tenant_id: done.tenant.0,
            user_id: done.user.0,
        }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationRequest {
    /// Role the invited user gets (default `user`).
    #[serde(default)]
    pub role: Option<Role>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationResponse {
    /// Give this to the invitee; it is shown once and stored only as a hash.
    pub invitation_token: String,
    pub expires_at: i64,
}

/// Admin: invite someone into the caller's tenant.
#[utoipa::path(post, path = "/v1/tenants/current/invitations", tag = "auth", security(("bearer" = [])),
    request_body = InvitationRequest,
    responses((status = 201, body = InvitationResponse), (status = 403, body = ErrorBody)))]
pub async fn invite(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    JsonBody(req): JsonBody<InvitationRequest>,
) -> Result<(StatusCode, Json<InvitationResponse>), AppError> {
    let meta = caller_metadata(&admin, &headers);
    let role = req.role.unwrap_or(Role::User);
    let (token, expires_at) = accounts::invite(&state, &admin, &meta, role).await?;
    Ok((
        StatusCode::CREATED,
        Json(InvitationResponse {
            invitation_token: token.to_cookie_value(),
            expires_at,
        }),
    ))
}

fn refresh_cookie(value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{REFRESH_COOKIE}={value}; HttpOnly; Secure; SameSite=Lax; Path=/v1/auth; Max-Age={max_age}"
    ))
    .expect("cookie is ASCII")
}

fn token_response(
    state: &AppState,
    user: UserId,
    tenant: TenantId,
    role: Role,
    refresh: &OpaqueToken,
) -> Result<Response, AppError> {
    let now = chrono::Utc::now().timestamp();
    let access = state
        .tokens
        .issue_access(user.0, tenant.0, role, refresh.id, now)?;
    let body = TokenResponse {
        access_token: access,
        token_type: "Bearer",
        expires_in: ACCESS_TTL_SECS,
        session_id: refresh.id,
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        refresh_cookie(&refresh.to_cookie_value(), REFRESH_TTL_SECS),
    );
    Ok(response)
}

/// Email + password → access token (body) and refresh token (HttpOnly cookie).
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Response, AppError> {
    let origin = origin(&state, peer.ip(), &headers);
    let signed = accounts::login(&state, &origin, &req.email, req.password).await?;
    token_response(
        &state,
        signed.user,
        signed.tenant,
        signed.role,
        &signed.refresh,
    )
}

/// Rotates the refresh token. Presenting a token that was already rotated revokes the
/// whole session (every token of that login) and answers `refresh_token_reused`.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth",
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let presented = crate::auth::browser::cookie(&headers, REFRESH_COOKIE)
        .and_then(|v| OpaqueToken::parse(&v))
        .ok_or(AppError::Unauthorized(AuthFailure::InvalidRefreshToken))?;
    let tenant = TenantId(presented.tenant_id);
    match accounts::refresh(&state, &presented, request_id(&headers)).await? {
        Refreshed::Rotated { user, role, next } => {
            token_response(&state, user, tenant, role, &next)
        }
        Refreshed::ReuseDetected => {
            let mut response =
                AppError::Unauthorized(AuthFailure::RefreshTokenReused).into_response();
            response
                .headers_mut()
                .insert(SET_COOKIE, refresh_cookie("", 0));
            Ok(response)
        }
    }
}

/// Ends the caller's session: its access and refresh tokens stop working at once.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    accounts::logout(&state, &ctx, &caller_metadata(&ctx, &headers)).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, refresh_cookie("", 0));
    Ok(response)
}
