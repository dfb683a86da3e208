//! Use cases of the notification inbox: marking one read, and marking all read. Only the
//! recipient may, and only notifications meant for a person (status-only rows are not);
//! anyone else's notification is 404.

use uuid::Uuid;

use crate::aggregates::{Inbox, InboxCommand, Notification, NotificationCommand};
use crate::auth::TenantContext;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::EventMetadata;

/// Marks notification `id` of the caller read. Idempotent: reading it again, or reading
/// one already read with all the others, records nothing.
pub async fn mark_read(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    id: Uuid,
) -> Result<(), AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    // `Some(read)` when the notification is the caller's.
    let read: Option<bool> = sqlx::query_scalar(
        "SELECT read_at IS NOT NULL FROM notifications
          WHERE tenant_id = $1 AND id = $2 AND recipient_id = $3 AND kind <> 'version_status'",
    )
    .bind(ctx.tenant_id.0)
    .bind(id)
    .bind(ctx.user_id.0)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    match read {
        None => return Err(AppError::NotFound("notification not found".into())),
        Some(true) => return Ok(()),
        Some(false) => {}
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

/// Marks every notification the caller has now read: one `InboxRead` up to the newest of
/// them that is unread (src/aggregates/inbox.rs), whatever their number. A notification
/// that arrives meanwhile stays unread. With nothing unread it records nothing. Returns
/// the `seq` read up to (`None`: nothing was unread), for a caller that waits to see it.
pub async fn mark_all_read(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
) -> Result<Option<i64>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let newest_unread: Option<i64> = sqlx::query_scalar(
        "SELECT max(seq) FROM notifications
          WHERE tenant_id = $1 AND recipient_id = $2 AND kind <> 'version_status'
            AND read_at IS NULL",
    )
    .bind(ctx.tenant_id.0)
    .bind(ctx.user_id.0)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let Some(seq) = newest_unread else {
        return Ok(None);
    };
    let inbox = super::store::<Inbox>(state, ctx.tenant_id);
    super::execute(
        &inbox,
        &ctx.user_id.to_string(),
        InboxCommand::ReadUpTo { seq: seq as u64 },
        meta,
        &(),
    )
    .await?;
    Ok(Some(seq))
}
