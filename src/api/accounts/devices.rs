//! `/v1/devices`: the clients the caller has signed in from, most recently seen first.

use axum::Json;
use axum::extract::State;

use crate::api::edge::extract::{ApiQuery, NoParams};
use crate::auth::TenantContext;
use crate::error::{AppError, ErrorBody};
use crate::queries::devices::{DeviceView, devices_of};
use crate::state::AppState;

/// My devices, most recently seen first (from the `devices` projection; a login made a
/// moment ago may take a few hundred milliseconds to appear).
#[utoipa::path(get, path = "/v1/devices", tag = "sessions", security(("bearer" = [])),
    params(NoParams),
    responses((status = 200, body = [DeviceView]), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ctx: TenantContext,
    _: ApiQuery<NoParams>,
) -> Result<Json<Vec<DeviceView>>, AppError> {
    Ok(Json(devices_of(&state, &ctx).await?))
}
