//! A file's sharing state as the log has it (`GET /v1/files/{id}/grants`, `/links`, the
//! console's file page): its grants, legal hold and links with their download counts.
//! Read from the File stream, not a read table, so a grant or link just changed shows at
//! once; who may look is `commands::sharing::load_for_sharing_view`'s (owner, admins,
//! auditors).

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::aggregates::file::{File, Grantee, Link};
use crate::auth::TenantContext;
use crate::commands::sharing as uc;
use crate::error::AppError;
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GrantView {
    /// Set for a grant to a user.
    pub user_id: Option<Uuid>,
    /// Set for a grant to a role: `user`, `admin` or `auditor`.
    pub role: Option<String>,
    /// `viewer` or `editor`.
    pub access: String,
}

/// A file's sharing state as the log has it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SharingView {
    pub file_id: Uuid,
    pub grants: Vec<GrantView>,
    /// The reason of the legal hold in force; `null` when the file is not held.
    pub legal_hold: Option<String>,
}

pub(crate) fn sharing_view(id: Uuid, file: &File) -> SharingView {
    SharingView {
        file_id: id,
        grants: file
            .grants
            .iter()
            .map(|g| {
                let (user_id, role) = match g.grantee {
                    Grantee::User(u) => (Some(u.0), None),
                    Grantee::Role(r) => (None, Some(r.as_str().to_string())),
                };
                GrantView {
                    user_id,
                    role,
                    access: g.access.as_str().to_string(),
                }
            })
            .collect(),
        legal_hold: file.legal_hold.clone(),
    }
}

/// The grants and legal hold of a file its caller may manage the sharing of.
pub(crate) async fn grants_of(
    state: &AppState,
    ctx: &TenantContext,
    id: Uuid,
) -> Result<SharingView, AppError> {
    let file = uc::load_for_sharing_view(state, ctx, id).await?;
    Ok(sharing_view(id, &file))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LinkView {
    pub link_id: Uuid,
    pub version_number: Option<u32>,
    pub expires_at: DateTime<Utc>,
    pub has_password: bool,
    pub max_downloads: Option<u32>,
    pub downloads: i64,
    pub revoked: bool,
}

pub(crate) fn link_view(link: &Link, downloads: i64) -> LinkView {
    LinkView {
        link_id: link.link_id,
        version_number: link.version_number,
        expires_at: link.expires_at,
        has_password: link.password_hash.is_some(),
        max_downloads: link.max_downloads,
        downloads,
        revoked: link.revoked,
    }
}

/// A file's links with their download counts (the API and the console).
pub(crate) async fn links_of(
    state: &AppState,
    ctx: &TenantContext,
    id: Uuid,
) -> Result<Vec<LinkView>, AppError> {
    let file = uc::load_for_sharing_view(state, ctx, id).await?;
    let ids: Vec<Uuid> = file.links.iter().map(|l| l.link_id).collect();
    let counts = uc::link_downloads(state, &ids).await?;
    let count = |id: Uuid| counts.iter().find(|(l, _)| *l == id).map_or(0, |(_, n)| *n);
    Ok(file
        .links
        .iter()
        .map(|l| link_view(l, count(l.link_id)))
        .collect())
}
