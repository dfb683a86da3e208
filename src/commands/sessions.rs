//! Use case of a lost device: revoking a session. A user revokes their own sessions, an
//! admin any session of the tenant (`policy::can_revoke_session`); anything else is 404,
//! like an unknown id, so session ids of others are not confirmed.

use cqrs_es::EventStore;
use uuid::Uuid;

use crate::aggregates::session::RevokeReason;
use crate::aggregates::{Session, SessionCommand};
use crate::auth::{TenantContext, policy};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::EventMetadata;

/// Revokes session `id`; the next request made with it is refused.
pub async fn revoke(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    id: Uuid,
) -> Result<(), AppError> {
    let sessions = super::store::<Session>(state, ctx.tenant_id);
    let current = sessions
        .load_aggregate(&id.to_string())
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("event store: {e}")))?;
    if !current.aggregate.exists || !policy::can_revoke_session(ctx, current.aggregate.user_id) {
        return Err(AppError::NotFound("session not found".into()));
    }
    let revoke = SessionCommand::Revoke {
        reason: RevokeReason::Revoked,
    };
    super::execute(&sessions, &id.to_string(), revoke, meta, &()).await?;
    Ok(())
}
