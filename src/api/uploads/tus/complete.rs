//! A full upload's completion (`commands::uploads::complete`: the bytes join the File
//! pipeline as a multipart upload's do) and the live progress its owner sees.

use uuid::Uuid;

use crate::aggregates::upload::{CompletedAs, Upload, UploadStatus};
use crate::commands::uploads::complete;
use crate::error::AppError;
use crate::ids::{TenantId, version_id};
use crate::live::{PublishedProgress, UploadProgress};
use crate::state::AppState;
use crate::store::EventMetadata;

/// Completes the upload and tells its owner (SSE) when this call recorded it.
pub async fn finish(
    state: &AppState,
    tenant: TenantId,
    upload_id: Uuid,
    upload: &Upload,
    meta: &EventMetadata,
) -> Result<CompletedAs, AppError> {
    let completed = complete(state, tenant, upload_id, upload, meta).await?;
    if let Some(upload) = &completed.upload {
        super::accept::publish(state, tenant, upload_id, upload, Some(completed.done)).await;
    }
    Ok(completed.done)
}

/// The SSE message for an upload at `received` bytes (the owner is the recipient).
pub fn progress_message(
    tenant: TenantId,
    upload_id: Uuid,
    upload: &Upload,
    received: u64,
    completed: Option<CompletedAs>,
) -> Option<PublishedProgress> {
    let owner = upload.owner_id?;
    let completed = completed.or(upload.completed);
    Some(PublishedProgress {
        tenant_id: tenant.0,
        recipient_id: owner.0,
        progress: UploadProgress {
            upload_id,
            bytes_received: received,
            length: upload.length,
            state: match (completed, upload.status) {
                (Some(_), _) | (_, UploadStatus::Completed) => "completed",
                _ => "receiving",
            }
            .into(),
            file_id: completed.map(|c| c.file_id.0),
            version_id: completed.map(|c| version_id(c.file_id, c.version_number)),
            version_number: completed.map(|c| c.version_number),
        },
    })
}
