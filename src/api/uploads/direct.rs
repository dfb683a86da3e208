//! `POST /v1/files/direct` and `POST /v1/files/direct/{id}/complete`: direct-to-S3
//! uploads. The bytes go from the client to the bucket through presigned part URLs;
//! these handlers only parse, call the use case (src/api/uploads/direct_session.rs) and render.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::ApiPath;
use crate::api::edge::json::JsonBody;
use crate::api::uploads::direct_session::{self as direct, DirectRequest};
use crate::api::uploads::multipart::UploadAccepted;
use crate::auth::Writer;
use crate::error::{AppError, ErrorBody};
use crate::ids::version_id;
use crate::state::AppState;

/// What the client declares before sending a byte.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDirectUpload {
    /// The file's exact size in bytes (at least 1, at most `MAX_UPLOAD_BYTES`).
    #[schema(minimum = 1)]
    pub size: u64,
    /// SHA-256 of the bytes (64 hex characters). The worker checks it; a mismatch fails
    /// the version and nothing is served.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub sha256: String,
    /// How many parts to split the file into (1–10000, each but the last ≥ 5 MiB);
    /// Chronicle chooses when absent.
    #[schema(minimum = 1, maximum = 10000)]
    pub parts: Option<u32>,
    /// The file's name (1–255 bytes, no control characters); defaults to `file`.
    #[schema(
        max_length = 255,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub filename: Option<String>,
    /// The declared media type; defaults to `application/octet-stream`.
    #[schema(pattern = "^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$")]
    pub content_type: Option<String>,
    /// Upload a new version of this file instead of a new file.
    pub file_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DirectPart {
    /// 1-based, as S3 numbers parts.
    pub number: u32,
    /// `PUT` this part's bytes here (no credentials needed); keep the response's `ETag`.
    pub url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DirectUploadSession {
    pub upload_id: Uuid,
    /// The file the bytes will become (new, or the one named by `file_id`).
    pub file_id: Uuid,
    /// Every part but the last is exactly this long.
    pub part_size: u64,
    pub parts: Vec<DirectPart>,
    /// The URLs stop working, and an unfinished session is aborted, at this time.
    pub expires_at: DateTime<Utc>,
    /// `POST` the parts' e-tags here once every part is stored.
    pub complete_url: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteDirectUpload {
    /// The `ETag` each part's `PUT` answered, in part order.
    #[schema(max_items = 10000)]
    pub e_tags: Vec<String>,
}

/// Start a direct-to-S3 upload (S3 storage only): presigned part URLs.
#[utoipa::path(post, path = "/v1/files/direct", tag = "files", security(("bearer" = [])),
    request_body = NewDirectUpload,
    responses((status = 201, body = DirectUploadSession), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "`file_id` not found, or the server stores files locally (no S3: no direct uploads)"),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    Writer(ctx): Writer,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewDirectUpload>,
) -> Result<Response, AppError> {
    let meta = caller_metadata(&ctx, &headers);
    if let Some(name) = &body.filename {
        crate::api::edge::text::check("filename", name)?;
    }
    let request = DirectRequest {
        size: body.size,
        sha256: body.sha256,
        parts: body.parts,
        filename: body.filename,
        content_type: body.content_type,
        file_id: body.file_id,
    };
    let session = direct::start(&state, &ctx, &meta, request).await?;
    let complete_url = format!("/v1/files/direct/{}/complete", session.upload_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, complete_url.clone())],
        Json(DirectUploadSession {
            upload_id: session.upload_id,
            file_id: session.file_id.0,
            part_size: session.part_size,
            parts: session
                .parts
                .into_iter()
                .map(|p| DirectPart {
                    number: p.number,
                    url: p.url,
                })
                .collect(),
            expires_at: session.expires_at,
            complete_url,
        }),
    )
        .into_response())
}

/// Complete a direct upload: Chronicle assembles the parts and records the upload
/// (`202`, as `POST /v1/files`); the worker then verifies the declared SHA-256.
#[utoipa::path(post, path = "/v1/files/direct/{id}/complete", tag = "files", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "upload id")),
    request_body = CompleteDirectUpload,
    responses((status = 202, body = UploadAccepted), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 410, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 423, body = ErrorBody)))]
pub async fn complete(
    State(state): State<AppState>,
    Writer(ctx): Writer,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    JsonBody(body): JsonBody<CompleteDirectUpload>,
) -> Result<Response, AppError> {
    let meta = caller_metadata(&ctx, &headers);
    let done = direct::complete(&state, &ctx, &meta, id, body.e_tags).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(UploadAccepted {
            file_id: done.file_id.0,
            version_id: version_id(done.file_id, done.version_number),
            version_number: done.version_number,
            status: "uploaded",
        }),
    )
        .into_response())
}
