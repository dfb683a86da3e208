//! The caller's sessions (`GET /v1/sessions`, the console's Devices page), from the
//! `sessions` read table.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::TenantContext;
use crate::error::AppError;
use crate::state::AppState;

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub user_agent: String,
    pub ip_address: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoke_reason: Option<String>,
    /// The session this request is made with.
    #[sqlx(default)]
    pub current: bool,
}

/// The caller's sessions, newest first (the API's list and the console's Devices page).
pub(crate) async fn sessions_of(
    state: &AppState,
    ctx: &TenantContext,
) -> Result<Vec<SessionView>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let mut rows: Vec<SessionView> = sqlx::query_as(
        "SELECT id, user_agent, ip_address, created_at, last_seen_at, revoked_at, revoke_reason
           FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 100",
    )
    .bind(ctx.user_id.0)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    for row in &mut rows {
        row.current = row.id == ctx.session_id;
    }
    Ok(rows)
}
