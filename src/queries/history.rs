//! A file's past (the API and the console): `GET /v1/files/{id}/history` (its events with metadata and hashes,
//! auditors and admins only) and time travel, `GET /v1/files/{id}?as_of=<RFC 3339>` or
//! `?at_version=<n>` — the file rebuilt from its stream up to that point, in the shape
//! of the live resource.
//!
//! `at_version` is the stream's sequence number, i.e. the aggregate's version after
//! that many events (1 = just created) — not a file *content* version number. Time
//! travel is open to the file's normal readers (its owner, admins, auditors): it shows
//! nothing they could not have seen at that moment. Once a file is purged, its owner
//! (a `user`) no longer reaches any of its past (`404`); auditors and admins keep time
//! travel and history — they are the audit trail.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregates::file::File;
use crate::auth::policy::{self, file_not_found};
use crate::auth::{AuditorOrAdmin, TenantContext};
use crate::error::AppError;
use crate::queries::files::{FileView, view_from_stream_at};
use crate::queries::page_limit;
use crate::state::AppState;
use crate::store::history::{self, StoredEvent, StreamRef};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimeTravel {
    /// The file as it was at this instant (RFC 3339; a future instant gives the
    /// current state).
    pub as_of: Option<DateTime<Utc>>,
    /// The file as it was after its stream's event number `n` (1 = created).
    #[param(minimum = 0)]
    pub at_version: Option<i64>,
}

impl TimeTravel {
    pub(crate) fn requested(&self) -> bool {
        self.as_of.is_some() || self.at_version.is_some()
    }
}

/// The file rebuilt from its events up to the requested point.
pub(crate) async fn time_travel(
    state: &AppState,
    ctx: &TenantContext,
    id: Uuid,
    travel: TimeTravel,
) -> Result<FileView, AppError> {
    let aggregate_id = id.to_string();
    let stream = StreamRef {
        tenant: ctx.tenant_id,
        aggregate_type: "file",
        aggregate_id: &aggregate_id,
    };
    // A purge removes the file from every read of its ordinary readers, its past
    // included; auditors and admins keep time travel (the audit trail, like history).
    if !policy::reads_history(ctx) && history::purged(&state.db, stream).await? {
        return Err(file_not_found());
    }
    let point = match (travel.as_of, travel.at_version) {
        (Some(_), Some(_)) => {
            return Err(AppError::BadRequest(
                "give as_of or at_version, not both".into(),
            ));
        }
        (None, Some(n)) if n < 0 => {
            return Err(AppError::BadRequest(
                "at_version must not be negative".into(),
            ));
        }
        (None, Some(n)) => {
            if n > history::end(&state.db, stream).await? {
                return Err(AppError::NotFound("the file has no such version".into()));
            }
            n
        }
        (Some(at), None) => history::sequence_at(&state.db, stream, at).await?,
        (None, None) => history::end(&state.db, stream).await?,
    };
    if point == 0 {
        return Err(file_not_found()); // before the file existed
    }
    let store = crate::commands::store::<File>(state, ctx.tenant_id);
    let loaded = store
        .load_at(&aggregate_id, point as u64)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("time travel replay: {e}")))?;
    let file = loaded.aggregate;
    if !policy::can_read(ctx, &file) {
        return Err(file_not_found());
    }
    view_from_stream_at(&state.db, ctx.tenant_id, id, &file, Some(point)).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Events after this sequence (`next_after` of the previous page); default 0.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryPage {
    /// Oldest first.
    pub items: Vec<StoredEvent>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_after: Option<i64>,
}

/// One page of a file's events, oldest first: auditors and admins only, which the
/// caller's type says.
pub(crate) async fn history_of(
    state: &AppState,
    AuditorOrAdmin(ctx): &AuditorOrAdmin,
    id: Uuid,
    p: HistoryParams,
) -> Result<HistoryPage, AppError> {
    let limit = page_limit(p.limit)?;
    let after = p.after.unwrap_or(0);
    if after < 0 {
        return Err(AppError::BadRequest("after must not be negative".into()));
    }
    let aggregate_id = id.to_string();
    let stream = StreamRef {
        tenant: ctx.tenant_id,
        aggregate_type: "file",
        aggregate_id: &aggregate_id,
    };
    if history::end(&state.db, stream).await? == 0 {
        return Err(file_not_found());
    }
    let mut items = history::page(&state.db, stream, after, i64::from(limit) + 1).await?;
    let next_after = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|e| e.sequence)
    } else {
        None
    };
    Ok(HistoryPage { items, next_after })
}
