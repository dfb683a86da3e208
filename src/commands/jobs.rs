//! Use case of operations: an admin sends a dead-lettered job back to the queue. The job
//! row only names the file version; the retry itself is a `RetryProcessing` command on
//! the file, so the log records who retried what, and the queue is fed from the log like
//! any other processing request.

use uuid::Uuid;

use crate::aggregates::file::FileCommand;
use crate::auth::Admin;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::EventMetadata;

use super::files::file_store;

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
    super::execute(
        &file_store(state, ctx.tenant_id),
        &file_id.to_string(),
        FileCommand::RetryProcessing {
            version_number: version_number as u32,
        },
        meta,
        &(),
    )
    .await?;
    Ok(())
}
