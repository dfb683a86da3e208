//! The caller's devices (`GET /v1/devices`, the console's Devices page), from the
//! `devices` projection.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::TenantContext;
use crate::error::AppError;
use crate::state::AppState;

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeviceView {
    pub id: Uuid,
    /// Client family and major version, e.g. "Firefox 120" ("Unknown client" if unparsed).
    pub name: String,
    /// e.g. "Windows 10/11", "Android 14" ("Unknown OS" if unparsed).
    pub os: String,
    pub first_seen_at: DateTime<Utc>,
    /// Last login or token refresh from this device.
    pub last_seen_at: DateTime<Utc>,
    /// The device this request's session was started from.
    pub current: bool,
}

/// The caller's devices, most recently seen first (the API and the console).
pub(crate) async fn devices_of(
    state: &AppState,
    ctx: &TenantContext,
) -> Result<Vec<DeviceView>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    // RLS already limits rows to the tenant; naming it too lets the planner use the
    // (tenant_id, user_id, last_seen_at) index directly.
    let rows: Vec<DeviceView> = sqlx::query_as(
        "SELECT d.id, d.name, d.os, ud.first_seen_at, ud.last_seen_at,
                EXISTS (SELECT 1 FROM session_devices sd
                         WHERE sd.tenant_id = ud.tenant_id AND sd.session_id = $3
                           AND sd.device_id = ud.device_id) AS current
           FROM user_devices ud
           JOIN devices d ON d.tenant_id = ud.tenant_id AND d.id = ud.device_id
          WHERE ud.tenant_id = $1 AND ud.user_id = $2
          ORDER BY ud.last_seen_at DESC, ud.device_id
          LIMIT 100",
    )
    .bind(ctx.tenant_id.0)
    .bind(ctx.user_id.0)
    .bind(ctx.session_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}
