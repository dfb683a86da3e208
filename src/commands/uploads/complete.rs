//! Completing a resumable or direct upload: the bytes join the File pipeline exactly as
//! a multipart upload's do — the same `CreateWithUpload` / `Upload` command with the same
//! `NewVersion` (sanitised filename, declared type, size, temp key, SHA-256) through
//! `commit_version`, so `Uploaded` → job → worker follows. Then `UploadCompleted`
//! records which version the bytes became.
//!
//! Re-runnable: if a crash fell between the File commit and `UploadCompleted`, the next
//! PATCH or HEAD finds the version by its temp key (or the file it created) and records
//! the completion without a second version — also once the worker has processed the
//! version (`VersionState::uploaded_from` keeps the key).

use cqrs_es::EventStore;
use sha2::Digest;
use uuid::Uuid;

use super::{Destination, commit_version, version_by_temp_key};
use crate::aggregates::file::{File, NewVersion};
use crate::aggregates::upload::{CompletedAs, Upload, UploadCommand};
use crate::commands::execute;
use crate::error::AppError;
use crate::ids::{FileId, TenantId};
use crate::state::AppState;
use crate::store::EventMetadata;
use crate::uploads::filename::{self, display_text};
use crate::uploads::{digest, parts};

/// What completing gave: the version the bytes became, and the upload as the completion
/// left it (`None` when it was already complete: nothing was recorded now).
pub struct Completed {
    pub done: CompletedAs,
    pub upload: Option<Upload>,
}

/// Completes `upload` (every byte received): commits the version, then records it on the
/// upload. An upload already complete returns what it became. Runs to its end even if
/// the request is dropped meanwhile ([`crate::commands::to_the_end`]): re-running finds the
/// version, but only if the client comes back; until then the upload would read
/// unfinished, and its expiry would record an upload whose bytes became a version as
/// expired.
pub async fn complete(
    state: &AppState,
    tenant: TenantId,
    upload_id: Uuid,
    upload: &Upload,
    meta: &EventMetadata,
) -> Result<Completed, AppError> {
    let (state, upload, meta) = (state.clone(), upload.clone(), meta.clone());
    crate::commands::to_the_end(async move {
        complete_in_place(&state, tenant, upload_id, &upload, &meta).await
    })
    .await
}

async fn complete_in_place(
    state: &AppState,
    tenant: TenantId,
    upload_id: Uuid,
    upload: &Upload,
    meta: &EventMetadata,
) -> Result<Completed, AppError> {
    if let Some(done) = upload.completed {
        return Ok(Completed { done, upload: None });
    }
    let (Some(target), Some(owner), Some(length)) = (upload.target, upload.owner_id, upload.length)
    else {
        return Err(AppError::Internal(anyhow::anyhow!(
            "incomplete upload state"
        )));
    };
    let file = load_target(state, tenant, target.file_id).await?;
    let mut version_number = version_of(&file, upload, target.new_file);
    let mut sha256 = None;
    if version_number.is_none() {
        let carried = upload
            .sha256_state
            .as_deref()
            .and_then(digest::resume_sha256);
        let local = state.storage.local_path(&upload.temp_key);
        let digest = match (&upload.direct, local, carried) {
            // A direct upload: the client's declaration, which the worker checks before
            // anything is served (the API never saw the bytes).
            (Some(direct), _, _) => Ok(direct.sha256.clone()),
            // Every byte was hashed as it was written (the worker verifies it again).
            (None, Some(_), Some(hasher)) => Ok(hex::encode(hasher.finalize())),
            (None, Some(path), None) => digest::sha256_of(&path).await.map_err(|e| e.to_string()),
            (None, None, _) => {
                parts::assemble(&state.storage, tenant, upload_id, upload)
                    .await
                    .map_err(|e| AppError::Internal(anyhow::anyhow!("assembling parts: {e}")))?;
                parts::sha256_of_object(&state.storage, &upload.temp_key)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
        .map_err(|e| AppError::Internal(anyhow::anyhow!("hashing an upload: {e}")))?;
        let version = NewVersion {
            filename: filename::sanitize(&upload.filename),
            declared_mime: upload.filetype.clone(),
            size_bytes: length,
            temp_location: upload.temp_key.clone(),
            sha256: digest.clone(),
        };
        let destination = if target.new_file {
            Destination::NewFile {
                owner_id: owner,
                display_name: display_text(&upload.filename),
                tags: vec![],
            }
        } else {
            Destination::NextVersion
        };
        let (_, number) =
            commit_version(state, tenant, meta, target.file_id, destination, version).await?;
        version_number = Some(number);
        sha256 = Some(digest);
    }
    let version_number = version_number
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("committed upload has no version")))?;
    let sha256 = match sha256 {
        Some(s) => s,
        None => file
            .versions
            .iter()
            .find(|v| v.number == version_number)
            .map(|v| v.sha256.clone())
            .unwrap_or_default(),
    };
    if upload.multipart.is_some() {
        // A crash after the File command may have left tails: none outlive completion.
        state
            .storage
            .delete_tails(tenant, upload_id)
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("deleting tails: {e}")))?;
    }
    let uploads = super::upload_store(state, tenant);
    let command = UploadCommand::Complete {
        version_number,
        sha256,
    };
    let committed = execute(&uploads, &upload_id.to_string(), command, meta, &()).await?;
    let done = CompletedAs {
        file_id: target.file_id,
        version_number,
    };
    Ok(Completed {
        done,
        upload: Some(committed.aggregate),
    })
}

/// The version `upload`'s bytes already became, if an earlier completion committed it
/// (and died before recording it on the upload). A direct upload's completion asks this
/// when the bucket refuses to assemble the parts: by then the worker has usually
/// processed the version and removed the assembled object.
pub async fn committed_version(
    state: &AppState,
    tenant: TenantId,
    upload: &Upload,
) -> Result<Option<u32>, AppError> {
    let Some(target) = upload.target else {
        return Ok(None);
    };
    let file = load_target(state, tenant, target.file_id).await?;
    Ok(version_of(&file, upload, target.new_file))
}

async fn load_target(state: &AppState, tenant: TenantId, file: FileId) -> Result<File, AppError> {
    let files = super::super::files::file_store(state, tenant);
    Ok(files
        .load_aggregate(&file.to_string())
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("event store: {e}")))?
        .aggregate)
}

/// The version these bytes already became, if a previous attempt committed it.
fn version_of(file: &File, upload: &Upload, new_file: bool) -> Option<u32> {
    let by_key = version_by_temp_key(file, &upload.temp_key);
    // A file this upload created: its first version is ours, even once processed.
    by_key.or_else(|| (new_file && file.exists).then_some(1))
}
