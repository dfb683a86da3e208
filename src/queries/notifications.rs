//! The caller's notifications (`GET /v1/notifications`, the replay of the live stream):
//! newest first from the `notifications` read table, with the message each kind shows.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::auth::TenantContext;
use crate::error::AppError;
use crate::live::message::{self, EventId, NotificationView};
use crate::state::AppState;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 100;

/// The columns `row_view` reads.
pub(crate) const COLUMNS: &str = "id, seq, transaction_id::text AS xid, global_position, kind, file_id,
    file_name, version_number, status::text AS status, details::text AS details, created_at, read_at";

/// A stored row as clients see it, with its per-recipient `seq`.
pub(crate) fn row_view(row: &PgRow) -> Result<(i64, NotificationView), sqlx::Error> {
    let event_id = EventId {
        transaction_id: row
            .get::<String, _>("xid")
            .parse()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        global_position: row.get("global_position"),
    };
    let details: serde_json::Value =
        serde_json::from_str(row.get("details")).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let kind: String = row.get("kind");
    let file_name: Option<String> = row.get("file_name");
    let version_number: Option<i32> = row.get("version_number");
    let status: Option<String> = row.get("status");
    Ok((
        row.get("seq"),
        NotificationView {
            id: row.get("id"),
            event_id: event_id.to_string(),
            message: message::message(
                &kind,
                file_name.as_deref(),
                version_number,
                status.as_deref(),
                &details,
            ),
            kind,
            file_id: row.get("file_id"),
            file_name,
            version_number,
            status,
            details,
            created_at: row.get("created_at"),
            read_at: row.get("read_at"),
        },
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only notifications not yet marked read.
    #[serde(default)]
    pub unread: bool,
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NotificationPage {
    /// Newest first.
    pub items: Vec<NotificationView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
    /// All of the caller's unread notifications (for a badge), whatever the page.
    pub unread_count: i64,
}

/// One page of the caller's notifications, newest first, with the unread count.
pub(crate) async fn inbox_of(
    state: &AppState,
    ctx: &TenantContext,
    q: ListQuery,
) -> Result<NotificationPage, AppError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::Validation(format!(
            "limit must be 1 to {MAX_LIMIT}"
        )));
    }
    let before: Option<i64> = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| AppError::BadRequest("cursor is not valid".into()))?,
        ),
    };
    let mut tx = ctx.begin(&state.db).await?;
    // One statement, so the page and the unread count come from one snapshot: as two
    // statements, a read landing between them gave a page and a count that disagree.
    // The count is one row kept by triggers in the projector's own transactions
    // (`notification_unread`, migration 0056), not a count of the user's unread rows,
    // which grew with every upload. It always yields one row; the page joins it (no page
    // row: one row of NULLs). RLS limits rows to the tenant; naming it lets the planner
    // use the keys.
    let rows = sqlx::query(&format!(
        "SELECT c.unread_count, p.*
           FROM (SELECT coalesce((SELECT unread FROM notification_unread
                                   WHERE tenant_id = $1 AND recipient_id = $2), 0)
                        AS unread_count) AS c
           LEFT JOIN LATERAL (
                SELECT {COLUMNS} FROM notifications
                 WHERE tenant_id = $1 AND recipient_id = $2 AND kind <> 'version_status'
                   AND ($3::bigint IS NULL OR seq < $3) AND (NOT $4 OR read_at IS NULL)
                 ORDER BY seq DESC
                 LIMIT $5) AS p ON true
          ORDER BY p.seq DESC"
    ))
    .bind(ctx.tenant_id.0)
    .bind(ctx.user_id.0)
    .bind(before)
    .bind(q.unread)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let unread_count: i64 = rows.first().map_or(0, |r| r.get("unread_count"));
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r.get::<Option<i64>, _>("seq").is_some())
        .collect();
    let has_more = rows.len() as i64 > limit;
    let mut items = Vec::with_capacity(rows.len());
    let mut last_seq = 0;
    for row in rows.iter().take(limit as usize) {
        let (seq, view) = row_view(row)?;
        last_seq = seq;
        items.push(view);
    }
    let next_cursor = has_more.then(|| last_seq.to_string());
    Ok(NotificationPage {
        items,
        next_cursor,
        unread_count,
    })
}

/// The caller's rows after `after`, in catch-up order (transaction, then position), at
/// most `limit`: what the live stream replays after `Last-Event-ID` or a gap.
pub(crate) async fn after(
    state: &AppState,
    ctx: &TenantContext,
    after: EventId,
    limit: i64,
) -> Result<Vec<(i64, NotificationView)>, AppError> {
    let mut db = ctx.begin(&state.db).await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM notifications
          WHERE tenant_id = $1 AND recipient_id = $2
            AND (transaction_id, global_position) > ($3::text::xid8, $4)
          ORDER BY transaction_id, global_position
          LIMIT $5"
    ))
    .bind(ctx.tenant_id.0)
    .bind(ctx.user_id.0)
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .bind(limit)
    .fetch_all(&mut *db)
    .await?;
    db.commit().await?;
    Ok(rows.iter().map(row_view).collect::<Result<_, _>>()?)
}

/// The seq of the caller's last row at or before `id` (0 if none).
pub(crate) async fn seq_at(
    state: &AppState,
    ctx: &TenantContext,
    id: EventId,
) -> Result<i64, AppError> {
    let mut db = ctx.begin(&state.db).await?;
    let seq: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(seq), 0) FROM notifications
          WHERE tenant_id = $1 AND recipient_id = $2
            AND (transaction_id, global_position) <= ($3::text::xid8, $4)",
    )
    .bind(ctx.tenant_id.0)
    .bind(ctx.user_id.0)
    .bind(id.transaction_id.to_string())
    .bind(id.global_position)
    .fetch_one(&mut *db)
    .await?;
    db.commit().await?;
    Ok(seq)
}

/// The caller's newest row, its seq and event id; `None` before the first.
pub(crate) async fn newest(
    state: &AppState,
    ctx: &TenantContext,
) -> Result<Option<(i64, EventId)>, AppError> {
    let mut db = ctx.begin(&state.db).await?;
    let row: Option<(i64, String, i64)> = sqlx::query_as(
        "SELECT seq, transaction_id::text, global_position FROM notifications
          WHERE tenant_id = $1 AND recipient_id = $2
          ORDER BY seq DESC LIMIT 1",
    )
    .bind(ctx.tenant_id.0)
    .bind(ctx.user_id.0)
    .fetch_optional(&mut *db)
    .await?;
    db.commit().await?;
    row.map(|(seq, xid, pos)| {
        let transaction_id = xid
            .parse()
            .map_err(|e| AppError::Internal(anyhow::anyhow!("bad xid8: {e}")))?;
        Ok((
            seq,
            EventId {
                transaction_id,
                global_position: pos,
            },
        ))
    })
    .transpose()
}
