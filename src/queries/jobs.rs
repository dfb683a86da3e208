//! The tenant's processing jobs (`GET /v1/jobs`, the console's Jobs page): admins only,
//! which the `Admin` the read takes says.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Admin;
use crate::error::AppError;
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
    /// With `before`: the previous page's last `id`. Jobs changed at the very instant of
    /// `before` (one commit settles several jobs at once) then continue after that job;
    /// with `before` alone they are skipped.
    pub before_id: Option<Uuid>,
}

/// One page of the tenant's jobs (row-level security picks the tenant): status or any
/// (`$1`), changed before `$2` (or after job `$4` at that instant) or any time, at most
/// `$3`. Index `jobs_recent` (migration 0054) is in its order, so a page reads its rows,
/// not all of the tenant's jobs.
///
/// The page ends before (`$2`, `$4`) in that order; without `$4` the nil UUID stands in,
/// below every id, which makes it "changed before `$2`". One row comparison keeps the
/// bound an index condition of `jobs_recent`.
pub const JOBS_PAGE_SQL: &str =
    "SELECT id, file_id, version_number, job_type, status::text AS status, attempts,
            max_attempts, last_error, created_at, updated_at
       FROM jobs
      WHERE ($1::job_status IS NULL OR status = $1::job_status)
        AND ($2::timestamptz IS NULL
             OR (updated_at, id) < ($2, coalesce($4::uuid, '00000000-0000-0000-0000-000000000000')))
      ORDER BY updated_at DESC, id DESC LIMIT $3";

/// The tenant's jobs, most recently changed first, filtered and paged as `q` says.
pub(crate) async fn jobs_of(
    state: &AppState,
    Admin(ctx): &Admin,
    q: JobQuery,
) -> Result<Vec<JobView>, AppError> {
    if let Some(s) = &q.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(AppError::BadRequest(format!(
            "status must be one of {}",
            STATUSES.join(", ")
        )));
    }
    if q.before_id.is_some() && q.before.is_none() {
        return Err(AppError::BadRequest(
            "before_id needs before (the previous page's last updated_at and id)".into(),
        ));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::BadRequest(
            "limit must be between 1 and 200".into(),
        ));
    }
    let mut tx = ctx.begin(&state.db).await?;
    let rows = sqlx::query_as(JOBS_PAGE_SQL)
        .bind(q.status)
        .bind(q.before)
        .bind(limit)
        .bind(q.before_id)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows)
}
