//! Erasing a user: destroy their data key, remove their credentials, record
//! `UserErased` and revoke their sessions. What stays: the events (sealed fields now
//! unreadable, so the hash chain still verifies), the handle, and the facts of what
//! the account did. docs/architecture.md, "Event versioning and erasure".

use cqrs_es::{AggregateError, EventStore};
use sqlx::PgPool;
use uuid::Uuid;

use crate::aggregates::session::RevokeReason;
use crate::aggregates::{Session, SessionCommand, User, UserCommand};
use crate::commands;
use crate::error::AppError;
use crate::ids::{TenantId, UserId};
use crate::store::{ChronicleStore, EventLog, EventMetadata};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure {
    /// The key was destroyed and `UserErased` recorded now.
    Erased,
    /// An earlier request did it; nothing new was recorded.
    AlreadyErased,
}

/// Events of this user written before personal fields were sealed (v1): their plaintext
/// stays in the log, so the erasure event records how many there are.
const PLAINTEXT_EVENTS_SQL: &str = r#"
SELECT count(*) FROM events
 WHERE tenant_id = $1 AND event_version = '1'
   AND ((aggregate_type = 'user' AND aggregate_id = $2::text AND event_type = 'UserRegistered')
     OR (aggregate_type = 'session' AND event_type = 'SessionStarted'
         AND payload->'SessionStarted'->>'user_id' = $2::text))"#;

/// The user's sessions that have not been revoked yet, from the log (the read table
/// may lag behind a login that just happened).
const OPEN_SESSIONS_SQL: &str = r#"
SELECT s.aggregate_id FROM events s
 WHERE s.tenant_id = $1 AND s.aggregate_type = 'session' AND s.event_type = 'SessionStarted'
   AND s.payload->'SessionStarted'->>'user_id' = $2::text
   AND NOT EXISTS (SELECT 1 FROM events r
                    WHERE r.tenant_id = s.tenant_id AND r.aggregate_type = 'session'
                      AND r.aggregate_id = s.aggregate_id AND r.event_type = 'SessionRevoked')"#;

/// Tries of the erasure when another process changed the user meanwhile.
const MAX_ATTEMPTS: u32 = 6;

/// Erases `user` of `tenant` (the caller has checked the role). Another tenant's user is
/// simply not found: the store and every statement are bound to `tenant`. Runs to its
/// end ([`commands::to_the_end`]): a request dropped between the announcement of the
/// change and its end (a client hanging up) would leave the tenant's standing epoch
/// pending, and its every request reading the log, for `PENDING_TTL`.
pub async fn erase_user(
    pool: &PgPool,
    log: &EventLog,
    snapshot_every: u64,
    tenant: TenantId,
    user: UserId,
    meta: &EventMetadata,
) -> Result<Erasure, AppError> {
    let (pool, log, meta) = (pool.clone(), log.clone(), meta.clone());
    commands::to_the_end(async move {
        // The erasure commits in its own transaction (not through `EventLog::append`),
        // so it announces its change of standing itself (docs/auth-cache.md).
        log.begin_standing_change(tenant.0).await.map_err(|e| {
            tracing::warn!(error = %e, "refused an erasure that could not be announced");
            AppError::Unavailable(
                "this change cannot be made while the shared cache is unreachable; retry shortly"
                    .into(),
            )
        })?;
        let erased = erase_announced(&pool, &log, snapshot_every, tenant, user, &meta).await;
        log.end_standing_change(tenant.0).await;
        let outcome = erased?;
        // Also on a repeated request: a crash after the commit above may have left
        // sessions open. They are refused anyway (`session_standing` checks UserErased);
        // revoking them records why and ends them in the read tables.
        revoke_sessions(&pool, &log, snapshot_every, tenant, user, &meta).await?;
        Ok(outcome)
    })
    .await
}

/// The erasure's transaction, retried on conflicts, between its announcement and end.
async fn erase_announced(
    pool: &PgPool,
    log: &EventLog,
    snapshot_every: u64,
    tenant: TenantId,
    user: UserId,
    meta: &EventMetadata,
) -> Result<Erasure, AppError> {
    // An admin never erases themself, but two admins erasing (or demoting) each other
    // at the same moment would leave none: the tenant's admin lock, held until the
    // erasure is committed (docs/architecture.md, "Accounts").
    let _admins_lock = commands::users::keep_an_admin(pool, tenant, user).await?;
    let users = ChronicleStore::<User>::new(log.clone(), tenant, snapshot_every);
    let id = user.to_string();
    let mut outcome = None;
    // This process's other writers of the user wait (as in `commands::execute`); only a
    // writer in another process can still conflict.
    let turn = users.writer_turn(&id).await;
    for attempt in 1..=MAX_ATTEMPTS {
        let ctx = users.load_aggregate(&id).await.map_err(store_error)?;
        if !ctx.aggregate.exists {
            return Err(AppError::NotFound("user not found".into()));
        }
        if ctx.aggregate.erased {
            // A snapshot saved late by a command that committed just before the
            // erasure may hold the opened fields: a repeated request removes it too.
            drop_snapshot(pool, tenant, &id).await?;
            outcome = Some(Erasure::AlreadyErased);
            break;
        }
        // Key, credentials, snapshot and event in one transaction: either the user is
        // erased in every respect or in none.
        let mut tx = pool.begin().await?;
        let plaintext_events: i64 = sqlx::query_scalar(PLAINTEXT_EVENTS_SQL)
            .bind(tenant.0)
            .bind(user.0)
            .fetch_one(&mut *tx)
            .await?;
        crate::privacy::keys::destroy(&mut tx, tenant.0, user.0).await?;
        sqlx::query("DELETE FROM credentials WHERE user_id = $1 AND tenant_id = $2")
            .bind(user.0)
            .bind(tenant.0)
            .execute(&mut *tx)
            .await?;
        // The user's snapshot holds the decrypted name and email.
        drop_snapshot(&mut *tx, tenant, &id).await?;
        let events = ctx.aggregate.decide(UserCommand::Erase {
            plaintext_events: plaintext_events as u64,
        })?;
        match users.commit_in(&mut tx, events, ctx, meta.to_map()).await {
            Ok(_) => {
                tx.commit().await?;
                outcome = Some(Erasure::Erased);
                break;
            }
            // A concurrent change to the user won: decide again on fresh state.
            Err(AggregateError::AggregateConflict) if attempt < MAX_ATTEMPTS => continue,
            Err(AggregateError::AggregateConflict) => return Err(AppError::Conflict),
            Err(other) => return Err(store_error(other)),
        }
    }
    drop(turn);
    outcome.ok_or(AppError::Conflict)
}

async fn revoke_sessions(
    pool: &PgPool,
    log: &EventLog,
    snapshot_every: u64,
    tenant: TenantId,
    user: UserId,
    meta: &EventMetadata,
) -> Result<(), AppError> {
    let open: Vec<String> = sqlx::query_scalar(OPEN_SESSIONS_SQL)
        .bind(tenant.0)
        .bind(user.0)
        .fetch_all(pool)
        .await?;
    let sessions = ChronicleStore::<Session>::new(log.clone(), tenant, snapshot_every);
    for session in open {
        if Uuid::parse_str(&session).is_err() {
            continue;
        }
        let revoke = SessionCommand::Revoke {
            reason: RevokeReason::UserErased,
        };
        commands::execute(&sessions, &session, revoke, meta, &()).await?;
    }
    Ok(())
}

async fn drop_snapshot(
    conn: impl sqlx::PgExecutor<'_>,
    tenant: TenantId,
    user: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM snapshots WHERE tenant_id = $1 AND aggregate_type = 'user' AND aggregate_id = $2",
    )
    .bind(tenant.0)
    .bind(user)
    .execute(conn)
    .await?;
    Ok(())
}

fn store_error<E: std::error::Error>(err: AggregateError<E>) -> AppError {
    AppError::Internal(anyhow::anyhow!("event store: {err}"))
}
