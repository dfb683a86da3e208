//! `/v1/tenants/current/usage`: what the caller's tenant stores against its quota, for
//! those whose uploads the quota limits.

use axum::Json;
use axum::extract::State;

use crate::api::edge::extract::{ApiQuery, NoParams};
use crate::auth::Writer;
use crate::error::{AppError, ErrorBody};
use crate::queries::usage::{UsageView, usage_of};
use crate::state::AppState;

/// The tenant's stored bytes and storage quota: the figures an upload is checked
/// against (`413 quota_exceeded` when it would not fit). For callers who upload (users
/// and admins with `files:write`). Projected: a version uploaded a moment ago may take a
/// few hundred milliseconds to count.
#[utoipa::path(get, path = "/v1/tenants/current/usage", tag = "uploads", security(("bearer" = [])),
    params(NoParams),
    responses((status = 200, body = UsageView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn usage(
    State(state): State<AppState>,
    Writer(ctx): Writer,
    _: ApiQuery<NoParams>,
) -> Result<Json<UsageView>, AppError> {
    Ok(Json(usage_of(&state, &ctx).await?))
}
