//! `/v1/uploads`: resumable uploads, tus 1.0.0 (core, creation, creation-with-upload,
//! creation-defer-length, termination, expiration, checksum with sha1/sha256). Each
//! upload is an Upload aggregate (src/aggregates/upload); its bytes append to a temp file
//! under local storage. A full upload joins the multipart path's pipeline (complete.rs).
//! An upload belongs to its tenant and its user: anyone else gets 404.
//! docs/architecture.md, "Resumable uploads (tus)", has the decisions.

mod accept;
mod chunk;
mod chunk_body;
mod chunk_file;
pub(crate) mod complete;
pub mod create;
pub(crate) mod headers;
mod phases;
mod s3_chunk;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cqrs_es::EventStore;
use uuid::Uuid;

use self::accept::{Accepted, Chunk, accept};
use self::headers::{TUS_VERSION, http_date, set};
use crate::aggregates::upload::{CompletedAs, Upload, UploadError, UploadStatus};
use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::ApiPath;
use crate::auth::{TenantContext, policy};
use crate::commands::store;
use crate::commands::uploads::quota::check_quota;
use crate::commands::uploads::{self as use_case, UploadsAt};
use crate::error::{AppError, ErrorBody};
use crate::ids::{TenantId, version_id};
use crate::state::AppState;
use crate::uploads::lock::UploadLock;

/// The tus routes; every answer (errors included) carries `Tus-Resumable`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/uploads", post(create::create).options(options))
        .route(
            "/v1/uploads/{id}",
            axum::routing::head(head)
                .patch(patch)
                .delete(terminate)
                .options(options_upload),
        )
        .layer(axum::middleware::map_response(tus_resumable))
}

async fn tus_resumable(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    if response.status() == StatusCode::PRECONDITION_FAILED {
        response
            .headers_mut()
            .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    }
    response
}

/// Discovery (no token needed): what this server supports.
#[utoipa::path(options, path = "/v1/uploads", tag = "uploads",
    responses((status = 204, description = "Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm")))]
pub async fn options(State(state): State<AppState>) -> Response {
    let mut h = HeaderMap::new();
    set(&mut h, "tus-version", TUS_VERSION);
    set(&mut h, "tus-extension", headers::EXTENSIONS);
    set(&mut h, "tus-max-size", state.config.tus.max_size);
    set(
        &mut h,
        "tus-checksum-algorithm",
        headers::CHECKSUM_ALGORITHMS,
    );
    (StatusCode::NO_CONTENT, h).into_response()
}

/// Discovery at an upload's URL (tus allows OPTIONS anywhere): the same answer.
#[utoipa::path(options, path = "/v1/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$",
            description = "any text without control characters (the text rule): the answer does not depend on it")),
    responses((status = 204, description = "Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm")))]
pub async fn options_upload(state: State<AppState>) -> Response {
    options(state).await
}

/// Where the upload stands. A full upload whose completion was interrupted completes here.
#[utoipa::path(head, path = "/v1/uploads/{id}", tag = "uploads", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "upload id"), ("Tus-Resumable" = String, Header, description = "1.0.0")),
    responses((status = 200, description = "Upload-Offset, Upload-Length (or Upload-Defer-Length), Upload-Expires; Chronicle-File-Id/-Version-Id/-Version-Number once complete; Cache-Control: no-store"),
               (status = 404, body = ErrorBody), (status = 410, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn head(
    State(state): State<AppState>,
    ctx: TenantContext,
    ApiPath(id): ApiPath<Uuid>,
    request_headers: HeaderMap,
) -> Result<Response, AppError> {
    headers::require_tus_resumable(&request_headers)?;
    let mut upload = owned(&state, &ctx, id).await?;
    usable(&upload)?;
    let mut completed = upload.completed;
    if completed.is_none() && upload.is_full() {
        // Under the lock, or a PATCH completing right now would race us; if it is held,
        // that PATCH completes it and this HEAD reports the state as it is.
        let key = UploadLock::key(&state.config.redis_key_prefix, ctx.tenant_id.0, id);
        let lease = state.config.tus.lock_lease;
        if let Ok(Some(lock)) = UploadLock::acquire(&state.redis_conn, key, lease).await {
            let meta = caller_metadata(&ctx, &request_headers);
            let done = complete::finish(&state, ctx.tenant_id, id, &upload, &meta).await;
            lock.release().await;
            completed = Some(done?);
            upload = load_state(&state, ctx.tenant_id, id).await?;
        }
    }
    let mut h = state_headers(&upload, completed);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((StatusCode::OK, h).into_response())
}

/// Appends a chunk at `Upload-Offset`.
#[utoipa::path(patch, path = "/v1/uploads/{id}", tag = "uploads", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "upload id"), ("Tus-Resumable" = String, Header, description = "1.0.0"),
           ("Upload-Offset" = u64, Header, description = "where this chunk starts"),
           ("Upload-Checksum" = Option<String>, Header, description = "`sha1 <base64>` or `sha256 <base64>` of this chunk")),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses((status = 204, description = "Upload-Offset; on the last chunk also Chronicle-File-Id, Chronicle-Version-Id, Chronicle-Version-Number"),
               (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody),
               (status = 412, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
               (status = 423, body = ErrorBody), (status = 460, body = ErrorBody), (status = 507, body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    ctx: TenantContext,
    ApiPath(id): ApiPath<Uuid>,
    request: Request,
) -> Result<Response, AppError> {
    let started = std::time::Instant::now();
    let h = request.headers();
    headers::require_tus_resumable(h)?;
    if !headers::is_chunk(h) {
        return Err(AppError::UnsupportedMediaType(format!(
            "a PATCH body must be {}",
            headers::CHUNK_CONTENT_TYPE
        )));
    }
    let from_offset = headers::number(h, "upload-offset")?
        .ok_or_else(|| AppError::BadRequest("Upload-Offset is required".into()))?;
    let declared_length = headers::number(h, "upload-length")?;
    let checksum = headers::checksum(h)?;
    let content_length = headers::number(h, "content-length")?;
    // The state this process last committed to the upload, when it takes this chunk as
    // is (no query); anything else is decided on the loaded state. Either is confirmed
    // under the lock before a byte is written (accept.rs).
    let (upload, sequence) = match store::<Upload>(&state, ctx.tenant_id)
        .remembered_copy(&id.to_string())
        .filter(|(u, _)| takes_as_is(&ctx, u, from_offset))
    {
        Some(presumed) => presumed,
        None => owned_at(&state, &ctx, id).await?,
    };
    if upload.status == UploadStatus::Completed && from_offset == upload.offset {
        // A retried final PATCH whose answer was lost: the same answer again.
        return Ok((
            StatusCode::NO_CONTENT,
            state_headers(&upload, upload.completed),
        )
            .into_response());
    }
    usable(&upload)?;
    if from_offset != upload.offset {
        return Err(AppError::OffsetMismatch {
            sent: from_offset,
            expected: upload.offset,
        });
    }
    if declared_length.is_some() && upload.length.is_none() {
        check_quota(&state, &ctx, declared_length).await?;
    }
    let limit = upload.length.or(declared_length).unwrap_or(upload.max_size);
    if content_length.is_some_and(|n| from_offset.saturating_add(n) > limit) {
        return Err(AppError::PayloadTooLarge(format!(
            "the chunk would take the upload past {limit} bytes"
        )));
    }
    let chunk = Chunk {
        tenant: ctx.tenant_id,
        upload_id: id,
        from_offset,
        declared_length,
        checksum,
        meta: caller_metadata(&ctx, h),
        started,
        seen: Some((upload, sequence)),
    };
    let accepted = accept(&state, chunk, request.into_body()).await?;
    Ok(chunk_headers(&accepted).into_response())
}

/// Termination: the upload ends and its bytes are deleted.
#[utoipa::path(delete, path = "/v1/uploads/{id}", tag = "uploads", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "upload id"), ("Tus-Resumable" = String, Header, description = "1.0.0")),
    responses((status = 204, description = "terminated, bytes deleted"), (status = 404, body = ErrorBody),
               (status = 410, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn terminate(
    State(state): State<AppState>,
    ctx: TenantContext,
    ApiPath(id): ApiPath<Uuid>,
    request_headers: HeaderMap,
) -> Result<Response, AppError> {
    headers::require_tus_resumable(&request_headers)?;
    let upload = owned(&state, &ctx, id).await?;
    if matches!(
        upload.status,
        UploadStatus::Expired | UploadStatus::Terminated
    ) {
        return Err(gone(&upload));
    }
    // Not while a PATCH writes: its bytes would land in a deleted file.
    let key = UploadLock::key(&state.config.redis_key_prefix, ctx.tenant_id.0, id);
    let lock = UploadLock::acquire(&state.redis_conn, key, state.config.tus.lock_lease)
        .await
        .map_err(|e| AppError::Unavailable(format!("upload lock unavailable: {e}")))?
        .ok_or(AppError::UploadLocked)?;
    let meta = caller_metadata(&ctx, &request_headers);
    let result = terminate_locked(&state, ctx.tenant_id, id, &meta).await;
    lock.release().await;
    result?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn terminate_locked(
    state: &AppState,
    tenant: TenantId,
    id: Uuid,
    meta: &crate::store::EventMetadata,
) -> Result<(), AppError> {
    let at = UploadsAt {
        events: &state.events,
        storage: &state.storage,
        snapshot_every: state.config.snapshot_every,
    };
    use_case::end(at, tenant, id, use_case::Ending::Terminate, meta).await?;
    Ok(())
}

/// The upload as its owner sees it (`policy::owns_upload`); anyone else (other user,
/// admins included, other tenant) gets 404.
async fn owned(state: &AppState, ctx: &TenantContext, id: Uuid) -> Result<Upload, AppError> {
    Ok(owned_at(state, ctx, id).await?.0)
}

/// `owned`, with the sequence the upload's stream ends at.
async fn owned_at(
    state: &AppState,
    ctx: &TenantContext,
    id: Uuid,
) -> Result<(Upload, u64), AppError> {
    let (upload, sequence) = load_at(state, ctx.tenant_id, id).await?;
    if policy::owns_upload(ctx, upload.owner_id) && upload.status != UploadStatus::Missing {
        Ok((upload, sequence))
    } else {
        Err(AppError::NotFound("upload not found".into()))
    }
}

/// Whether a remembered state lets chunk `from_offset` through every check `patch` makes
/// on the upload: owned by the caller, in progress, not overdue, at that offset. Only
/// then is it used; a refusal is always decided on loaded state.
fn takes_as_is(ctx: &TenantContext, upload: &Upload, from_offset: u64) -> bool {
    policy::owns_upload(ctx, upload.owner_id)
        && upload.status == UploadStatus::InProgress
        && usable(upload).is_ok()
        && upload.offset == from_offset
}

pub(crate) async fn load_state(
    state: &AppState,
    tenant: TenantId,
    id: Uuid,
) -> Result<Upload, AppError> {
    Ok(load_at(state, tenant, id).await?.0)
}

/// The upload as stored, and the sequence its stream ends at.
pub(crate) async fn load_at(
    state: &AppState,
    tenant: TenantId,
    id: Uuid,
) -> Result<(Upload, u64), AppError> {
    let context = store::<Upload>(state, tenant)
        .load_aggregate(&id.to_string())
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("event store: {e}")))?;
    Ok((context.aggregate, context.current_sequence))
}

/// 410 for an upload that expired (recorded, or overdue before the job ran) or was
/// terminated.
pub(crate) fn usable(upload: &Upload) -> Result<(), AppError> {
    let overdue = upload.status == UploadStatus::InProgress
        && upload.expires_at.is_some_and(|at| chrono::Utc::now() >= at);
    match upload.status {
        UploadStatus::Expired | UploadStatus::Terminated => Err(gone(upload)),
        _ if overdue => Err(gone(&Upload {
            status: UploadStatus::Expired,
            ..Upload::default()
        })),
        _ => Ok(()),
    }
}

fn gone(upload: &Upload) -> AppError {
    AppError::Gone(match upload.status {
        UploadStatus::Terminated => "the upload was terminated".into(),
        _ => "the upload has expired; its bytes are deleted".into(),
    })
}

/// `Upload-Offset`, length, expiry, and the ids a completed upload became.
fn state_headers(upload: &Upload, completed: Option<CompletedAs>) -> HeaderMap {
    let mut h = HeaderMap::new();
    set(&mut h, "upload-offset", upload.offset);
    match upload.length {
        Some(l) => set(&mut h, "upload-length", l),
        None => set(&mut h, "upload-defer-length", 1),
    }
    match completed {
        Some(done) => {
            set(&mut h, "chronicle-file-id", done.file_id);
            set(
                &mut h,
                "chronicle-version-id",
                version_id(done.file_id, done.version_number),
            );
            set(&mut h, "chronicle-version-number", done.version_number);
        }
        None => {
            if let Some(at) = upload.expires_at {
                set(&mut h, "upload-expires", http_date(at));
            }
        }
    }
    h
}

fn chunk_headers(accepted: &Accepted) -> (StatusCode, HeaderMap) {
    (
        StatusCode::NO_CONTENT,
        state_headers(&accepted.upload, accepted.completed),
    )
}

impl From<UploadError> for AppError {
    fn from(err: UploadError) -> Self {
        match err {
            UploadError::NotFound => AppError::NotFound(err.to_string()),
            UploadError::Expired | UploadError::Terminated => AppError::Gone(err.to_string()),
            UploadError::OffsetMismatch { expected } => AppError::OffsetMismatch {
                sent: expected,
                expected,
            },
            UploadError::BeyondLength { .. } | UploadError::TooLarge { .. } => {
                AppError::PayloadTooLarge(err.to_string())
            }
            UploadError::LengthAlreadyKnown { .. } | UploadError::LengthBelowOffset { .. } => {
                AppError::BadRequest(err.to_string())
            }
            UploadError::AlreadyExists => AppError::AlreadyExists(err.to_string()),
            UploadError::Completed
            | UploadError::Incomplete
            | UploadError::NotExpired
            | UploadError::Direct => AppError::Validation(err.to_string()),
        }
    }
}
