//! Use cases of sharing (docs/sharing.md): grants, links, legal holds. Each loads the
//! file from its stream, asks the policy (src/auth/policy.rs), and commits one
//! `FileCommand` through `commands::execute`. `open_link` is the one use case without a
//! caller: the link's token is its only credential.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::aggregates::file::{Access, File, FileCommand, Grantee, Link, VersionState};
use crate::auth::password::{self, Verdict};
use crate::auth::{TenantContext, policy};
use crate::error::AppError;
use crate::ids::{TenantId, UserId};
use crate::state::AppState;
use crate::store::EventMetadata;

use super::files::{file_store, load_any};

/// The longest a link may live.
pub const MAX_LINK_LIFETIME_DAYS: i64 = 365;
/// Link passwords: as long as account passwords may be.
const MAX_LINK_PASSWORD_LEN: usize = 256;

async fn commit(
    state: &AppState,
    tenant: TenantId,
    meta: &EventMetadata,
    id: Uuid,
    command: FileCommand,
) -> Result<File, AppError> {
    let done = super::execute(
        &file_store(state, tenant),
        &id.to_string(),
        command,
        meta,
        &(),
    )
    .await?;
    Ok(done.aggregate)
}

/// Loads the file, lets `rule` (a policy check) decide whether the caller may, then
/// commits `command`: the shape of every sharing use case without extra work.
async fn checked(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    id: Uuid,
    rule: fn(&TenantContext, &File) -> Result<(), AppError>,
    command: FileCommand,
) -> Result<File, AppError> {
    let file = load_any(state, ctx.tenant_id, id).await?;
    rule(ctx, &file)?;
    commit(state, ctx.tenant_id, meta, id, command).await
}

/// Share the file with a user of the tenant or a role (owner or admin). A user who is
/// not in the caller's tenant is `404`, like any unknown id.
pub async fn share(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    id: Uuid,
    grantee: Grantee,
    access: Access,
) -> Result<File, AppError> {
    let file = load_any(state, ctx.tenant_id, id).await?;
    policy::can_manage(ctx, &file)?;
    if let Grantee::User(user) = grantee {
        let mut tx = ctx.begin(&state.db).await?;
        let known: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2)",
        )
        .bind(ctx.tenant_id.0)
        .bind(user.0)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        if !known {
            return Err(AppError::NotFound("user not found".into()));
        }
    }
    commit(
        state,
        ctx.tenant_id,
        meta,
        id,
        FileCommand::Share { grantee, access },
    )
    .await
}

/// Revoke a grant (owner or admin); revoking one that does not exist is a no-op.
pub async fn unshare(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    id: Uuid,
    grantee: Grantee,
) -> Result<File, AppError> {
    checked(
        state,
        ctx,
        meta,
        id,
        policy::can_manage,
        FileCommand::Unshare { grantee },
    )
    .await
}

/// The file, if the caller may see its grants and links: its owner, admins, auditors.
pub async fn load_for_sharing_view(
    state: &AppState,
    ctx: &TenantContext,
    id: Uuid,
) -> Result<File, AppError> {
    let file = load_any(state, ctx.tenant_id, id).await?;
    if policy::reads_history(ctx) && policy::can_read(ctx, &file) {
        return Ok(file);
    }
    policy::can_manage(ctx, &file)?;
    Ok(file)
}

/// Place a legal hold (auditor or admin; reason required).
pub async fn place_hold(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    id: Uuid,
    reason: String,
) -> Result<File, AppError> {
    checked(
        state,
        ctx,
        meta,
        id,
        policy::can_hold,
        FileCommand::PlaceHold { reason },
    )
    .await
}

/// Release the legal hold (auditor or admin); releasing a file not held is a no-op.
pub async fn release_hold(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    id: Uuid,
) -> Result<File, AppError> {
    checked(
        state,
        ctx,
        meta,
        id,
        policy::can_hold,
        FileCommand::ReleaseHold,
    )
    .await
}

/// What a new link asks for.
pub struct NewLink {
    pub version_number: Option<u32>,
    pub expires_at: DateTime<Utc>,
    pub password: Option<String>,
    pub max_downloads: Option<u32>,
}

/// The SHA-256 of a link token, hex: what the log and `link_tokens` hold.
fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Create a link (owner or admin). Returns the link and its token, which exists only in
/// this answer: the log keeps its hash.
pub async fn create_link(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    id: Uuid,
    new: NewLink,
) -> Result<(Link, String), AppError> {
    let file = load_any(state, ctx.tenant_id, id).await?;
    policy::can_manage(ctx, &file)?;
    let now = Utc::now();
    if new.expires_at <= now {
        return Err(AppError::Validation(
            "invalid expires_at: must be in the future".into(),
        ));
    }
    if new.expires_at > now + Duration::days(MAX_LINK_LIFETIME_DAYS) {
        return Err(AppError::Validation(format!(
            "invalid expires_at: at most {MAX_LINK_LIFETIME_DAYS} days ahead"
        )));
    }
    let password_hash = match new.password {
        None => None,
        Some(p) if p.is_empty() || p.len() > MAX_LINK_PASSWORD_LEN => {
            return Err(AppError::Validation(format!(
                "invalid password: must be 1 to {MAX_LINK_PASSWORD_LEN} bytes"
            )));
        }
        Some(p) => Some(
            tokio::task::spawn_blocking(move || password::hash(&p))
                .await
                .map_err(|e| AppError::Internal(e.into()))?
                .map_err(AppError::Internal)?,
        ),
    };
    let raw: [u8; 32] = rand::random();
    let token = URL_SAFE_NO_PAD.encode(raw);
    let link = Link {
        link_id: Uuid::now_v7(),
        token_sha256: token_sha256(&token),
        version_number: new.version_number,
        expires_at: new.expires_at,
        password_hash,
        max_downloads: new.max_downloads,
        revoked: false,
    };
    // The lookup row first: a row without its event is unreachable (the link is decided
    // from the log), an event without its row would be a link that never works.
    sqlx::query(
        "INSERT INTO link_tokens (token_sha256, tenant_id, file_id, link_id) VALUES ($1, $2, $3, $4)",
    )
    .bind(&link.token_sha256)
    .bind(ctx.tenant_id.0)
    .bind(id)
    .bind(link.link_id)
    .execute(&state.db)
    .await?;
    commit(
        state,
        ctx.tenant_id,
        meta,
        id,
        FileCommand::CreateLink(link.clone()),
    )
    .await?;
    Ok((link, token))
}

/// Revoke a link (owner or admin); revoking it again is a no-op.
pub async fn revoke_link(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    id: Uuid,
    link_id: Uuid,
) -> Result<File, AppError> {
    checked(
        state,
        ctx,
        meta,
        id,
        policy::can_manage,
        FileCommand::RevokeLink { link_id },
    )
    .await
}

/// How many times each link was used.
pub async fn link_downloads(
    state: &AppState,
    links: &[Uuid],
) -> Result<Vec<(Uuid, i64)>, AppError> {
    Ok(
        sqlx::query_as("SELECT link_id, downloads FROM link_tokens WHERE link_id = ANY($1)")
            .bind(links)
            .fetch_all(&state.db)
            .await?,
    )
}

/// The one answer to a link that cannot be used, whatever the reason (unknown, expired,
/// revoked, exhausted, wrong or missing password, file gone), so none is revealed.
pub fn link_not_found() -> AppError {
    AppError::NotFound("link not found".into())
}

/// What a link serves: the version, and the file (for the representation rule).
pub struct OpenedLink {
    pub file: File,
    pub version: VersionState,
}

/// Opens a link for one download and counts it. The count is taken atomically against
/// the limit (`downloads < max_downloads` in the same `UPDATE`), so concurrent requests
/// never exceed it. Everything else is decided from the log.
pub async fn open_link(
    state: &AppState,
    token: &str,
    password_given: Option<String>,
) -> Result<OpenedLink, AppError> {
    let hash = token_sha256(token);
    let row: Option<(Uuid, Uuid, Uuid)> = sqlx::query_as(
        "SELECT tenant_id, file_id, link_id FROM link_tokens WHERE token_sha256 = $1",
    )
    .bind(&hash)
    .fetch_optional(&state.db)
    .await?;
    let Some((tenant, file_id, link_id)) = row else {
        return Err(link_not_found());
    };
    let file = load_any(state, TenantId(tenant), file_id).await?;
    if !file.exists || file.purged || file.deleted {
        return Err(link_not_found());
    }
    let link = file
        .link(link_id)
        .filter(|l| !l.revoked && l.expires_at > Utc::now() && l.token_sha256 == hash)
        .cloned()
        .ok_or_else(link_not_found)?;
    if let Some(stored) = link.password_hash.clone() {
        let given = password_given.ok_or_else(link_not_found)?;
        let verdict = tokio::task::spawn_blocking(move || password::verify(&given, &stored))
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        if matches!(verdict, Verdict::Wrong) {
            return Err(link_not_found());
        }
    }
    let version = match link.version_number {
        Some(n) => file
            .versions
            .iter()
            .find(|v| v.number == n && !v.pruned && v.storage_key.is_some()),
        None => file.current_version(),
    }
    .cloned()
    .ok_or_else(link_not_found)?;
    let counted: Option<i64> = sqlx::query_scalar(
        "UPDATE link_tokens SET downloads = downloads + 1
          WHERE token_sha256 = $1 AND ($2::bigint IS NULL OR downloads < $2)
          RETURNING downloads",
    )
    .bind(&hash)
    .bind(link.max_downloads.map(i64::from))
    .fetch_optional(&state.db)
    .await?;
    if counted.is_none() {
        return Err(link_not_found());
    }
    Ok(OpenedLink { file, version })
}

/// A grantee from the API's words.
pub fn user_grantee(user: Uuid) -> Grantee {
    Grantee::User(UserId(user))
}
