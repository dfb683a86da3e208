//! The tenant's storage against its quota (`GET /v1/tenants/current/usage`, the
//! console's Files page): the figure every upload's quota check reads
//! (src/commands/uploads/quota.rs), and the quota.

use serde::Serialize;

use crate::auth::TenantContext;
use crate::commands::uploads::quota::stored_bytes;
use crate::error::AppError;
use crate::state::AppState;

/// What the tenant stores and may store.
#[derive(Serialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct UsageView {
    /// Bytes of the tenant's versions that hold storage: uploaded, processing and
    /// completed versions of files not purged. Files in the trash count until purged; a
    /// new version with the bytes of an earlier version of its file (status `duplicate`)
    /// counts once; a copy in another file counts again, as what that file holds. What
    /// the quota compares.
    pub stored_bytes: u64,
    /// The tenant's storage quota (`TENANT_QUOTA_BYTES`); absent when there is none.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
}

/// The caller's tenant: stored bytes and quota.
pub(crate) async fn usage_of(state: &AppState, ctx: &TenantContext) -> Result<UsageView, AppError> {
    Ok(UsageView {
        stored_bytes: stored_bytes(state, ctx).await?,
        quota_bytes: state.config.tenant_quota_bytes,
    })
}
