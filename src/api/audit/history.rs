//! `GET /v1/files/{id}/history`: a file's events with metadata and hashes (auditors and
//! admins only). The read, and time travel (`GET /v1/files/{id}?as_of=…`), are
//! `queries::history`.

use axum::Json;
use axum::extract::State;
use uuid::Uuid;

use crate::api::edge::extract::{ApiPath, ApiQuery};
use crate::auth::AuditorOrAdmin;
use crate::error::{AppError, ErrorBody};
use crate::queries::history::{HistoryPage, HistoryParams, history_of};
use crate::state::AppState;

/// The file's events, oldest first, with metadata and hashes (auditors and admins).
#[utoipa::path(get, path = "/v1/files/{id}/history", tag = "audit", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id"), HistoryParams),
    responses((status = 200, body = HistoryPage), (status = 400, body = ErrorBody),
               (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuditorOrAdmin,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(p): ApiQuery<HistoryParams>,
) -> Result<Json<HistoryPage>, AppError> {
    Ok(Json(history_of(&state, &caller, id, p).await?))
}
