//! `POST /v1/files` and `POST /v1/files/{id}/versions`: multipart uploads streamed to
//! temporary storage while SHA-256 is computed. `202` only once the bytes are durable
//! and the Uploaded event is committed; any failure before that removes the bytes, so a
//! refused upload leaves nothing behind.

use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::aggregates::file::NewVersion;
use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::ApiPath;
use crate::api::edge::streamed_keys::{self, Pending, UploadClaim};
use crate::api::edge::text;
use crate::auth::{TenantContext, Writer};
use crate::commands;
use crate::commands::files::load_for_change;
use crate::commands::uploads::quota::check_quota;
use crate::commands::uploads::{Destination, commit_version};
use crate::error::AppError;
use crate::ids::{FileId, TenantId, version_id};
use crate::state::AppState;
use crate::storage::Storage;
use crate::store::EventMetadata;
use crate::uploads::filename;
use crate::uploads::filename::display_text;
use crate::uploads::receive::{ReceiveError, Received, receive};

/// Multipart framing around the file part (boundaries, part headers, small fields):
/// a Content-Length above the file limit by more than this is refused unread.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// The small text fields (`display_name`, `tags`).
const MAX_TEXT_FIELD: u64 = 8 * 1024;
/// An upload whose client sends nothing for this long is abandoned (408).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"file_id": "0190f5a0-0000-7000-8000-000000000003", "version_id": "5b1f3c2e-9a4d-5e6f-8a7b-0c1d2e3f4a5b", "version_number": 1, "status": "uploaded"}))]
pub struct UploadAccepted {
    pub file_id: Uuid,
    /// Stable id of this version (derived from file id and version number).
    pub version_id: Uuid,
    pub version_number: u32,
    /// Always `uploaded`: the worker takes it from here.
    pub status: &'static str,
}

/// The multipart body of `POST /v1/files` (documentation only: the body is streamed).
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct NewFileForm {
    /// The file's bytes; its part's `filename` and `Content-Type` are recorded.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Defaults to the file name. 1–255 bytes, no control characters.
    #[schema(
        max_length = 255,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    display_name: Option<String>,
    /// Comma-separated (or a repeated part); each 1–64 of ASCII letters, digits, `-`, `_`, `.`.
    #[schema(pattern = "^\\s*([\\w.-]{1,64})?\\s*(,\\s*([\\w.-]{1,64})?\\s*)*$")]
    tags: Option<String>,
}

/// The multipart body of `POST /v1/files/{id}/versions` (documentation only).
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct NewVersionForm {
    /// The new version's bytes.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// What the multipart body carried, the file's bytes already durable at `temp_key`.
pub(in crate::api) struct ReceivedUpload {
    pub(in crate::api) temp_key: String,
    pub(in crate::api) received: Received,
    pub(in crate::api) original_name: String,
    pub(in crate::api) declared_mime: String,
    pub(in crate::api) display_name: Option<String>,
    pub(in crate::api) tags: Vec<String>,
}

impl ReceivedUpload {
    fn new_version(&self) -> NewVersion {
        NewVersion {
            filename: filename::sanitize(&self.original_name),
            declared_mime: self.declared_mime.clone(),
            size_bytes: self.received.size_bytes,
            temp_location: self.temp_key.clone(),
            sha256: self.received.sha256.clone(),
        }
    }
}

/// Upload a new file (multipart: `file`, optional `display_name`, `tags`).
#[utoipa::path(post, path = "/v1/files", tag = "files",
    request_body(content = NewFileForm, content_type = "multipart/form-data", description = "`file` (required), `display_name`, `tags` (repeated or comma-separated)"),
    responses((status = 202, body = UploadAccepted), (status = 400), (status = 403), (status = 413), (status = 415), (status = 422), (status = 507)),
    security(("bearer" = [])))]
pub async fn create_file(
    State(state): State<AppState>,
    Writer(ctx): Writer,
    request: Request,
) -> Result<Response, AppError> {
    let meta = caller_metadata(&ctx, request.headers());
    let upload = receive_upload(&state, &ctx, request).await?;
    let file_id = FileId::new();
    let display_name = upload
        .display_name
        .clone()
        .unwrap_or_else(|| display_text(&upload.original_name));
    let destination = Destination::NewFile {
        owner_id: ctx.user_id,
        display_name,
        tags: upload.tags.clone(),
    };
    claim_and_commit(&state, &ctx, meta, file_id, destination, upload).await
}

/// Upload a new version of an existing file (multipart `file`).
#[utoipa::path(post, path = "/v1/files/{id}/versions", tag = "files",
    params(("id" = Uuid, Path, description = "file id")),
    request_body(content = NewVersionForm, content_type = "multipart/form-data", description = "`file` (required)"),
    responses((status = 202, body = UploadAccepted), (status = 400), (status = 403), (status = 404), (status = 413), (status = 415), (status = 422), (status = 507)),
    security(("bearer" = [])))]
pub async fn create_version(
    State(state): State<AppState>,
    Writer(ctx): Writer,
    ApiPath(id): ApiPath<Uuid>,
    request: Request,
) -> Result<Response, AppError> {
    let file_id = FileId(id);
    // Refuse before reading a byte: the caller must see the file, and it must be live.
    let file = load_for_change(&state, &ctx, file_id.0).await?;
    if file.deleted {
        return Err(AppError::Validation(
            "file is deleted; restore it first".into(),
        ));
    }
    let meta = caller_metadata(&ctx, request.headers());
    let upload = receive_upload(&state, &ctx, request).await?;
    if upload.display_name.is_some() || !upload.tags.is_empty() {
        discard(&state, &upload.temp_key).await;
        return Err(AppError::BadRequest(
            "a new version takes only the `file` part; rename and tag the file separately".into(),
        ));
    }
    let destination = Destination::NextVersion;
    claim_and_commit(&state, &ctx, meta, file_id, destination, upload).await
}

/// Commits a received upload. With an `Idempotency-Key`, the key's claim, the commit
/// and the storing of its answer run to their end on a task of their own
/// (src/api/edge/streamed_keys.rs): a client that hangs up after its last byte and
/// retries with its key finds its answer.
async fn claim_and_commit(
    state: &AppState,
    ctx: &TenantContext,
    meta: EventMetadata,
    file_id: FileId,
    destination: Destination,
    upload: ReceivedUpload,
) -> Result<Response, AppError> {
    let Some(pending) = streamed_keys::pending() else {
        return commit(state, ctx, &meta, file_id, destination, &upload).await;
    };
    let (state, ctx) = (state.clone(), *ctx);
    commands::to_the_end(async move {
        let claimed = match claim_key(&state, &pending, &upload).await? {
            UploadClaim::Replay(answer) => return Ok(answer),
            UploadClaim::Run(claimed) => claimed,
        };
        let answer = commit(&state, &ctx, &meta, file_id, destination, &upload).await;
        streamed_keys::settle_upload(&state, claimed, answer).await
    })
    .await
}

async fn commit(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    file_id: FileId,
    destination: Destination,
    upload: &ReceivedUpload,
) -> Result<Response, AppError> {
    let version = upload.new_version();
    let committed = commit_version(state, ctx.tenant_id, meta, file_id, destination, version).await;
    let (_, version_number) = match committed {
        Ok(c) => c,
        Err(err) => {
            discard(state, &upload.temp_key).await;
            return Err(err);
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(UploadAccepted {
            file_id: file_id.0,
            version_id: version_id(file_id, version_number),
            version_number,
            status: "uploaded",
        }),
    )
        .into_response())
}

/// Claims the request's `Idempotency-Key`, if any, now that the body is durable
/// (src/api/edge/streamed_keys.rs). A repeat of an upload already answered gets that
/// answer; a refused or replayed upload's temporary bytes are deleted, so a retried
/// body is never stored twice.
async fn claim_key(
    state: &AppState,
    pending: &Pending,
    upload: &ReceivedUpload,
) -> Result<UploadClaim, AppError> {
    let size = upload.received.size_bytes.to_string();
    let display_name = match &upload.display_name {
        Some(name) => format!("={name}"),
        None => "-".into(),
    };
    let mut fields = vec![
        upload.received.sha256.as_str(),
        size.as_str(),
        upload.original_name.as_str(),
        upload.declared_mime.as_str(),
        display_name.as_str(),
    ];
    fields.extend(upload.tags.iter().map(String::as_str));
    match streamed_keys::claim_upload(state, pending, &fields).await {
        Ok(UploadClaim::Run(claimed)) => Ok(UploadClaim::Run(claimed)),
        Ok(UploadClaim::Replay(answer)) => {
            discard(state, &upload.temp_key).await;
            Ok(UploadClaim::Replay(answer))
        }
        Err(err) => {
            discard(state, &upload.temp_key).await;
            Err(err)
        }
    }
}

/// Parses the multipart body, streaming the `file` part into temporary storage.
async fn receive_upload(
    state: &AppState,
    ctx: &TenantContext,
    request: Request,
) -> Result<ReceivedUpload, AppError> {
    let max = state.config.max_upload_bytes;
    let declared = declared_length(request.headers())?;
    if declared.is_some_and(|len| len > max + MULTIPART_OVERHEAD) {
        return Err(too_large(max));
    }
    check_quota(
        state,
        ctx,
        declared.map(|l| l.saturating_sub(MULTIPART_OVERHEAD)),
    )
    .await?;
    let boundary = boundary(request.headers())?;
    let body = request.into_body().into_data_stream();
    let upload = read_multipart(&state.storage, ctx.tenant_id, body, boundary, max).await?;
    if let Err(err) = check_quota(state, ctx, Some(upload.received.size_bytes)).await {
        discard(state, &upload.temp_key).await;
        return Err(err);
    }
    Ok(upload)
}

/// The multipart body's parts, the `file` part streamed into temporary storage (at most
/// `max` bytes). Every error leaves nothing in `storage`. Fuzzed (`api::fuzzing`).
pub(in crate::api) async fn read_multipart<S, E>(
    storage: &Storage,
    tenant: TenantId,
    body: S,
    boundary: String,
    max: u64,
) -> Result<ReceivedUpload, AppError>
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(max + MULTIPART_OVERHEAD)
            .for_field("display_name", MAX_TEXT_FIELD)
            .for_field("tags", MAX_TEXT_FIELD),
    );
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);

    let mut file: Option<(String, Received, String, String)> = None;
    let mut display_name = None;
    let mut tags = Vec::new();
    let result: Result<(), AppError> = async {
        while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
            match field.name() {
                Some("file") if file.is_none() => {
                    // multer decodes the part's headers lossily: the raw bytes are checked.
                    let disposition = field.headers().get(header::CONTENT_DISPOSITION);
                    let raw = disposition.map(|v| v.as_bytes()).unwrap_or_default();
                    text::from_bytes("the file part's Content-Disposition", raw)?;
                    let original = field.file_name().unwrap_or("file").to_string();
                    text::check("the file part's filename", &original)?;
                    let declared_mime = field
                        .content_type()
                        .map(|m| m.essence_str().to_string())
                        .unwrap_or_else(|| "application/octet-stream".into());
                    let key = Storage::temp_key(tenant, Uuid::now_v7());
                    let received = stream_to(storage, &key, field, max).await?;
                    file = Some((key, received, original, declared_mime));
                }
                Some("file") => {
                    return Err(AppError::BadRequest(
                        "only one `file` part is allowed".into(),
                    ));
                }
                Some("display_name") => {
                    display_name = Some(text_field(field).await?);
                }
                Some("tags") => {
                    let text = text_field(field).await?;
                    tags.extend(
                        text.split(',')
                            .map(str::trim)
                            .filter(|t| !t.is_empty())
                            .map(String::from),
                    );
                }
                other => {
                    return Err(AppError::BadRequest(format!(
                        "unexpected multipart field {:?}; expected file, display_name, tags",
                        other.unwrap_or("")
                    )));
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(err) = result {
        if let Some((key, ..)) = &file {
            discard_in(storage, key).await;
        }
        return Err(err);
    }
    let Some((temp_key, received, original_name, declared_mime)) = file else {
        return Err(AppError::BadRequest(
            "the multipart body has no `file` part".into(),
        ));
    };
    Ok(ReceivedUpload {
        temp_key,
        received,
        original_name,
        declared_mime,
        display_name,
        tags,
    })
}

/// Streams one part into `key`; on any failure nothing stays at `key`.
async fn stream_to(
    storage: &Storage,
    key: &str,
    field: multer::Field<'static>,
    max: u64,
) -> Result<Received, AppError> {
    let mut writer = storage.writer(key);
    match receive(field, &mut writer, max, IDLE_TIMEOUT).await {
        Ok(received) => {
            writer.finish().await?;
            Ok(received)
        }
        Err(err) => {
            writer.abort().await;
            Err(match err {
                ReceiveError::TooLarge(max) => too_large(max),
                ReceiveError::Idle(_) => AppError::RequestTimeout,
                ReceiveError::Client(msg) => AppError::BadRequest(format!(
                    "the multipart body is malformed or was cut off: {msg}"
                )),
                ReceiveError::Storage(e) => AppError::from(e),
            })
        }
    }
}

fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, AppError> {
    headers
        .get(header::CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| AppError::BadRequest("invalid Content-Length".into()))
        })
        .transpose()
}

pub(in crate::api) fn boundary(headers: &HeaderMap) -> Result<String, AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("multipart/form-data") {
        return Err(AppError::UnsupportedMediaType(
            "uploads must be multipart/form-data".into(),
        ));
    }
    multer::parse_boundary(content_type)
        .map_err(|_| AppError::BadRequest("multipart/form-data without a valid boundary".into()))
}

/// A small text field under the text rule (multer's `text()` would replace bad UTF-8).
async fn text_field(field: multer::Field<'static>) -> Result<String, AppError> {
    let name = format!("multipart field {:?}", field.name().unwrap_or_default());
    let bytes = field.bytes().await.map_err(multipart_error)?;
    Ok(text::from_bytes(&name, &bytes)?.to_string())
}

fn multipart_error(err: multer::Error) -> AppError {
    match err {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            AppError::PayloadTooLarge(format!("a multipart field exceeds its limit: {err}"))
        }
        other => AppError::BadRequest(format!("malformed multipart body: {other}")),
    }
}

fn too_large(max: u64) -> AppError {
    AppError::PayloadTooLarge(format!("the file exceeds the upload limit of {max} bytes"))
}

/// Removes temporary bytes of an upload that will not be committed.
async fn discard(state: &AppState, key: &str) {
    discard_in(&state.storage, key).await
}

async fn discard_in(storage: &Storage, key: &str) {
    if let Err(err) = storage.delete(key).await {
        tracing::warn!(error = %err, key, "could not remove a refused upload's bytes");
    }
}
