//! Use cases of account administration: an admin changes a user's role, bans or lifts a
//! ban, and anyone reads their own account. State comes from the user's stream, so an
//! answer never lags a change just made. The caller is an `Admin` for every change: who
//! may call these is in the signature.
//!
//! A tenant always keeps an active admin: a demotion, ban or erasure (`commands::erase`)
//! that would take away the last one is refused. Two admins demoting each other at once
//! would each see the other still there, so such changes take a per-tenant lock (a
//! transaction-scoped advisory lock, held until the change is committed) and count the
//! admins from the log, which already holds every change committed before the lock was
//! granted.

use cqrs_es::EventStore;
use sqlx::{PgPool, Postgres, Transaction};

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
    let may_remove_an_admin = matches!(change, UserChange::Ban)
        || matches!(change, UserChange::SetRole(role) if role != Role::Admin);
    // Held until this function returns, i.e. after the change is committed.
    let _admins_lock = if may_remove_an_admin {
        Some(keep_an_admin(&state.db, ctx.tenant_id, id).await?)
    } else {
        None
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

/// The advisory lock namespace of a tenant's admin set (a constant no other lock uses).
const ADMINS_LOCK_CLASS: i32 = 0x4144_4d31; // "ADM1"

/// The active admins of a tenant, from the log: the latest role of each user is admin,
/// their latest ban (if any) was lifted, and they are not erased. `$2` is the user the
/// change is about: counted apart.
const ACTIVE_ADMINS_SQL: &str = r#"
WITH latest_role AS (
  SELECT DISTINCT ON (aggregate_id) aggregate_id,
         coalesce(payload->'RoleChanged'->>'role', payload->'UserRegistered'->>'role') AS role
    FROM events
   WHERE tenant_id = $1 AND aggregate_type = 'user'
     AND event_type IN ('UserRegistered', 'RoleChanged')
   ORDER BY aggregate_id, sequence DESC),
latest_ban AS (
  SELECT DISTINCT ON (aggregate_id) aggregate_id, event_type = 'UserBanned' AS banned
    FROM events
   WHERE tenant_id = $1 AND aggregate_type = 'user'
     AND event_type IN ('UserBanned', 'UserUnbanned')
   ORDER BY aggregate_id, sequence DESC),
active AS (
  SELECT r.aggregate_id FROM latest_role r LEFT JOIN latest_ban b USING (aggregate_id)
   WHERE r.role = 'admin' AND NOT coalesce(b.banned, false)
     AND NOT EXISTS (SELECT 1 FROM events e
                      WHERE e.tenant_id = $1 AND e.aggregate_type = 'user'
                        AND e.aggregate_id = r.aggregate_id AND e.event_type = 'UserErased'))
SELECT count(*) FILTER (WHERE aggregate_id <> $2) AS others,
       coalesce(bool_or(aggregate_id = $2), false) AS is_one
  FROM active"#;

/// Takes the tenant's admin lock and refuses when `user` is its last active admin. The
/// returned transaction holds the lock; dropping it (commit or not) releases it. Taken
/// before the user's writer turn (`commands::execute`, the erasure), in that order
/// everywhere: the turn is an in-process lock Postgres cannot see, so the other order
/// could deadlock unnoticed.
pub(crate) async fn keep_an_admin(
    pool: &PgPool,
    tenant: TenantId,
    user: UserId,
) -> Result<Transaction<'static, Postgres>, AppError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(ADMINS_LOCK_CLASS)
        .bind(tenant.0.to_string())
        .execute(&mut *tx)
        .await?;
    let (others, is_one): (i64, bool) = sqlx::query_as(ACTIVE_ADMINS_SQL)
        .bind(tenant.0)
        .bind(user.to_string())
        .fetch_one(&mut *tx)
        .await?;
    if is_one && others == 0 {
        return Err(AppError::LastAdmin);
    }
    Ok(tx)
}
