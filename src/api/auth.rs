//! `/v1/auth`: register, login, refresh (rotation with reuse detection), logout.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cqrs_es::EventStore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::json::JsonBody;
use crate::aggregates::session::RevokeReason;
use crate::aggregates::{
    Role, Session, SessionCommand, SessionError, SessionEvent, Tenant, TenantCommand, User,
    UserCommand,
};
use crate::auth::password::{self, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, Verdict};
use crate::auth::tokens::{ACCESS_TTL_SECS, REFRESH_TTL_SECS};
use crate::auth::{Admin, OpaqueToken, TenantContext};
use crate::commands::{self, CommandError};
use crate::error::{AppError, AuthFailure, ErrorBody};
use crate::ids::{TenantId, UserId};
use crate::state::AppState;
use crate::store::{Actor, ChronicleStore, EventMetadata};

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

pub fn store<A: cqrs_es::Aggregate>(state: &AppState, tenant: TenantId) -> ChronicleStore<A> {
    ChronicleStore::new(state.events.clone(), tenant, state.config.snapshot_every)
}

/// The request id the request-id layer put on the request (echoed on the response).
pub(super) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(super::middleware::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Metadata for a command issued by the authenticated caller.
pub(crate) fn caller_metadata(ctx: &TenantContext, headers: &HeaderMap) -> EventMetadata {
    EventMetadata::new(ctx.tenant_id, ctx.actor(), request_id(headers))
}

fn check_password(password: &str) -> Result<(), AppError> {
    if password.chars().count() < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(AppError::Validation(format!(
            "invalid password: must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

async fn hash_blocking(password: String) -> Result<String, AppError> {
    Ok(
        tokio::task::spawn_blocking(move || password::hash(&password))
            .await
            .map_err(anyhow::Error::new)??,
    )
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
    let registered = register_account(&state, peer.ip(), &headers, req).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

/// The registration use case, shared by `POST /v1/auth/register` and the console's
/// sign-up form (src/console): same checks, same events, same guard.
pub(crate) async fn register_account(
    state: &AppState,
    peer: IpAddr,
    headers: &HeaderMap,
    req: RegisterRequest,
) -> Result<RegisterResponse, AppError> {
    let state = state.clone();
    let headers = headers.clone();
    // Email enumeration is limited by a budget of taken-email answers per IP
    // (register_guard.rs); once spent, every registration from the IP waits.
    let ip = super::ratelimit::client_ip(&headers, Some(peer), state.config.trust_proxy_headers);
    super::register_guard::refuse_if_spent(&state, ip).await?;
    check_password(&req.password)?;
    let user = UserId::new();
    // Decide everything before touching the database, so bad input writes nothing.
    let (tenant, tenant_events, tenant_ctx, role) = match (&req.invitation_token, req.tenant_name) {
        (Some(token), None) => {
            let invitation = OpaqueToken::parse(token)
                .ok_or_else(|| AppError::Validation("invitation is invalid or expired".into()))?;
            let tenant = TenantId(invitation.tenant_id);
            let ctx = store::<Tenant>(&state, tenant)
                .load_aggregate(&tenant.to_string())
                .await
                .map_err(store_failure)?;
            let role = ctx
                .aggregate
                .invitation_role(invitation.id)
                .unwrap_or(Role::User);
            let events = ctx.aggregate.decide(TenantCommand::AcceptInvitation {
                invitation_id: invitation.id,
                token_hash: invitation.hash(),
                user_id: user,
                now: chrono::Utc::now().timestamp(),
            })?;
            (tenant, events, ctx, role)
        }
        (None, Some(name)) => {
            let tenant = TenantId::new();
            let events = Tenant::default().decide(TenantCommand::Create {
                name,
                created_by: user,
            })?;
            let ctx = store::<Tenant>(&state, tenant)
                .load_aggregate(&tenant.to_string())
                .await
                .map_err(store_failure)?;
            (tenant, events, ctx, Role::Admin)
        }
        _ => {
            return Err(AppError::Validation(
                "give either tenant_name (new tenant) or invitation_token (join one)".into(),
            ));
        }
    };
    let user_events = User::default().decide(UserCommand::Register {
        handle: req.handle,
        name: req.name,
        email: req.email,
        role,
    })?;
    let email = match &user_events[0] {
        crate::aggregates::UserEvent::UserRegistered { email, .. } => email.clone(),
        _ => unreachable!("Register decides UserRegistered"),
    };
    let hash = hash_blocking(req.password).await?;
    let meta = EventMetadata::new(tenant, Actor::User(user), request_id(&headers)).to_map();
    let tenant_store = store::<Tenant>(&state, tenant);
    let user_store = store::<User>(&state, tenant);
    let user_ctx = user_store
        .load_aggregate(&user.to_string())
        .await
        .map_err(store_failure)?;

    let mut tx = state.db.begin().await?;
    let claimed = sqlx::query("INSERT INTO credentials (user_id, tenant_id, email, password_hash) VALUES ($1, $2, $3, $4)")
        .bind(user.0)
        .bind(tenant.0)
        .bind(&email)
        .bind(&hash)
        .execute(&mut *tx)
        .await;
    match claimed {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
            drop(tx);
            super::register_guard::count_taken(&state, ip).await?;
            return Err(AppError::AlreadyExists(
                "an account with this email already exists".into(),
            ));
        }
        other => {
            other?;
        }
    }
    // A concurrent acceptance of the same invitation conflicts here (same sequence).
    match tenant_store
        .commit_in(&mut tx, tenant_events, tenant_ctx, meta.clone())
        .await
    {
        Err(cqrs_es::AggregateError::AggregateConflict) => {
            return Err(AppError::Validation(
                "invitation is invalid or expired".into(),
            ));
        }
        other => {
            other.map_err(store_failure)?;
        }
    }
    user_store
        .commit_in(&mut tx, user_events, user_ctx, meta)
        .await
        .map_err(store_failure)?;
    tx.commit().await?;
    Ok(RegisterResponse {
        tenant_id: tenant.0,
        user_id: user.0,
    })
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

/// Seven days to accept an invitation.
const INVITATION_TTL_SECS: i64 = 7 * 24 * 60 * 60;

/// Admin: invite someone into the caller's tenant.
#[utoipa::path(post, path = "/v1/tenants/current/invitations", tag = "auth", security(("bearer" = [])),
    request_body = InvitationRequest,
    responses((status = 201, body = InvitationResponse), (status = 403, body = ErrorBody)))]
pub async fn invite(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    headers: HeaderMap,
    JsonBody(req): JsonBody<InvitationRequest>,
) -> Result<(StatusCode, Json<InvitationResponse>), AppError> {
    let token = OpaqueToken::generate(ctx.tenant_id.0, Uuid::now_v7());
    let expires_at = chrono::Utc::now().timestamp() + INVITATION_TTL_SECS;
    let command = TenantCommand::Invite {
        invitation_id: token.id,
        token_hash: token.hash(),
        role: req.role.unwrap_or(Role::User),
        expires_at,
        invited_by: ctx.user_id,
    };
    let meta = caller_metadata(&ctx, &headers);
    commands::execute(
        &store::<Tenant>(&state, ctx.tenant_id),
        &ctx.tenant_id.to_string(),
        command,
        &meta,
        &(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(InvitationResponse {
            invitation_token: token.to_cookie_value(),
            expires_at,
        }),
    ))
}

fn store_failure<E: std::error::Error>(err: cqrs_es::AggregateError<E>) -> AppError {
    AppError::Internal(anyhow::anyhow!("event store: {err}"))
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
    let signed = sign_in(&state, peer.ip(), &headers, req).await?;
    token_response(
        &state,
        signed.user,
        signed.tenant,
        signed.role,
        &signed.refresh,
    )
}

/// A new session: who signed in, and its refresh token (the console keeps it in its
/// session cookie, the API in the refresh cookie).
pub(crate) struct SignedIn {
    pub user: UserId,
    pub tenant: TenantId,
    pub role: Role,
    pub refresh: OpaqueToken,
}

/// The login use case, shared by `POST /v1/auth/login` and the console's sign-in form:
/// the per-account budget, the password check, and a `SessionStarted` that Devices lists.
pub(crate) async fn sign_in(
    state: &AppState,
    peer: IpAddr,
    headers: &HeaderMap,
    req: LoginRequest,
) -> Result<SignedIn, AppError> {
    let email = req.email.trim().to_lowercase();
    // Per-account budget, on top of the per-IP one: guessing one account's password from
    // many addresses is limited too.
    super::ratelimit::check_auth_attempt(state, &super::ratelimit::account_key(&email)).await?;
    let row: Option<(Uuid, Uuid, String)> = sqlx::query_as(
        "SELECT user_id, tenant_id, password_hash FROM credentials WHERE email = $1",
    )
    .bind(&email)
    .fetch_optional(&state.db)
    .await?;
    let stored = row
        .as_ref()
        .map(|r| r.2.clone())
        .unwrap_or_else(|| password::decoy_hash().to_string());
    let presented = req.password.clone();
    let verdict = tokio::task::spawn_blocking(move || password::verify(&presented, &stored))
        .await
        .map_err(anyhow::Error::new)?;
    let (Some((user_id, tenant_id, _)), Verdict::Right | Verdict::RightNeedsRehash) =
        (row, &verdict)
    else {
        return Err(AppError::Unauthorized(AuthFailure::InvalidCredentials));
    };
    let (user, tenant) = (UserId(user_id), TenantId(tenant_id));
    let account = store::<User>(state, tenant)
        .load_aggregate(&user.to_string())
        .await
        .map_err(store_failure)?;
    if account.aggregate.banned {
        return Err(AppError::Unauthorized(AuthFailure::UserBanned));
    }
    if account.aggregate.erased {
        // The password matched a credentials row the erasure is deleting right now.
        return Err(AppError::Unauthorized(AuthFailure::InvalidCredentials));
    }
    let role = account.aggregate.role.unwrap_or(Role::User);
    if verdict == Verdict::RightNeedsRehash {
        // The password is in hand only now: upgrade its hash to current parameters.
        let fresh = hash_blocking(req.password).await?;
        sqlx::query(
            "UPDATE credentials SET password_hash = $2, updated_at = now() WHERE user_id = $1",
        )
        .bind(user.0)
        .bind(fresh)
        .execute(&state.db)
        .await?;
    }
    let session_id = Uuid::now_v7();
    let refresh = OpaqueToken::generate(tenant.0, session_id);
    let user_agent = super::text::user_agent(headers);
    let start = SessionCommand::Start {
        user_id: user,
        user_agent,
        ip: peer.to_string(),
        refresh_hash: refresh.hash(),
        refresh_expires_at: chrono::Utc::now().timestamp() + REFRESH_TTL_SECS,
    };
    let meta = EventMetadata::new(tenant, Actor::User(user), request_id(headers));
    if let Err(err) = commands::execute(
        &store::<Session>(state, tenant),
        &session_id.to_string(),
        start,
        &meta,
        &(),
    )
    .await
    {
        // An erasure that landed after the check above destroyed the user's key, so the
        // session's personal fields cannot be sealed: the user is gone, not a server fault.
        let now = store::<User>(state, tenant)
            .load_aggregate(&user.to_string())
            .await
            .map_err(store_failure)?;
        if now.aggregate.erased {
            return Err(AppError::Unauthorized(AuthFailure::InvalidCredentials));
        }
        return Err(err.into());
    }
    Ok(SignedIn {
        user,
        tenant,
        role,
        refresh,
    })
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// Rotates the refresh token. Presenting a token that was already rotated revokes the
/// whole session (every token of that login) and answers `refresh_token_reused`.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth",
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let presented = cookie_value(&headers, REFRESH_COOKIE)
        .and_then(|v| OpaqueToken::parse(&v))
        .ok_or(AppError::Unauthorized(AuthFailure::InvalidRefreshToken))?;
    let tenant = TenantId(presented.tenant_id);
    let sessions = store::<Session>(&state, tenant);
    let next = OpaqueToken::generate(tenant.0, presented.id);
    let now = chrono::Utc::now().timestamp();
    let command = SessionCommand::Refresh {
        presented_hash: presented.hash(),
        next_hash: next.hash(),
        now,
        next_expires_at: now + REFRESH_TTL_SECS,
    };
    let meta = EventMetadata::new(tenant, Actor::System("auth"), request_id(&headers));
    let done =
        match commands::execute(&sessions, &presented.id.to_string(), command, &meta, &()).await {
            Ok(done) => done,
            Err(CommandError::Domain(SessionError::Revoked)) => {
                return Err(AppError::Unauthorized(AuthFailure::SessionRevoked));
            }
            Err(CommandError::Domain(_)) => {
                return Err(AppError::Unauthorized(AuthFailure::InvalidRefreshToken));
            }
            Err(other) => return Err(other.into()),
        };
    if done
        .events
        .iter()
        .any(|e| matches!(e.payload, SessionEvent::SessionRevoked { .. }))
    {
        tracing::warn!(session = %presented.id, "refresh token reuse: session revoked");
        let mut response = AppError::Unauthorized(AuthFailure::RefreshTokenReused).into_response();
        response
            .headers_mut()
            .insert(SET_COOKIE, refresh_cookie("", 0));
        return Ok(response);
    }
    let user = done
        .aggregate
        .user_id
        .ok_or_else(|| anyhow::anyhow!("session without user"))?;
    let account = store::<User>(&state, tenant)
        .load_aggregate(&user.to_string())
        .await
        .map_err(store_failure)?;
    if account.aggregate.banned {
        return Err(AppError::Unauthorized(AuthFailure::UserBanned));
    }
    token_response(
        &state,
        user,
        tenant,
        account.aggregate.role.unwrap_or(Role::User),
        &next,
    )
}

/// Ends the caller's session: its access and refresh tokens stop working at once.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    sign_out(&state, &ctx, &headers).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, refresh_cookie("", 0));
    Ok(response)
}

/// The logout use case (the API and the console's sign-out): the caller's session is
/// revoked, so every token and cookie of it stops working at once.
pub(crate) async fn sign_out(
    state: &AppState,
    ctx: &TenantContext,
    headers: &HeaderMap,
) -> Result<(), AppError> {
    let meta = caller_metadata(ctx, headers);
    let revoke = SessionCommand::Revoke {
        reason: RevokeReason::Logout,
    };
    commands::execute(
        &store::<Session>(state, ctx.tenant_id),
        &ctx.session_id.to_string(),
        revoke,
        &meta,
        &(),
    )
    .await?;
    Ok(())
}
