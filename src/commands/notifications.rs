//! Use case of the notification inbox: marking one read. Only the recipient may, and only
//! a notification meant for a person (status-only rows are not); anything else is 404.

use uuid::Uuid;

use crate::aggregates::{Notification, NotificationCommand};
use crate::auth::TenantContext;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::EventMetadata;

/// Marks notification `id` of the caller read. Idempotent: reading it again records
/// nothing.
pub async fn mark_read(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    id: Uuid,
) -> Result<(), AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let mine: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM notifications
                         WHERE tenant_id = $1 AND id = $2 AND recipient_id = $3
                           AND kind <> 'version_status')",
    )
    .bind(ctx.tenant_id.0)
    .bind(id)
    .bind(ctx.user_id.0)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    if !mine {
        return Err(AppError::NotFound("notification not found".into()));
    }
    let notifications = super::store::<Notification>(state, ctx.tenant_id);
    super::execute(
        &notifications,
        &id.to_string(),
        NotificationCommand::MarkRead,
        meta,
        &(),
    )
    .await?;
    Ok(())
}
