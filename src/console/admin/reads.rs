//! What the admin page lists that the API has no list for: the tenant's people (the
//! `users` read table; a change made a moment ago may take a moment to show).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::auth::TenantContext;
use crate::error::AppError;
use crate::state::AppState;

#[derive(Debug, sqlx::FromRow)]
pub struct Person {
    pub id: Uuid,
    pub handle: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub is_banned: bool,
    pub created_at: DateTime<Utc>,
}

/// The tenant's people (not its system workers), oldest first, at most 500.
pub async fn people(state: &AppState, ctx: &TenantContext) -> Result<Vec<Person>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let people = sqlx::query_as(
        "SELECT id, handle, name, email, role, is_banned, created_at FROM users
          WHERE tenant_id = $1 AND role <> 'system_worker'
          ORDER BY created_at, handle LIMIT 500",
    )
    .bind(ctx.tenant_id.0)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(people)
}
