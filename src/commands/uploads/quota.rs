//! Before an upload accepts bytes: where they will go (a new file, or a new version of
//! one the caller may change) and the tenant's storage quota (`TENANT_QUOTA_BYTES`),
//! checked by every upload path (multipart, tus, direct-to-S3), and again by multipart
//! once the size is known.

use uuid::Uuid;

use crate::aggregates::upload::UploadTarget;
use crate::auth::TenantContext;
use crate::commands::files::load_for_change;
use crate::error::AppError;
use crate::ids::FileId;
use crate::state::AppState;

/// The target of a resumable or direct upload about to start: `file_id` names a file the
/// caller may change and that is live (a new version), `None` a new file; and the
/// `incoming` bytes, when declared, must fit the tenant's quota.
pub async fn target(
    state: &AppState,
    ctx: &TenantContext,
    file_id: Option<Uuid>,
    incoming: Option<u64>,
) -> Result<UploadTarget, AppError> {
    let target = match file_id {
        Some(id) => {
            let file = load_for_change(state, ctx, id).await?;
            if file.deleted {
                return Err(AppError::Validation(
                    "file is deleted; restore it first".into(),
                ));
            }
            UploadTarget {
                file_id: FileId(id),
                new_file: false,
            }
        }
        None => UploadTarget {
            file_id: FileId::new(),
            new_file: true,
        },
    };
    check_quota(state, ctx, incoming).await?;
    Ok(target)
}

/// The tenant's stored bytes (uploaded or stored versions of files not purged) plus
/// `incoming`, against `TENANT_QUOTA_BYTES`. One row read ([`stored_bytes`], the figure
/// `GET /v1/tenants/current/usage` shows), so the check costs the same however many
/// files the tenant has. Projected, so uploads racing each other can pass the quota by
/// what is in flight (documented).
pub async fn check_quota(
    state: &AppState,
    ctx: &TenantContext,
    incoming: Option<u64>,
) -> Result<(), AppError> {
    let (Some(quota), Some(incoming)) = (state.config.tenant_quota_bytes, incoming) else {
        return Ok(());
    };
    let used = stored_bytes(state, ctx).await?;
    if used.saturating_add(incoming) > quota {
        return Err(AppError::QuotaExceeded(format!(
            "the tenant's storage quota of {quota} bytes would be exceeded ({used} bytes used)"
        )));
    }
    Ok(())
}

/// The tenant's stored bytes: one row kept by triggers on the read tables
/// (`tenant_usage`, migrations/0055_tenant_usage.sql), so reading it costs the same
/// however many files the tenant has. Projected: a version uploaded a moment ago may not
/// count yet.
pub(crate) async fn stored_bytes(state: &AppState, ctx: &TenantContext) -> Result<u64, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    // Named as well as limited by row-level security; no row: nothing stored yet.
    let used: Option<i64> =
        sqlx::query_scalar("SELECT stored_bytes FROM tenant_usage WHERE tenant_id = $1")
            .bind(ctx.tenant_id.0)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(used.unwrap_or(0).max(0) as u64)
}
