//! `/v1/jobs` (admins): the tenant's processing jobs — typically the dead letters — and
//! sending one back to the queue with a fresh budget of attempts.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use uuid::Uuid;

use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::{ApiPath, ApiQuery};
use crate::auth::Admin;
use crate::commands;
use crate::error::{AppError, ErrorBody};
use crate::queries::jobs::{JobQuery, JobView, jobs_of};
use crate::state::AppState;

/// The tenant's jobs, most recently changed first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobQuery), security(("bearer" = [])),
    responses((status = 200, body = [JobView]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Admin,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> Result<Json<Vec<JobView>>, AppError> {
    Ok(Json(jobs_of(&state, &caller, q).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RetryAccepted {
    pub job_id: Uuid,
    pub status: &'static str,
}

/// Sends a dead-lettered job back to the queue (a new budget of attempts).
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "job id")),
    responses((status = 202, body = RetryAccepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<RetryAccepted>), AppError> {
    let meta = caller_metadata(&admin, &headers);
    commands::jobs::retry(&state, &admin, &meta, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RetryAccepted {
            job_id: id,
            status: "queued",
        }),
    ))
}
