//! The direct-upload use cases (`POST /v1/files/direct`, docs/deployment.md), next to
//! the completion they share with tus (src/commands/uploads/complete.rs). The client gets
//! presigned part URLs, PUTs the parts straight to the bucket, and asks Chronicle to
//! complete. Chronicle never sees the bytes: it completes the multipart upload, checks
//! the assembled size, and records `Uploaded` with the client's declared SHA-256 through
//! the same completion as a tus upload (src/commands/uploads/complete.rs). The worker hashes the
//! object before anything is served; a mismatch fails the version.
//!
//! A session is an Upload aggregate with `DirectOpened`, so unfinished sessions expire
//! like tus uploads: the worker aborts the multipart upload (src/worker/expire.rs).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::aggregates::upload::{CompletedAs, Direct, Upload, UploadCommand, UploadStatus};
use crate::api::uploads::tus::complete::finish;
use crate::api::uploads::tus::headers::is_mime;
use crate::auth::TenantContext;
use crate::auth::policy;
use crate::commands::uploads::quota::target;
use crate::commands::uploads::{self as use_case, SetAside};
use crate::error::AppError;
use crate::ids::FileId;
use crate::state::AppState;
use crate::storage::{Storage, part_size};
use crate::store::EventMetadata;
use crate::uploads::lock::UploadLock;

/// S3's floor for every part but the last.
const MIN_PART: u64 = 5 * 1024 * 1024;
/// S3 numbers parts 1..=10000.
const MAX_PARTS: u64 = 10_000;

/// What the client declares before sending any byte.
#[derive(Debug, Clone)]
pub struct DirectRequest {
    pub size: u64,
    /// Lowercase hex; the worker holds the bytes to it.
    pub sha256: String,
    /// How many parts the client wants; Chronicle picks when `None`.
    pub parts: Option<u32>,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    /// A new version of this file instead of a new file.
    pub file_id: Option<Uuid>,
}

/// One presigned part URL.
#[derive(Debug, Clone)]
pub struct PartUrl {
    pub number: u32,
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct DirectSession {
    pub upload_id: Uuid,
    pub file_id: FileId,
    pub part_size: u64,
    pub parts: Vec<PartUrl>,
    pub expires_at: DateTime<Utc>,
}

/// Opens a session: validates the declaration, starts the multipart upload and
/// presigns every part URL.
pub async fn start(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    request: DirectRequest,
) -> Result<DirectSession, AppError> {
    // Not offered without S3: like a route this deployment does not have.
    if !state.storage.presigns() {
        return Err(AppError::NotFound(
            "direct uploads need S3 storage (S3_BUCKET); use POST /v1/files or /v1/uploads".into(),
        ));
    }
    let max = state.config.max_upload_bytes;
    if request.size > max {
        return Err(AppError::PayloadTooLarge(format!(
            "size exceeds the upload limit of {max} bytes"
        )));
    }
    if request.size == 0 {
        return Err(AppError::Validation(
            "size must be at least 1 byte; send an empty file through POST /v1/files".into(),
        ));
    }
    let sha256 = parse_sha256(&request.sha256)?;
    let part_size = choose_part_size(request.size, request.parts)?;
    let parts = request.size.div_ceil(part_size) as u32;
    if let Some(t) = &request.content_type
        && !is_mime(t)
    {
        return Err(AppError::Validation(format!(
            "content_type {t:?} is not a media type"
        )));
    }
    let target = target(state, ctx, request.file_id, Some(request.size)).await?;

    let upload_id = Uuid::now_v7();
    let temp_key = Storage::temp_key(ctx.tenant_id, upload_id);
    let expiry = state.config.scale.direct_upload_expiry;
    let multipart_id = state
        .storage
        .create_multipart(&temp_key)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("starting a multipart upload: {e}")))?;
    let mut urls = Vec::with_capacity(parts as usize);
    for number in 1..=parts {
        let url = state
            .storage
            .presign_part(&temp_key, &multipart_id, number, expiry)
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("presigning a part: {e}")))?;
        urls.push(PartUrl { number, url });
    }
    let expires_at = Utc::now() + expiry;
    let command = UploadCommand::Start {
        owner_id: ctx.user_id,
        length: Some(request.size),
        max_size: max,
        filename: request.filename.unwrap_or_else(|| "file".into()),
        filetype: request
            .content_type
            .map(|t| t.to_ascii_lowercase())
            .unwrap_or_else(|| "application/octet-stream".into()),
        target,
        temp_key: temp_key.clone(),
        expires_at,
        multipart_id: Some(multipart_id.clone()),
        direct: Some(Direct {
            sha256,
            part_size,
            parts,
        }),
    };
    let set_aside = SetAside::Multipart {
        key: &temp_key,
        id: &multipart_id,
    };
    use_case::open(state, ctx.tenant_id, upload_id, command, meta, set_aside).await?;
    Ok(DirectSession {
        upload_id,
        file_id: target.file_id,
        part_size,
        parts: urls,
        expires_at,
    })
}

/// Completes a session with the parts' e-tags (in part order, as the bucket returned
/// them): assembles the object, checks its size and records the upload. Repeating a
/// completed session answers the same version.
pub async fn complete(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    upload_id: Uuid,
    e_tags: Vec<String>,
) -> Result<CompletedAs, AppError> {
    let upload = owned(state, ctx, upload_id).await?;
    if let Some(done) = upload.completed {
        return Ok(done);
    }
    let key = UploadLock::key(&state.config.redis_key_prefix, ctx.tenant_id.0, upload_id);
    let lock = UploadLock::acquire(&state.redis_conn, key, state.config.tus.lock_lease)
        .await
        .map_err(|e| AppError::Unavailable(format!("upload lock unavailable: {e}")))?
        .ok_or(AppError::UploadLocked)?;
    let result = locked(state, ctx, meta, upload_id, e_tags).await;
    lock.release().await;
    result
}

async fn locked(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    upload_id: Uuid,
    e_tags: Vec<String>,
) -> Result<CompletedAs, AppError> {
    // Again under the lock: the expiry job or another completion may have run.
    let upload = owned(state, ctx, upload_id).await?;
    if let Some(done) = upload.completed {
        return Ok(done);
    }
    let overdue = upload.expires_at.is_some_and(|at| Utc::now() >= at);
    match upload.status {
        UploadStatus::InProgress if !overdue => {}
        UploadStatus::InProgress | UploadStatus::Expired => {
            return Err(AppError::Gone("the upload session has expired".into()));
        }
        _ => return Err(AppError::Gone("the upload session was terminated".into())),
    }
    let (Some(direct), Some(multipart), Some(length)) =
        (&upload.direct, &upload.multipart, upload.length)
    else {
        return Err(AppError::NotFound("upload not found".into()));
    };
    let storage = &state.storage;
    let stored = storage.size_of(&upload.temp_key).await?;
    // An earlier attempt may have assembled the object and crashed before recording.
    let size = match stored {
        Some(size) => size,
        None => {
            if e_tags.len() != direct.parts as usize || e_tags.iter().any(|t| t.is_empty()) {
                return Err(AppError::Validation(format!(
                    "send the e-tags of all {} parts, in part order",
                    direct.parts
                )));
            }
            if let Err(err) = storage
                .complete_multipart(&upload.temp_key, &multipart.id, &e_tags)
                .await
            {
                // An earlier completion may have assembled the object, committed the
                // version and died before recording it; the worker has since removed
                // the object, so the bucket refuses the spent multipart upload. Asked
                // here, not first, so a normal completion loads the file once.
                if use_case::committed_version(state, ctx.tenant_id, &upload)
                    .await?
                    .is_some()
                {
                    return finish(state, ctx.tenant_id, upload_id, &upload, meta).await;
                }
                tracing::warn!(error = %err, upload = %upload_id, "completing a direct upload failed");
                return Err(AppError::Validation(
                    "the bucket refused to assemble the parts: a part is missing or an e-tag is wrong"
                        .into(),
                ));
            }
            storage.size_of(&upload.temp_key).await?.unwrap_or(0)
        }
    };
    if size != length {
        // The multipart upload is spent: the session cannot be completed any more.
        use_case::close_spent(state, ctx.tenant_id, upload_id, &upload.temp_key, meta).await?;
        return Err(AppError::Validation(format!(
            "the parts add up to {size} bytes, not the declared {length}; the session is closed"
        )));
    }
    finish(state, ctx.tenant_id, upload_id, &upload, meta).await
}

/// The session as its owner sees it; anyone else (admins included) gets 404, as with tus.
async fn owned(state: &AppState, ctx: &TenantContext, id: Uuid) -> Result<Upload, AppError> {
    let upload = crate::api::uploads::tus::load_state(state, ctx.tenant_id, id).await?;
    if policy::owns_upload(ctx, upload.owner_id)
        && upload.status != UploadStatus::Missing
        && upload.direct.is_some()
    {
        Ok(upload)
    } else {
        Err(AppError::NotFound("upload not found".into()))
    }
}

fn parse_sha256(text: &str) -> Result<String, AppError> {
    let lower = text.to_ascii_lowercase();
    if lower.len() == 64 && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(lower)
    } else {
        Err(AppError::Validation(
            "sha256 must be 64 hexadecimal characters".into(),
        ))
    }
}

/// Every part but the last is `part_size` long: the client's split when it asked for a
/// number of parts (each at least 5 MiB, S3's floor), else the tus uploads' size.
fn choose_part_size(size: u64, parts: Option<u32>) -> Result<u64, AppError> {
    let Some(parts) = parts else {
        return Ok(part_size(size));
    };
    let parts = u64::from(parts);
    if parts == 0 || parts > MAX_PARTS {
        return Err(AppError::Validation(format!(
            "parts must be between 1 and {MAX_PARTS}"
        )));
    }
    let each = size.div_ceil(parts);
    if parts > 1 && each < MIN_PART {
        return Err(AppError::Validation(format!(
            "{parts} parts of {size} bytes would be under S3's 5 MiB minimum part size"
        )));
    }
    Ok(each)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn part_sizes_respect_s3s_limits() {
        assert_eq!(choose_part_size(100 * MIB, None).unwrap(), 8 * MIB);
        assert_eq!(choose_part_size(100 * MIB, Some(4)).unwrap(), 25 * MIB);
        assert_eq!(choose_part_size(3, Some(1)).unwrap(), 3);
        assert!(choose_part_size(9 * MIB, Some(2)).is_err());
        assert!(choose_part_size(MIB, Some(0)).is_err());
        assert!(choose_part_size(u64::MAX / 2, Some(10_001)).is_err());
        // The part count follows from the size: the client may get fewer than asked.
        let each = choose_part_size(100 * MIB + 1, Some(3)).unwrap();
        assert_eq!((100 * MIB + 1).div_ceil(each), 3);
    }

    #[test]
    fn a_declared_sha256_is_64_hex_characters() {
        assert_eq!(parse_sha256(&"AB".repeat(32)).unwrap(), "ab".repeat(32));
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"zz".repeat(32)).is_err());
    }
}
