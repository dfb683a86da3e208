//! What the API and the worker call to change state: load → decide → append, with
//! metadata on every event.
//!
//! Concurrent writers of one stream never fail each other: within a process they take
//! turns (`ChronicleStore::writer_turn`, first come first served), so they cannot
//! conflict; a writer in another process can still win the append, and then the command
//! is decided again on the new state and retried — for as long as that keeps happening,
//! because every lost race means another command of the stream committed. Only a conflict
//! that persists for `CONFLICT_PATIENCE` (no race does: it is a fault) ends in
//! `409 conflict`. docs/architecture.md, "Concurrent writers".

pub mod accounts;
pub mod erase;
pub mod files;
pub mod jobs;
pub mod notifications;
pub mod sessions;
pub mod sharing;
pub mod uploads;
pub mod users;
pub mod webhooks;

use std::time::{Duration, Instant};

pub mod api_keys;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};

use crate::error::AppError;
use crate::store::{ChronicleStore, EventMetadata};

/// How long a command keeps retrying appends that conflict (then `409 conflict`). Races
/// resolve in milliseconds; a conflict lasting this long is a fault, not a race.
pub const CONFLICT_PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command (a domain rule).
    #[error(transparent)]
    Domain(E),
    /// The append kept conflicting for `CONFLICT_PATIENCE`.
    #[error("the append kept conflicting for {CONFLICT_PATIENCE:?}")]
    Conflict,
    #[error("event store: {0}")]
    Store(String),
    /// A change of someone's standing could not be announced to the other instances;
    /// nothing was committed (docs/auth-cache.md).
    #[error("{0}")]
    Unavailable(String),
    /// The request's Idempotency-Key was taken over by a retry after its lease lapsed;
    /// nothing was committed (src/store/idempotency.rs).
    #[error("the Idempotency-Key was taken over by another request")]
    KeyTakenOver,
}

/// Runs `use_case` to its end on a task of its own, which the caller awaits but does not
/// own. For use cases whose steps must not be split: a client that hangs up makes hyper
/// drop its request's future wherever it waits, so a use case awaited in place could
/// stop after one commit and before the step that must follow it (the job's dispatch,
/// the upload's completion). The task keeps the request's tracing span and its
/// `Idempotency-Key` marker (task-locals do not follow a spawn; the commit marks the key).
pub async fn to_the_end<T: Send + 'static>(
    use_case: impl Future<Output = Result<T, AppError>> + Send + 'static,
) -> Result<T, AppError> {
    use tracing::Instrument;
    let use_case = crate::store::idempotency::carried(use_case);
    tokio::spawn(use_case.instrument(tracing::Span::current()))
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("a use case's task failed: {e}")))?
}

/// The committed result of a command.
#[derive(Debug)]
pub struct Committed<A: Aggregate> {
    pub events: Vec<EventEnvelope<A>>,
    /// State after the command.
    pub aggregate: A,
    /// Sequence of the stream's last event.
    pub sequence: u64,
}

/// The event streams of aggregate type `A` in `tenant` (another tenant's ids are simply
/// not found): the one way every use case and surface opens them.
pub fn store<A: cqrs_es::Aggregate>(
    state: &crate::state::AppState,
    tenant: crate::ids::TenantId,
) -> ChronicleStore<A> {
    ChronicleStore::new(state.events.clone(), tenant, state.config.snapshot_every)
}

/// Executes `command` against stream `aggregate_id` once this process's other writers of
/// the stream are done. The command is cloned for retries: each retry decides again on
/// freshly loaded state.
pub async fn execute<A>(
    store: &ChronicleStore<A>,
    aggregate_id: &str,
    command: A::Command,
    metadata: &EventMetadata,
    services: &A::Services,
) -> Result<Committed<A>, CommandError<A::Error>>
where
    A: Aggregate + Clone + 'static,
    A::Command: Clone,
{
    execute_all(
        store,
        aggregate_id,
        std::slice::from_ref(&command),
        metadata,
        services,
    )
    .await
}

/// Executes `commands` in order as one decision: each is decided on the state the ones
/// before it left, and all their events are appended in one commit (all or none). For a
/// writer that knows several steps at once (the worker's hash, duplicate and verdict):
/// one load and one round trip instead of one per step. Nothing to do for no commands.
///
/// The first attempt decides on the stream's presumed state (`ChronicleStore::presumed`:
/// what this process last committed to it, else the empty stream), which costs no load.
/// Its decision stands only if its append commits, or — when it appends nothing (a
/// domain error, a no-op) — if the stream still ends where the presumed state does;
/// otherwise the command is decided again on loaded state (src/store/remembered.rs).
pub async fn execute_all<A>(
    store: &ChronicleStore<A>,
    aggregate_id: &str,
    commands: &[A::Command],
    metadata: &EventMetadata,
    services: &A::Services,
) -> Result<Committed<A>, CommandError<A::Error>>
where
    A: Aggregate + Clone + 'static,
    A::Command: Clone,
{
    execute_decided(
        store,
        aggregate_id,
        |_| commands.to_vec(),
        metadata,
        services,
    )
    .await
}

/// Like [`execute_all`], with the commands chosen by `decide` from the freshly loaded
/// state (again on every retry): for a writer whose commands depend on the state, such
/// as the worker's "start attempt n unless the version has settled", one load instead
/// of a load to decide and another to execute.
pub async fn execute_decided<A, F>(
    store: &ChronicleStore<A>,
    aggregate_id: &str,
    decide: F,
    metadata: &EventMetadata,
    services: &A::Services,
) -> Result<Committed<A>, CommandError<A::Error>>
where
    A: Aggregate + Clone + 'static,
    F: Fn(&A) -> Vec<A::Command>,
{
    let map = metadata.to_map();
    let _turn = store.writer_turn(aggregate_id).await;
    let since = Instant::now();
    let mut attempt = 0;
    let mut presumed = true;
    loop {
        attempt += 1;
        let mut context = if presumed {
            store.presumed(aggregate_id)
        } else {
            store
                .load_aggregate(aggregate_id)
                .await
                .map_err(store_error)?
        };
        let sink = EventSink::default();
        let mut refused = None;
        for command in decide(&context.aggregate) {
            if let Err(err) = context.aggregate().handle(command, services, &sink).await {
                refused = Some(err);
                break;
            }
        }
        let events = sink.collect().await;
        if presumed && (refused.is_some() || events.is_empty()) {
            // A refusal or a no-op appends nothing, so no append checks it: it stands
            // only if the stream still ends where the remembered state does (a stream
            // presumed empty is loaded instead: that costs the same one query).
            let current = context.current_sequence > 0
                && store
                    .still_ends_at(aggregate_id, context.current_sequence)
                    .await
                    .map_err(store_error)?;
            if !current {
                presumed = false;
                continue;
            }
        }
        if let Some(err) = refused {
            return Err(CommandError::Domain(err));
        }
        let sequence = context.current_sequence + events.len() as u64;
        // The context's aggregate already has `events` applied; keep a copy to return.
        let aggregate = context.aggregate.clone();
        match store.commit_advancing(events, context, map.clone()).await {
            Ok((events, after)) => {
                store.remember(after);
                return Ok(Committed {
                    events,
                    aggregate,
                    sequence,
                });
            }
            // The stream moved on since this process last wrote it (or it was not new):
            // no race with a writer in flight, so no pause.
            Err(AggregateError::AggregateConflict) if presumed => presumed = false,
            Err(AggregateError::AggregateConflict) if since.elapsed() < CONFLICT_PATIENCE => {
                tracing::debug!(
                    aggregate_type = A::TYPE,
                    aggregate_id,
                    attempt,
                    "append conflicted with another process; deciding again"
                );
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(AggregateError::AggregateConflict) => {
                tracing::error!(
                    aggregate_type = A::TYPE,
                    aggregate_id,
                    attempt,
                    "append conflicted for {CONFLICT_PATIENCE:?}"
                );
                return Err(CommandError::Conflict);
            }
            Err(other) => return Err(store_error(other)),
        }
    }
}

/// Exponential backoff with full jitter: 0..(2ms · 2^attempt), capped at 50 ms. Short on
/// purpose: the loser competes with the other process's next writer, and a long pause
/// would only make it lose again.
fn backoff(attempt: u32) -> Duration {
    let ceiling_ms = (2u64 << attempt.min(5)).min(50);
    Duration::from_micros(rand::random_range(0..ceiling_ms * 1000))
}

fn store_error<E: std::error::Error>(err: AggregateError<E>) -> CommandError<E> {
    match err {
        AggregateError::UserError(e) => CommandError::Domain(e),
        AggregateError::AggregateConflict => CommandError::Conflict,
        AggregateError::DatabaseConnectionError(e)
            if matches!(
                e.downcast_ref::<crate::store::AppendError>(),
                Some(crate::store::AppendError::Unannounced(_))
            ) =>
        {
            tracing::warn!(error = %e, "refused a standing change that could not be announced");
            CommandError::Unavailable(
                "this change cannot be made while the shared cache is unreachable; retry shortly"
                    .into(),
            )
        }
        AggregateError::DatabaseConnectionError(e)
            if matches!(
                e.downcast_ref::<crate::store::AppendError>(),
                Some(crate::store::AppendError::KeyTakenOver)
            ) =>
        {
            CommandError::KeyTakenOver
        }
        other => CommandError::Store(other.to_string()),
    }
}

impl<E> From<CommandError<E>> for AppError
where
    E: std::error::Error + Into<AppError>,
{
    fn from(err: CommandError<E>) -> Self {
        match err {
            CommandError::Domain(e) => e.into(),
            CommandError::Conflict => AppError::Conflict,
            CommandError::Store(detail) => AppError::Internal(anyhow::anyhow!(detail)),
            CommandError::Unavailable(why) => AppError::Unavailable(why),
            CommandError::KeyTakenOver => AppError::IdempotencyInProgress(
                "this request ran past its Idempotency-Key's lease and a retry with the key \
                 took it over; nothing of this request was done"
                    .into(),
            ),
        }
    }
}

impl From<crate::aggregates::FileError> for AppError {
    fn from(err: crate::aggregates::FileError) -> Self {
        use crate::aggregates::FileError;
        match err {
            // A purged file is gone, as far as any client can tell.
            FileError::LegalHold => AppError::LegalHold,
            FileError::NotFound
            | FileError::Purged
            | FileError::VersionNotFound
            | FileError::LinkNotFound => AppError::NotFound(err.to_string()),
            FileError::AlreadyExists
            | FileError::Deleted
            | FileError::NotDeleted
            | FileError::WrongStatus { .. }
            | FileError::Conflicting { .. } => AppError::Validation(err.to_string()),
            FileError::Invalid { .. } => AppError::Validation(err.to_string()),
        }
    }
}

impl From<crate::aggregates::UserError> for AppError {
    fn from(err: crate::aggregates::UserError) -> Self {
        use crate::aggregates::UserError;
        match err {
            UserError::NotFound => AppError::NotFound(err.to_string()),
            UserError::AlreadyExists => AppError::AlreadyExists(err.to_string()),
            UserError::Invalid { .. } => AppError::Validation(err.to_string()),
        }
    }
}

impl From<crate::aggregates::TenantError> for AppError {
    fn from(err: crate::aggregates::TenantError) -> Self {
        use crate::aggregates::TenantError;
        match err {
            TenantError::AlreadyExists => AppError::AlreadyExists(err.to_string()),
            TenantError::InvalidName(_) | TenantError::InvalidInvitation => {
                AppError::Validation(err.to_string())
            }
            TenantError::NotFound => AppError::NotFound(err.to_string()),
        }
    }
}

impl From<crate::aggregates::SessionError> for AppError {
    fn from(err: crate::aggregates::SessionError) -> Self {
        use crate::aggregates::SessionError;
        use crate::error::AuthFailure;
        match err {
            SessionError::NotFound => AppError::NotFound(err.to_string()),
            SessionError::AlreadyExists => AppError::AlreadyExists(err.to_string()),
            SessionError::Revoked => AppError::Unauthorized(AuthFailure::SessionRevoked),
            SessionError::InvalidRefreshToken => {
                AppError::Unauthorized(AuthFailure::InvalidRefreshToken)
            }
        }
    }
}
