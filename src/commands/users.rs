//! Use cases of account administration: an admin changes a user's role, bans or lifts a
//! ban, and anyone reads their own account. State comes from the user's stream, so an
//! answer never lags a change just made. The caller is an `Admin` for every change: who
//! may call these is in the signature.

use cqrs_es::EventStore;

use crate::aggregates::{Role, User, UserCommand};
use crate::auth::{Admin, TenantContext};
use crate::error::AppError;
use crate::ids::{TenantId, UserId};
use crate::state::AppState;
use crate::store::{ChronicleStore, EventMetadata};

/// Users of one tenant, as event streams (another tenant's id is simply not found).
fn user_store(state: &AppState, tenant: TenantId) -> ChronicleStore<User> {
    crate::commands::store(state, tenant)
}

/// A user of the caller's tenant as the log has it; 404 for an unknown id.
pub async fn load(state: &AppState, ctx: &TenantContext, id: UserId) -> Result<User, AppError> {
    let user = user_store(state, ctx.tenant_id)
        .load_aggregate(&id.to_string())
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("event store: {e}")))?
        .aggregate;
    existing(user)
}

fn existing(user: User) -> Result<User, AppError> {
    if user.exists {
        Ok(user)
    } else {
        Err(AppError::NotFound("user not found".into()))
    }
}

/// What an admin may do to a user of the tenant.
#[derive(Debug, Clone, Copy)]
pub enum UserChange {
    SetRole(Role),
    /// Their sessions and keys are refused from the next request on.
    Ban,
    Unban,
}

/// Applies `change` to user `id` of the admin's tenant and returns the user as it left
/// them. An admin cannot ban themself (they would lock the tenant out by accident;
/// another admin does it).
pub async fn change(
    state: &AppState,
    Admin(ctx): &Admin,
    meta: &EventMetadata,
    id: UserId,
    change: UserChange,
) -> Result<User, AppError> {
    let command = match change {
        UserChange::SetRole(role) => UserCommand::ChangeRole { role },
        UserChange::Ban if id == ctx.user_id => {
            return Err(AppError::Validation("you cannot ban yourself".into()));
        }
        UserChange::Ban => UserCommand::Ban,
        UserChange::Unban => UserCommand::Unban,
    };
    let done = super::execute(
        &user_store(state, ctx.tenant_id),
        &id.to_string(),
        command,
        meta,
        &(),
    )
    .await?;
    existing(done.aggregate)
}
