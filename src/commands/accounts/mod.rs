//! Use cases of accounts: register (a new tenant, or joining one by invitation), log in,
//! refresh a session's token, log out, invite. Every surface (the JSON API's `/v1/auth`,
//! the console's sign-in and sign-up forms) runs these, so the checks and the events are
//! the same whichever way a person comes in.
//!
//! Rate budgets: the per-IP auth budget is the HTTP edge's (src/api/edge/ratelimit.rs);
//! the budgets that belong to the use case itself — login attempts per account, taken-email
//! answers per client address — are applied here (`guard.rs`), so no surface can skip them.

pub mod guard;

use cqrs_es::EventStore;
use uuid::Uuid;

use crate::aggregates::session::RevokeReason;
use crate::aggregates::{
    Role, Session, SessionCommand, SessionError, SessionEvent, Tenant, TenantCommand, User,
    UserCommand, UserEvent,
};
use crate::auth::password::{self, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, Verdict};
use crate::auth::tokens::REFRESH_TTL_SECS;
use crate::auth::{Admin, OpaqueToken, TenantContext};
use crate::error::{AppError, AuthFailure};
use crate::ids::{TenantId, UserId};
use crate::state::AppState;
use crate::store::{Actor, EventMetadata};

use super::CommandError;

/// Seven days to accept an invitation.
pub const INVITATION_TTL_SECS: i64 = 7 * 24 * 60 * 60;

/// Where a request without a signed-in caller came from: recorded on the session it
/// starts and in the events' metadata.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The peer address as the session records it.
    pub ip: String,
    /// Sanitized (src/api/edge/text.rs): deterministic, so rebuilds give the same devices.
    pub user_agent: String,
    pub request_id: String,
    /// The address the per-client budgets count against: the peer, or the last
    /// `X-Forwarded-For` entry behind a trusted proxy (`ratelimit::client_ip`).
    pub client: Option<std::net::IpAddr>,
}

/// What a person gives to register.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// A new tenant of this name; `None` when joining by invitation.
    pub tenant_name: Option<String>,
    pub invitation_token: Option<String>,
    pub handle: String,
    pub name: String,
    pub email: String,
    pub password: String,
}

/// A registered account.
#[derive(Debug, Clone, Copy)]
pub struct Registered {
    pub tenant: TenantId,
    pub user: UserId,
}

/// A new session: who signed in, and its refresh token (the console keeps it in its
/// session cookie, the API in the refresh cookie).
pub struct SignedIn {
    pub user: UserId,
    pub tenant: TenantId,
    pub role: Role,
    pub refresh: OpaqueToken,
}

use super::store;

fn store_failure<E: std::error::Error>(err: cqrs_es::AggregateError<E>) -> AppError {
    AppError::Internal(anyhow::anyhow!("event store: {err}"))
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

/// Creates a tenant and its first user (an admin), or — with an invitation token — a
/// user of the inviting tenant. Everything is decided before the database is touched,
/// so bad input writes nothing; then the credential row and both streams are written in
/// one transaction: either all exist or none does. A taken email is
/// `AppError::AlreadyExists`, counted against the client's budget of such answers; once
/// that is spent every registration from the client is refused (`guard.rs`).
pub async fn register(
    state: &AppState,
    origin: &Origin,
    account: NewAccount,
) -> Result<Registered, AppError> {
    guard::refuse_if_spent(state, origin.client).await?;
    match create_account(state, origin, account).await {
        Err(taken @ AppError::AlreadyExists(_)) => {
            guard::count_taken(state, origin.client).await?;
            Err(taken)
        }
        other => other,
    }
}

async fn create_account(
    state: &AppState,
    origin: &Origin,
    account: NewAccount,
) -> Result<Registered, AppError> {
    check_password(&account.password)?;
    let user = UserId::new();
    let (tenant, tenant_events, tenant_ctx, role) =
        match (&account.invitation_token, account.tenant_name) {
            (Some(token), None) => {
                let invitation = OpaqueToken::parse(token).ok_or_else(|| {
                    AppError::Validation("invitation is invalid or expired".into())
                })?;
                let tenant = TenantId(invitation.tenant_id);
                let ctx = store::<Tenant>(state, tenant)
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
                let ctx = store::<Tenant>(state, tenant)
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
        handle: account.handle,
        name: account.name,
        email: account.email,
        role,
    })?;
    let email = match &user_events[0] {
        UserEvent::UserRegistered { email, .. } => email.clone(),
        _ => unreachable!("Register decides UserRegistered"),
    };
    let hash = hash_blocking(account.password).await?;
    let meta = EventMetadata::new(tenant, Actor::User(user), origin.request_id.clone()).to_map();
    let tenant_store = store::<Tenant>(state, tenant);
    let user_store = store::<User>(state, tenant);
    let user_ctx = user_store
        .load_aggregate(&user.to_string())
        .await
        .map_err(store_failure)?;

    let mut tx = state.db.begin().await?;
    let claimed = sqlx::query(
        "INSERT INTO credentials (user_id, tenant_id, email, password_hash) VALUES ($1, $2, $3, $4)",
    )
    .bind(user.0)
    .bind(tenant.0)
    .bind(&email)
    .bind(&hash)
    .execute(&mut *tx)
    .await;
    match claimed {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
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
    Ok(Registered { tenant, user })
}

/// Email + password → a new session (`SessionStarted`, listed under Devices). A wrong
/// password and an unknown email are the same answer after the same work (a decoy hash),
/// a banned user is refused, and a hash made with old parameters is upgraded now that
/// the password is in hand. Each attempt counts against the account's budget first, so
/// guessing one account's password from many addresses is limited too.
pub async fn login(
    state: &AppState,
    origin: &Origin,
    email: &str,
    password: String,
) -> Result<SignedIn, AppError> {
    guard::check_auth_attempt(state, &guard::account_key(email)).await?;
    let email = email.trim().to_lowercase();
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
    let presented = password.clone();
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
        let fresh = hash_blocking(password).await?;
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
    let start = SessionCommand::Start {
        user_id: user,
        user_agent: origin.user_agent.clone(),
        ip: origin.ip.clone(),
        refresh_hash: refresh.hash(),
        refresh_expires_at: chrono::Utc::now().timestamp() + REFRESH_TTL_SECS,
    };
    let meta = EventMetadata::new(tenant, Actor::User(user), origin.request_id.clone());
    if let Err(err) = super::execute(
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

/// What presenting a refresh token led to.
pub enum Refreshed {
    /// The next token of the session, and who holds it now.
    Rotated {
        user: UserId,
        role: Role,
        next: OpaqueToken,
    },
    /// The token had been rotated already: someone replayed it, so the whole session is
    /// revoked (every token of that login).
    ReuseDetected,
}

/// Rotates session `presented`'s refresh token.
pub async fn refresh(
    state: &AppState,
    presented: &OpaqueToken,
    request_id: String,
) -> Result<Refreshed, AppError> {
    let tenant = TenantId(presented.tenant_id);
    let sessions = store::<Session>(state, tenant);
    let next = OpaqueToken::generate(tenant.0, presented.id);
    let now = chrono::Utc::now().timestamp();
    let command = SessionCommand::Refresh {
        presented_hash: presented.hash(),
        next_hash: next.hash(),
        now,
        next_expires_at: now + REFRESH_TTL_SECS,
    };
    let meta = EventMetadata::new(tenant, Actor::System("auth"), request_id);
    let done = match super::execute(&sessions, &presented.id.to_string(), command, &meta, &()).await
    {
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
        return Ok(Refreshed::ReuseDetected);
    }
    let user = done
        .aggregate
        .user_id
        .ok_or_else(|| anyhow::anyhow!("session without user"))?;
    let account = store::<User>(state, tenant)
        .load_aggregate(&user.to_string())
        .await
        .map_err(store_failure)?;
    if account.aggregate.banned {
        return Err(AppError::Unauthorized(AuthFailure::UserBanned));
    }
    Ok(Refreshed::Rotated {
        user,
        role: account.aggregate.role.unwrap_or(Role::User),
        next,
    })
}

/// Ends the caller's session: every token and cookie of it stops working at once.
pub async fn logout(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
) -> Result<(), AppError> {
    let revoke = SessionCommand::Revoke {
        reason: RevokeReason::Logout,
    };
    super::execute(
        &store::<Session>(state, ctx.tenant_id),
        &ctx.session_id.to_string(),
        revoke,
        meta,
        &(),
    )
    .await?;
    Ok(())
}

/// An invitation into the admin's tenant with `role`: its token (shown once, stored only
/// as a hash) and when it expires (Unix seconds).
pub async fn invite(
    state: &AppState,
    Admin(ctx): &Admin,
    meta: &EventMetadata,
    role: Role,
) -> Result<(OpaqueToken, i64), AppError> {
    let token = OpaqueToken::generate(ctx.tenant_id.0, Uuid::now_v7());
    let expires_at = chrono::Utc::now().timestamp() + INVITATION_TTL_SECS;
    let command = TenantCommand::Invite {
        invitation_id: token.id,
        token_hash: token.hash(),
        role,
        expires_at,
        invited_by: ctx.user_id,
    };
    super::execute(
        &store::<Tenant>(state, ctx.tenant_id),
        &ctx.tenant_id.to_string(),
        command,
        meta,
        &(),
    )
    .await?;
    Ok((token, expires_at))
}
