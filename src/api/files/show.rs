//! `/v1/files/{id}` and `/v1/files/{id}/versions`: one file as its owner (or an admin or
//! auditor of the tenant) sees it; the reads themselves are `queries::files`.
//!
//! **Who sees what** is the policy's (src/auth/policy.rs): `user` sees and changes only
//! files it owns; `admin` sees and changes every file of its tenant; `auditor` sees
//! every file and changes none. A file the caller may not see answers 404, exactly like
//! a file that does not exist, so neither ids nor existence leak.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use uuid::Uuid;

use crate::api::edge::extract::{ApiPath, ApiQuery};
use crate::auth::FileReader;
use crate::cache::standing::PrefetchedEpoch;
use crate::error::{AppError, ErrorBody};
use crate::queries::files::{FileView, VersionView, file_body, versions_of};
use crate::queries::history::{TimeTravel, time_travel};
use crate::state::AppState;

/// One file. Answered from this instance's memory or the Redis cache when possible
/// (`queries::files::file_body`); the caller's right to see it is checked on every
/// answer, remembered or not. With `as_of` or `at_version`, the file as
/// it was then, rebuilt from its events (src/queries/history.rs).
#[utoipa::path(get, path = "/v1/files/{id}", tag = "files", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id"), TimeTravel),
    responses((status = 200, body = FileView), (status = 400, body = ErrorBody),
               (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    FileReader(ctx): FileReader,
    prefetched: Option<Extension<PrefetchedEpoch>>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(travel): ApiQuery<TimeTravel>,
) -> Result<Response, AppError> {
    if travel.requested() {
        return Ok(Json(time_travel(&state, &ctx, id, travel).await?).into_response());
    }
    let epoch = prefetched
        .filter(|p| p.tenant == ctx.tenant_id.0)
        .map(|p| p.0.listing);
    let body = file_body(&state, ctx, id, epoch).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Every version of a file, oldest first.
#[utoipa::path(get, path = "/v1/files/{id}/versions", tag = "files", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id")),
    responses((status = 200, body = [VersionView]), (status = 404, body = ErrorBody)))]
pub async fn versions(
    State(state): State<AppState>,
    FileReader(ctx): FileReader,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Vec<VersionView>>, AppError> {
    Ok(Json(versions_of(&state, &ctx, id).await?))
}
