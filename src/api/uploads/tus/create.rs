//! Creation (POST /v1/uploads), with creation-with-upload and creation-defer-length.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::accept::{Chunk, accept};
use super::headers::{self, http_date, set};
use super::{chunk, chunk_headers};
use crate::aggregates::upload::UploadCommand;
use crate::api::edge::caller::caller_metadata;
use crate::auth::Writer;
use crate::commands::uploads::quota::target;
use crate::commands::uploads::{self as use_case, SetAside};
use crate::error::{AppError, ErrorBody};
use crate::state::AppState;
use crate::storage::Storage;

/// Creation: `Upload-Length` (or `Upload-Defer-Length: 1`), `Upload-Metadata`; with an
/// `application/offset+octet-stream` body, the first chunk too.
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads", security(("bearer" = [])),
    params(("Tus-Resumable" = String, Header, description = "1.0.0"),
           ("Upload-Length" = Option<u64>, Header, description = "total bytes; exactly one of Upload-Length and Upload-Defer-Length"),
           ("Upload-Defer-Length" = Option<String>, Header, pattern = "^1$", description = "`1`: the length is sent with a later PATCH"),
           ("Upload-Metadata" = Option<String>, Header, description = "comma-separated `key base64value` pairs (the value may be omitted), keys unique: `filename` (UTF-8 without control characters), `filetype` (a media type), `file_id` (a UUID: a new version of that file); other keys are ignored")),
    responses((status = 201, description = "Location: /v1/uploads/{id}; Upload-Offset; Upload-Expires"),
               (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
               (status = 412, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
               (status = 507, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Writer(ctx): Writer,
    request: Request,
) -> Result<Response, AppError> {
    let h = request.headers();
    headers::require_tus_resumable(h)?;
    let max = state.config.tus.max_size;
    let length = headers::number(h, "upload-length")?;
    let deferred = match h.get("upload-defer-length").map(|v| v.as_bytes()) {
        None => false,
        Some(b"1") => true,
        Some(_) => return Err(AppError::BadRequest("Upload-Defer-Length must be 1".into())),
    };
    if length.is_some() == deferred {
        return Err(AppError::BadRequest(
            "send exactly one of Upload-Length and Upload-Defer-Length: 1".into(),
        ));
    }
    if length.is_some_and(|l| l > max) {
        return Err(AppError::PayloadTooLarge(format!(
            "Upload-Length exceeds Tus-Max-Size ({max} bytes)"
        )));
    }
    let metadata = headers::metadata(h)?;
    let with_body = headers::is_chunk(h);
    if !with_body && headers::number(h, "content-length")?.is_some_and(|n| n > 0) {
        return Err(AppError::UnsupportedMediaType(format!(
            "a creation body must be {}",
            headers::CHUNK_CONTENT_TYPE
        )));
    }
    let checksum = headers::checksum(h)?;
    let target = target(&state, &ctx, metadata.file_id, length).await?;
    let upload_id = Uuid::now_v7();
    let temp_key = Storage::temp_key(ctx.tenant_id, upload_id);
    // Local: an empty temp file to append to. S3: a multipart upload to add parts to.
    let (path, multipart_id) = match state.storage.local_path(&temp_key) {
        Some(path) => {
            chunk::create(&path)
                .await
                .map_err(|e| AppError::local_write("creating a temp file", e))?;
            (Some(path), None)
        }
        None => {
            let id = state
                .storage
                .create_multipart(&temp_key)
                .await
                .map_err(|e| {
                    AppError::Internal(anyhow::anyhow!("starting a multipart upload: {e}"))
                })?;
            (None, Some(id))
        }
    };
    let meta = caller_metadata(&ctx, h);
    let now = chrono::Utc::now();
    let command = UploadCommand::Start {
        owner_id: ctx.user_id,
        length,
        max_size: max,
        filename: metadata.filename.unwrap_or_else(|| "file".into()),
        filetype: metadata
            .filetype
            .unwrap_or_else(|| "application/octet-stream".into()),
        target,
        temp_key: temp_key.clone(),
        expires_at: now + state.config.tus.expiry,
        multipart_id: multipart_id.clone(),
        direct: None,
    };
    let set_aside = match (&path, &multipart_id) {
        (Some(path), _) => SetAside::TempFile(path),
        (None, Some(id)) => SetAside::Multipart { key: &temp_key, id },
        (None, None) => SetAside::Nothing,
    };
    let started =
        use_case::open(&state, ctx.tenant_id, upload_id, command, &meta, set_aside).await?;
    let mut response = if with_body {
        let chunk = Chunk {
            tenant: ctx.tenant_id,
            upload_id,
            from_offset: 0,
            declared_length: None,
            checksum,
            meta,
            started: std::time::Instant::now(),
            seen: None,
        };
        // The upload exists now: a failed first chunk still answers with its Location.
        match accept(&state, chunk, request.into_body()).await {
            Ok(accepted) => chunk_headers(&accepted).into_response(),
            Err(err) => err.into_response(),
        }
    } else {
        let mut h = HeaderMap::new();
        set(&mut h, "upload-offset", 0);
        if let Some(at) = started.expires_at {
            set(&mut h, "upload-expires", http_date(at));
        }
        h.into_response()
    };
    if response.status().is_success() {
        *response.status_mut() = StatusCode::CREATED;
    }
    set(
        response.headers_mut(),
        "location",
        format!("/v1/uploads/{upload_id}"),
    );
    Ok(response)
}
