//! `/v1/jobs` (admins): the tenant's processing jobs — typically the dead letters — and
//! sending one back to the queue with a fresh budget of attempts.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::accounts::auth::caller_metadata;
use crate::api::edge::extract::{ApiPath, ApiQuery};
use crate::auth::Admin;
use crate::commands;
use crate::error::{AppError, ErrorBody};
use crate::state::AppState;

const STATUSES: &[&str] = &[
    "queued",
    "in_progress",
    "succeeded",
    "failed",
    "dead_letter",
];

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct JobView {
    pub id: Uuid,
    pub file_id: Uuid,
    pub version_number: i32,
    pub job_type: String,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// queued, in_progress, succeeded, failed (retry scheduled) or dead_letter.
    #[param(pattern = "^(queued|in_progress|succeeded|failed|dead_letter)$")]
    pub status: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// Only jobs last changed before this time (the previous page's last `updated_at`).
    pub before: Option<DateTime<Utc>>,
}

/// The tenant's jobs, most recently changed first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobQuery), security(("bearer" = [])),
    responses((status = 200, body = [JobView]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> Result<Json<Vec<JobView>>, AppError> {
    if let Some(s) = &q.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(AppError::BadRequest(format!(
            "status must be one of {}",
            STATUSES.join(", ")
        )));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::BadRequest(
            "limit must be between 1 and 200".into(),
        ));
    }
    let mut tx = ctx.begin(&state.db).await?;
    let rows = sqlx::query_as(
        "SELECT id, file_id, version_number, job_type, status::text AS status, attempts,
                max_attempts, last_error, created_at, updated_at
           FROM jobs
          WHERE ($1::job_status IS NULL OR status = $1::job_status)
            AND ($2::timestamptz IS NULL OR updated_at < $2)
          ORDER BY updated_at DESC, id DESC LIMIT $3",
    )
    .bind(q.status)
    .bind(q.before)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(rows))
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
