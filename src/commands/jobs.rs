//! Processing jobs: their dispatch to the queue, and the operations use case that sends
//! a dead-lettered job back (the job row only names the file version; the retry itself
//! is a `RetryProcessing` command on the file, so the log records who retried what).
//!
//! **Dispatch.** A File command whose events ask for processing (`Uploaded`,
//! `ProcessingRetried`) puts the job on the queue right after its commit, in the request
//! that made it: the worker starts while the client reads its `202`, not after the
//! `jobs` projector's next batch. The event log stays the record of jobs (the outbox): a
//! process that dies between the commit and the dispatch, or a Redis that is down then,
//! leaves a job that Postgres has and Redis does not know, and the worker's reconciler
//! (src/worker/reconcile.rs) queues it again. docs/architecture.md, "Queue".
//!
//! **Commit and dispatch run to their end.** A client that hangs up (a timeout, a closed
//! laptop, a load generator stopping) makes hyper drop its request's future wherever
//! it is awaiting. Dropped between the commit and the dispatch, the job would wait for
//! the reconciler — up to `JOB_RECONCILE_SECS` and its grace, a minute by default —
//! though nothing had failed. So the pair runs to its end on a task of its own
//! ([`execute_and_dispatch`], [`super::to_the_end`]).

use cqrs_es::EventEnvelope;
use uuid::Uuid;

use crate::aggregates::FileEvent;
use crate::aggregates::file::{File, FileCommand};
use crate::auth::Admin;
use crate::error::AppError;
use crate::ids::{FileId, TenantId};
use crate::queue::JobMessage;
use crate::state::AppState;
use crate::store::EventMetadata;

use super::Committed;
use super::files::file_store;

/// The jobs that newly committed File events ask to run.
fn jobs_of(tenant: TenantId, file_id: FileId, events: &[EventEnvelope<File>]) -> Vec<JobMessage> {
    events
        .iter()
        .filter_map(|e| match e.payload {
            FileEvent::Uploaded { version_number, .. }
            | FileEvent::ProcessingRetried { version_number } => Some(version_number),
            _ => None,
        })
        .map(|n| JobMessage::process_version(tenant, file_id, n))
        .collect()
}

/// Runs File `command` on file `file_id`, then queues the jobs its events ask for — to
/// the end, so a request dropped meanwhile (its client hung up) cannot stop after the
/// commit and before the dispatch ([`super::to_the_end`]).
pub async fn execute_and_dispatch(
    state: &AppState,
    tenant: TenantId,
    file_id: FileId,
    command: FileCommand,
    meta: &EventMetadata,
) -> Result<Committed<File>, AppError> {
    let (state, meta) = (state.clone(), meta.clone());
    super::to_the_end(async move {
        let files = file_store(&state, tenant);
        let committed = super::execute(&files, &file_id.to_string(), command, &meta, &()).await?;
        dispatch(&state, tenant, file_id, &committed.events).await;
        Ok(committed)
    })
    .await
}

/// Queues the jobs `events` (just committed to file `file_id`) ask for. Not an error
/// when Redis does not take them: the command has committed, and the reconciler queues
/// them again.
async fn dispatch(
    state: &AppState,
    tenant: TenantId,
    file_id: FileId,
    events: &[EventEnvelope<File>],
) {
    let jobs = jobs_of(tenant, file_id, events);
    if !state.dispatch.send(&jobs).await {
        tracing::debug!(jobs = jobs.len(), file = %file_id.0, "jobs not queued; the reconciler will queue them");
    }
}

/// Retries job `id` of the admin's tenant with a new budget of attempts (404 for an
/// unknown job; the file refuses a version that is not dead-lettered with 422).
pub async fn retry(
    state: &AppState,
    Admin(ctx): &Admin,
    meta: &EventMetadata,
    id: Uuid,
) -> Result<(), AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let job: Option<(Uuid, i32)> =
        sqlx::query_as("SELECT file_id, version_number FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    let (file_id, version_number) =
        job.ok_or_else(|| AppError::NotFound("job not found".into()))?;
    let retry = FileCommand::RetryProcessing {
        version_number: version_number as u32,
    };
    execute_and_dispatch(state, ctx.tenant_id, FileId(file_id), retry, meta).await?;
    Ok(())
}
