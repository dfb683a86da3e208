//! Notifications: the person's inbox, newest first — what `GET /v1/notifications`
//! lists (`queries::notifications`) — with "Mark read" on each unread one and "Mark all
//! read", the same use cases as the API's (`commands::notifications`). Plain forms: the
//! page works without JavaScript.

use std::time::Duration;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use uuid::Uuid;

use super::error::ConsoleError;
use super::page::{Layout, Nav, render};
use super::session::Viewer;
use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::{ApiPath, ApiQuery};
use crate::commands::notifications;
use crate::error::AppError;
use crate::live::message::NotificationView;
use crate::queries::notifications::{ListQuery, inbox_of};
use crate::state::AppState;

/// How long a form waits for its effect to be projected before showing the inbox.
const SHOWN_WITHIN: Duration = Duration::from_secs(2);

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    page: Layout,
    items: Vec<NotificationView>,
    unread_count: i64,
    unread_only: bool,
    /// The link to the next (older) page, when there is one.
    older: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    query: Result<ApiQuery<ListQuery>, AppError>,
) -> Result<Response, ConsoleError> {
    let ApiQuery(query) = query?;
    let unread_only = query.unread;
    let inbox = inbox_of(&state, &viewer.ctx, query).await?;
    let older = inbox.next_cursor.map(|cursor| {
        let unread = if unread_only { "unread=true&" } else { "" };
        format!("/notifications?{unread}cursor={cursor}")
    });
    Ok(render(&NotificationsPage {
        page: Layout::new(&viewer, "Notifications", Nav::Notifications)
            .with_unread(inbox.unread_count),
        items: inbox.items,
        unread_count: inbox.unread_count,
        unread_only,
        older,
    }))
}

/// Marks one notification read, then back to the inbox.
pub async fn read_one(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    path: Result<ApiPath<Uuid>, AppError>,
) -> Result<Response, ConsoleError> {
    let ApiPath(id) = path?;
    let meta = caller_metadata(&viewer.ctx, &headers);
    notifications::mark_read(&state, &viewer.ctx, &meta, id).await?;
    shown(
        &state,
        &viewer,
        "SELECT read_at IS NOT NULL FROM notifications
                             WHERE tenant_id = $1 AND recipient_id = $2 AND id = $3::uuid",
        &id.to_string(),
    )
    .await?;
    Ok(Redirect::to("/notifications").into_response())
}

/// Marks every notification the person has now read, then back to the inbox.
pub async fn read_all(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    let meta = caller_metadata(&viewer.ctx, &headers);
    if let Some(newest) = notifications::mark_all_read(&state, &viewer.ctx, &meta).await? {
        shown(
            &state,
            &viewer,
            "SELECT NOT EXISTS (SELECT 1 FROM notifications
                                  WHERE tenant_id = $1 AND recipient_id = $2 AND read_at IS NULL
                                    AND kind <> 'version_status' AND seq <= $3::bigint)",
            &newest.to_string(),
        )
        .await?;
    }
    Ok(Redirect::to("/notifications").into_response())
}

/// Waits (up to `SHOWN_WITHIN`) until the read table shows what was just recorded —
/// `check`, with the tenant, the person and `arg` as parameters — so the page the form
/// returns to is not one batch of the projector behind the click. Past the deadline the
/// page shows what there is; the read is recorded either way.
async fn shown(state: &AppState, viewer: &Viewer, check: &str, arg: &str) -> Result<(), AppError> {
    let deadline = tokio::time::Instant::now() + SHOWN_WITHIN;
    loop {
        let mut tx = viewer.ctx.begin(&state.db).await?;
        let done: Option<bool> = sqlx::query_scalar(check)
            .bind(viewer.ctx.tenant_id.0)
            .bind(viewer.ctx.user_id.0)
            .bind(arg)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        if done != Some(false) || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
