//! Use cases of a file's lifecycle once it exists: rename, tag/untag, trash and restore,
//! restore an old version, purge, and the bulk form of the first ones. Each loads the
//! file from its stream (never a lagging read table), asks the policy
//! (src/auth/policy.rs) and commits one `FileCommand` through `commands::execute`.
//!
//! The loaders (`load_readable`, `load_for_change`) are shared with the upload, download
//! and sharing paths, so every surface — JSON API, console, CLI through the API — decides
//! who may touch a file the same way.

use cqrs_es::EventStore;
use uuid::Uuid;

use crate::aggregates::file::{File, FileCommand, check_tag};
use crate::auth::TenantContext;
use crate::auth::policy::{self, file_not_found};
use crate::error::{AppError, ErrorDetail};
use crate::ids::TenantId;
use crate::state::AppState;
use crate::store::{ChronicleStore, EventMetadata};

/// Files of one tenant, as event streams.
pub fn file_store(state: &AppState, tenant: TenantId) -> ChronicleStore<File> {
    crate::commands::store(state, tenant)
}

/// The file as the log has it now, whoever asks (the tenant's streams only, so another
/// tenant's id is an empty file, which every caller treats as "not found").
pub async fn load_any(state: &AppState, tenant: TenantId, id: Uuid) -> Result<File, AppError> {
    Ok(file_store(state, tenant)
        .load_aggregate(&id.to_string())
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("event store: {e}")))?
        .aggregate)
}

/// The file if the caller may read it (`policy::can_read`); anything else is 404.
pub async fn load_readable(
    state: &AppState,
    ctx: &TenantContext,
    id: Uuid,
) -> Result<File, AppError> {
    let file = load_any(state, ctx.tenant_id, id).await?;
    if policy::can_read(ctx, &file) {
        Ok(file)
    } else {
        Err(file_not_found())
    }
}

/// The file if the caller may change it (`policy::can_change`): 404 unless it may read
/// it, 403 if it may only read it.
pub async fn load_for_change(
    state: &AppState,
    ctx: &TenantContext,
    id: Uuid,
) -> Result<File, AppError> {
    let file = load_any(state, ctx.tenant_id, id).await?;
    policy::can_change(ctx, &file)?;
    Ok(file)
}

/// A change to one file that needs nothing but the file and the caller.
#[derive(Debug, Clone)]
pub enum FileChange {
    Rename {
        display_name: String,
    },
    Tag {
        tag: String,
    },
    Untag {
        tag: String,
    },
    /// To the trash; a file already there stays (a no-op, not an error).
    Trash,
    /// Out of the trash (422 if it is not there).
    Restore,
    /// Make an old completed version current again (a new version, same bytes).
    RestoreVersion {
        version_number: u32,
    },
}

impl FileChange {
    fn command(self) -> FileCommand {
        match self {
            FileChange::Rename { display_name } => FileCommand::Rename { display_name },
            FileChange::Tag { tag } => FileCommand::Tag { tag },
            FileChange::Untag { tag } => FileCommand::Untag { tag },
            FileChange::Trash => FileCommand::Delete,
            FileChange::Restore => FileCommand::Restore,
            FileChange::RestoreVersion { version_number } => {
                FileCommand::RestoreVersion { version_number }
            }
        }
    }
}

/// Applies `change` for the caller and returns the file as the command left it.
/// Trashing and restoring are the owner's (or an admin's), not a grantee's.
pub async fn change(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    id: Uuid,
    change: FileChange,
) -> Result<File, AppError> {
    let file = load_any(state, ctx.tenant_id, id).await?;
    match change {
        FileChange::Trash | FileChange::Restore => policy::can_manage(ctx, &file)?,
        _ => policy::can_change(ctx, &file)?,
    }
    if matches!(change, FileChange::Trash) && file.deleted {
        return Ok(file);
    }
    let done = super::execute(
        &file_store(state, ctx.tenant_id),
        &id.to_string(),
        change.command(),
        meta,
        &(),
    )
    .await?;
    Ok(done.aggregate)
}

/// Purge for good (owners and admins, live or trashed files alike); never a file under
/// legal hold (`409 legal_hold`) or one uploaded within `MIN_RETENTION_DAYS`
/// (`409 retention_locked`), whoever asks. Purging a purged file again is a no-op for a
/// caller who could have purged it; to anyone else it is 404.
pub async fn purge(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    id: Uuid,
) -> Result<(), AppError> {
    let file = load_any(state, ctx.tenant_id, id).await?;
    policy::can_purge(ctx, &file)?;
    if file.purged {
        return Ok(());
    }
    if file.legal_hold.is_some() {
        return Err(AppError::LegalHold);
    }
    check_min_retention(state, ctx.tenant_id, id).await?;
    super::execute(
        &file_store(state, ctx.tenant_id),
        &id.to_string(),
        FileCommand::Purge,
        meta,
        &(),
    )
    .await?;
    Ok(())
}

/// The most files one bulk request may name.
pub const MAX_BULK: usize = 100;

/// What a bulk request may do to each of its files.
#[derive(Debug, Clone)]
enum BulkAction {
    Trash,
    Restore,
    Tag(String),
    Untag(String),
}

impl BulkAction {
    /// Parses the wire form (`delete`, `restore`, `tag`, `untag` and the tag). A tag that
    /// no file can carry is refused whole, even for an action that does not use it.
    fn parse(action: &str, tag: Option<String>) -> Result<BulkAction, AppError> {
        if let Some(tag) = &tag {
            check_tag(tag).map_err(|e| AppError::Validation(e.to_string()))?;
        }
        let tag = || {
            tag.clone().ok_or_else(|| {
                AppError::Validation("invalid tag: required for tag and untag".into())
            })
        };
        Ok(match action {
            "delete" => BulkAction::Trash,
            "restore" => BulkAction::Restore,
            "tag" => BulkAction::Tag(tag()?),
            "untag" => BulkAction::Untag(tag()?),
            _ => {
                return Err(AppError::Validation(
                    "invalid action: must be delete, restore, tag or untag".into(),
                ));
            }
        })
    }

    fn change(&self) -> FileChange {
        match self {
            BulkAction::Trash => FileChange::Trash,
            BulkAction::Restore => FileChange::Restore,
            BulkAction::Tag(tag) => FileChange::Tag { tag: tag.clone() },
            BulkAction::Untag(tag) => FileChange::Untag { tag: tag.clone() },
        }
    }
}

/// One file's outcome in a bulk request: the status and error its single-file request
/// would have given.
#[derive(Debug)]
pub struct BulkOutcome {
    pub file_id: Uuid,
    pub error: Option<(u16, ErrorDetail)>,
}

/// Each file is its own command with its own outcome, in request order: a partial
/// success is explicit, never all-or-nothing. The request is refused whole (nothing
/// runs) for a count outside 1..=`MAX_BULK`, then for an impossible tag or action.
pub async fn bulk(
    state: &AppState,
    ctx: &TenantContext,
    meta: &EventMetadata,
    action: &str,
    tag: Option<String>,
    ids: &[Uuid],
) -> Result<Vec<BulkOutcome>, AppError> {
    if ids.is_empty() || ids.len() > MAX_BULK {
        return Err(AppError::Validation(format!(
            "invalid file_ids: 1 to {MAX_BULK} files"
        )));
    }
    let action = BulkAction::parse(action, tag)?;
    let mut outcomes = Vec::with_capacity(ids.len());
    for &id in ids {
        let outcome = change(state, ctx, meta, id, action.change()).await;
        outcomes.push(BulkOutcome {
            file_id: id,
            error: outcome
                .err()
                .map(|err| (err.status().as_u16(), err.body().error)),
        });
    }
    Ok(outcomes)
}

/// The retention lock (`MIN_RETENTION_DAYS`, as S3 Object Lock's compliance mode): a
/// file whose latest upload (or version restore) is younger than that is not purged,
/// by anyone. The time is the event's `recorded_at` in the log.
async fn check_min_retention(
    state: &AppState,
    tenant: crate::ids::TenantId,
    id: Uuid,
) -> Result<(), AppError> {
    let days = state.config.min_retention_days;
    if days == 0 {
        return Ok(());
    }
    let latest: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT max(recorded_at) FROM events
          WHERE tenant_id = $1 AND aggregate_type = 'file' AND aggregate_id = $2
            AND event_type IN ('FileCreated', 'Uploaded', 'VersionRestored')",
    )
    .bind(tenant.0)
    .bind(id.to_string())
    .fetch_one(&state.db)
    .await?;
    let Some(latest) = latest else {
        return Ok(());
    };
    let until = latest + chrono::Duration::days(days as i64);
    if chrono::Utc::now() < until {
        return Err(AppError::RetentionLocked(format!(
            "the tenant's minimum retention keeps this file until {}",
            until.to_rfc3339()
        )));
    }
    Ok(())
}
