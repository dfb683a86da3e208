//! Changing a file over HTTP: rename, tag/untag, soft delete, purge, restore, version
//! restore, bulk. Each handler parses, calls one use case of `commands::files` and renders.
//!
//! **Responses: `200` with the file as the command left it**, built from the committed
//! event stream (`files::view_from_stream`), so the caller reads its own write at once;
//! `GET` shows the same once the files projector has caught up (milliseconds) and
//! deleted the cached entry.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::{ApiPath, ApiQuery};
use crate::api::edge::json::JsonBody;
use crate::auth::TenantContext;
use crate::commands::files::{self as use_case, FileChange};
use crate::error::{AppError, ErrorBody, ErrorDetail};
use crate::queries::files::{FileView, view_from_stream};
use crate::state::AppState;

/// Runs one change and renders the file as it left it.
async fn run(
    state: &AppState,
    ctx: &TenantContext,
    headers: &HeaderMap,
    id: Uuid,
    change: FileChange,
) -> Result<Json<FileView>, AppError> {
    let file = use_case::change(state, ctx, &caller_metadata(ctx, headers), id, change).await?;
    Ok(Json(
        view_from_stream(&state.db, ctx.tenant_id, id, &file).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// 1–255 bytes, no control characters.
    #[schema(
        max_length = 255,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub display_name: String,
}

/// Rename a file (its display name; stored filenames of versions are unchanged).
#[utoipa::path(patch, path = "/v1/files/{id}", tag = "files", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id")), request_body = RenameRequest,
    responses((status = 200, body = FileView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rename(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    JsonBody(body): JsonBody<RenameRequest>,
) -> Result<Json<FileView>, AppError> {
    let change = FileChange::Rename {
        display_name: body.display_name,
    };
    run(&state, &ctx, &headers, id, change).await
}

/// Add a tag (1–64 ASCII letters, digits, `-`, `_`, `.`). Adding a tag the file has is a no-op.
#[utoipa::path(put, path = "/v1/files/{id}/tags/{tag}", tag = "files", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id"), ("tag" = String, Path, pattern = "^[\\w.-]{1,64}$", description = "tag")),
    responses((status = 200, body = FileView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn tag(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath((id, tag)): ApiPath<(Uuid, String)>,
) -> Result<Json<FileView>, AppError> {
    run(&state, &ctx, &headers, id, FileChange::Tag { tag }).await
}

/// Remove a tag. Removing a tag the file does not have is a no-op; a name no tag can have
/// (see `PUT`) is 422.
#[utoipa::path(delete, path = "/v1/files/{id}/tags/{tag}", tag = "files", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id"), ("tag" = String, Path, pattern = "^[\\w.-]{1,64}$", description = "tag")),
    responses((status = 200, body = FileView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn untag(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath((id, tag)): ApiPath<(Uuid, String)>,
) -> Result<Json<FileView>, AppError> {
    run(&state, &ctx, &headers, id, FileChange::Untag { tag }).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// `true`: purge for good — `204`, the file is gone from every read and download;
    /// its bytes are removed by the blob garbage collector once no other version
    /// references them and `BLOB_GC_GRACE_SECS` have passed. The events stay (audit).
    pub purge: Option<bool>,
}

/// Soft delete (to the trash; `POST /v1/files/{id}/restore` brings it back). Deleting a
/// deleted file again is a no-op (DELETE is idempotent). `?purge=true` purges instead.
#[utoipa::path(delete, path = "/v1/files/{id}", tag = "files", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id"), DeleteParams),
    responses((status = 200, body = FileView), (status = 204, description = "purged"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<DeleteParams>,
) -> Result<Response, AppError> {
    if params.purge == Some(true) {
        use_case::purge(&state, &ctx, &caller_metadata(&ctx, &headers), id).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(run(&state, &ctx, &headers, id, FileChange::Trash)
        .await?
        .into_response())
}

/// Bring a soft-deleted file back (422 if it is not deleted).
#[utoipa::path(post, path = "/v1/files/{id}/restore", tag = "files", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id")),
    responses((status = 200, body = FileView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn restore(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<FileView>, AppError> {
    run(&state, &ctx, &headers, id, FileChange::Restore).await
}

/// Make an old completed version current again: a new version pointing at the same
/// bytes (no copy). 404 for an unknown version, 422 if it is not completed.
#[utoipa::path(post, path = "/v1/files/{id}/versions/{n}/restore", tag = "files", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id"), ("n" = u32, Path, description = "version number")),
    responses((status = 200, body = FileView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn restore_version(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath((id, version_number)): ApiPath<(Uuid, u32)>,
) -> Result<Json<FileView>, AppError> {
    run(
        &state,
        &ctx,
        &headers,
        id,
        FileChange::RestoreVersion { version_number },
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// `delete` (to the trash), `restore`, `tag` or `untag`.
    #[schema(pattern = "^(delete|restore|tag|untag)$")]
    pub action: String,
    /// 1 to 100 files; each is its own command.
    #[schema(min_items = 1, max_items = 100)]
    pub file_ids: Vec<Uuid>,
    /// The tag, for `tag` and `untag`.
    #[schema(pattern = "^[\\w.-]{1,64}$")]
    pub tag: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkItem {
    pub file_id: Uuid,
    /// The status the single-file request would have answered (200, 403, 404, 409, 422 …).
    pub status: u16,
    /// Set when `status` is not 200: the error the single-file request would have given.
    pub error: Option<ErrorDetail>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkResult {
    /// One per requested file, in request order.
    pub results: Vec<BulkItem>,
    pub succeeded: usize,
    pub failed: usize,
}

/// Bulk delete, restore, tag or untag: each file is its own command with its own answer,
/// so a partial success is explicit (`200` with per-item statuses, never all-or-nothing).
/// Each item follows the rules of its single-file route (a deleted file deleted again is
/// a success, a held file is `409 legal_hold`, another user's file `404`).
#[utoipa::path(post, path = "/v1/files/bulk", tag = "files", security(("bearer" = [])),
    request_body = BulkRequest,
    responses((status = 200, body = BulkResult), (status = 422, body = ErrorBody)))]
pub async fn bulk(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    JsonBody(body): JsonBody<BulkRequest>,
) -> Result<Json<BulkResult>, AppError> {
    let meta = caller_metadata(&ctx, &headers);
    let outcomes =
        use_case::bulk(&state, &ctx, &meta, &body.action, body.tag, &body.file_ids).await?;
    let results: Vec<BulkItem> = outcomes
        .into_iter()
        .map(|outcome| match outcome.error {
            None => BulkItem {
                file_id: outcome.file_id,
                status: 200,
                error: None,
            },
            Some((status, error)) => BulkItem {
                file_id: outcome.file_id,
                status,
                error: Some(error),
            },
        })
        .collect();
    let succeeded = results.iter().filter(|r| r.status == 200).count();
    Ok(Json(BulkResult {
        failed: results.len() - succeeded,
        succeeded,
        results,
    }))
}
