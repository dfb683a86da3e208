//! Changing a file: rename, tag/untag, soft delete, purge, restore, version restore. Each is a
//! `FileCommand` run through `commands::execute` on the caller's tenant-bound store.
//!
//! **Responses: `200` with the file as the command left it**, built from the committed
//! event stream (`files::view_from_stream`), so the caller reads its own write at once;
//! `GET` shows the same once the files projector has caught up (milliseconds) and
//! deleted the cached entry.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cqrs_es::EventStore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::{caller_metadata, store};
use super::extract::{ApiPath, ApiQuery};
use super::files::{FileView, view_from_stream};
use super::json::JsonBody;
use crate::aggregates::file::{File, FileCommand};
use crate::auth::TenantContext;
use crate::auth::policy::{self, file_not_found};
use crate::commands;
use crate::error::{AppError, ErrorBody, ErrorDetail};
use crate::state::AppState;

/// The file as the log has it now (never a lagging read table), whoever asks.
async fn load_any(state: &AppState, ctx: &TenantContext, id: Uuid) -> Result<File, AppError> {
    Ok(store::<File>(state, ctx.tenant_id)
        .load_aggregate(&id.to_string())
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("event store: {e}")))?
        .aggregate)
}

/// What a command needs to know before it runs: the file from its stream if the
/// caller may read it (`policy::can_read`); anything else is 404. Shared by commands,
/// uploads of new versions and downloads.
pub(super) async fn load(
    state: &AppState,
    ctx: &TenantContext,
    id: Uuid,
) -> Result<File, AppError> {
    let file = load_any(state, ctx, id).await?;
    if policy::can_read(ctx, &file) {
        Ok(file)
    } else {
        Err(file_not_found())
    }
}

/// For read-table answers (`GET /v1/files/{id}`, versions): the owner's readers pass
/// at once; anyone else only with a grant in the log (`policy::can_read`), so a revoked
/// grant stops working on the next request, not when the projection catches up.
pub(super) async fn authorize_view(
    state: &AppState,
    ctx: &TenantContext,
    id: Uuid,
    owner: Uuid,
) -> Result<(), AppError> {
    if policy::can_read_owned_by(ctx, owner) {
        return Ok(());
    }
    load(state, ctx, id).await.map(|_| ())
}

/// The file from its stream if the caller may change it (`policy::can_change`): 404
/// unless it may read it, 403 if it may only read it.
pub(crate) async fn load_for_change(
    state: &AppState,
    ctx: &TenantContext,
    id: Uuid,
) -> Result<File, AppError> {
    let file = load_any(state, ctx, id).await?;
    policy::can_change(ctx, &file)?;
    Ok(file)
}

async fn run(
    state: &AppState,
    ctx: &TenantContext,
    headers: &HeaderMap,
    id: Uuid,
    command: FileCommand,
) -> Result<Json<FileView>, AppError> {
    let file = load_any(state, ctx, id).await?;
    // Deleting and restoring are the owner's (or an admin's), not a grantee's.
    match command {
        FileCommand::Delete | FileCommand::Restore => policy::can_manage(ctx, &file)?,
        _ => policy::can_change(ctx, &file)?,
    }
    let done = commands::execute(
        &store::<File>(state, ctx.tenant_id),
        &id.to_string(),
        command,
        &caller_metadata(ctx, headers),
        &(),
    )
    .await?;
    Ok(Json(
        view_from_stream(&state.db, ctx.tenant_id, id, &done.aggregate).await?,
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
    let command = FileCommand::Rename {
        display_name: body.display_name,
    };
    run(&state, &ctx, &headers, id, command).await
}

/// Add a tag (1–64 letters, digits, `-`, `_`, `.`). Adding a tag the file has is a no-op.
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
    run(&state, &ctx, &headers, id, FileCommand::Tag { tag }).await
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
    run(&state, &ctx, &headers, id, FileCommand::Untag { tag }).await
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
        return purge(&state, &ctx, &headers, id).await;
    }
    let file = load_any(&state, &ctx, id).await?;
    policy::can_manage(&ctx, &file)?;
    if file.deleted {
        return Ok(
            Json(view_from_stream(&state.db, ctx.tenant_id, id, &file).await?).into_response(),
        );
    }
    Ok(run(&state, &ctx, &headers, id, FileCommand::Delete)
        .await?
        .into_response())
}

/// Purge: owners and admins (the rule of delete), live or trashed files alike; never a
/// file under legal hold (`409 legal_hold`) or one uploaded within `MIN_RETENTION_DAYS`
/// (`409 retention_locked`), whoever asks.
/// **Purging a purged file again answers `204` too** for a caller who could have
/// purged it (a retried DELETE must not fail); to anyone else it is 404, like any
/// file they cannot see.
async fn purge(
    state: &AppState,
    ctx: &TenantContext,
    headers: &HeaderMap,
    id: Uuid,
) -> Result<Response, AppError> {
    let file = load_any(state, ctx, id).await?;
    policy::can_purge(ctx, &file)?;
    if !file.purged {
        if file.legal_hold.is_some() {
            return Err(AppError::LegalHold);
        }
        commands::sharing::check_min_retention(state, ctx.tenant_id, id).await?;
        commands::execute(
            &store::<File>(state, ctx.tenant_id),
            &id.to_string(),
            FileCommand::Purge,
            &caller_metadata(ctx, headers),
            &(),
        )
        .await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
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
    run(&state, &ctx, &headers, id, FileCommand::Restore).await
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
        FileCommand::RestoreVersion { version_number },
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
    if body.file_ids.is_empty() || body.file_ids.len() > MAX_BULK {
        return Err(AppError::Validation(format!(
            "invalid file_ids: 1 to {MAX_BULK} files"
        )));
    }
    // A tag sent with any action must be one a file can carry: a request naming an
    // impossible tag is refused whole, even where the action does not use it.
    if let Some(tag) = &body.tag {
        crate::aggregates::file::check_tag(tag).map_err(|e| AppError::Validation(e.to_string()))?;
    }
    let tag = || {
        body.tag
            .clone()
            .ok_or_else(|| AppError::Validation("invalid tag: required for tag and untag".into()))
    };
    let command = match body.action.as_str() {
        "delete" => FileCommand::Delete,
        "restore" => FileCommand::Restore,
        "tag" => FileCommand::Tag { tag: tag()? },
        "untag" => FileCommand::Untag { tag: tag()? },
        _ => {
            return Err(AppError::Validation(
                "invalid action: must be delete, restore, tag or untag".into(),
            ));
        }
    };
    let mut results = Vec::with_capacity(body.file_ids.len());
    for id in body.file_ids {
        let outcome = match command {
            FileCommand::Delete => delete_one(&state, &ctx, &headers, id).await,
            _ => run(&state, &ctx, &headers, id, command.clone())
                .await
                .map(|_| ()),
        };
        results.push(match outcome {
            Ok(()) => BulkItem {
                file_id: id,
                status: 200,
                error: None,
            },
            Err(err) => BulkItem {
                file_id: id,
                status: err.status().as_u16(),
                error: Some(err.body().error),
            },
        });
    }
    let succeeded = results.iter().filter(|r| r.status == 200).count();
    Ok(Json(BulkResult {
        failed: results.len() - succeeded,
        succeeded,
        results,
    }))
}

const MAX_BULK: usize = 100;

/// Soft delete as `DELETE /v1/files/{id}` does it (a deleted file is a no-op).
async fn delete_one(
    state: &AppState,
    ctx: &TenantContext,
    headers: &HeaderMap,
    id: Uuid,
) -> Result<(), AppError> {
    let file = load_any(state, ctx, id).await?;
    policy::can_manage(ctx, &file)?;
    if !file.deleted {
        let _view = run(state, ctx, headers, id, FileCommand::Delete).await?;
    }
    Ok(())
}
