//! `/files/{id}`: one file — preview, versions (download, restore), tags, rename,
//! delete/restore, shares, links and the legal hold. Which controls show is the
//! policy's answer for this person and this file (as the log has it); the controls
//! themselves call the JSON API (assets/actions.js). Another tenant's id, or a file the
//! person may not read, is the API's `404`.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use uuid::Uuid;

use super::{human_size, status_label};
use crate::api::edge::extract::ApiPath;
use crate::auth::policy;
use crate::commands::files::load_any;
use crate::console::error::ConsoleError;
use crate::console::page::{Layout, Nav, render};
use crate::console::session::Viewer;
use crate::error::AppError;
use crate::queries::files::{FileView, VersionView, file_of, versions_of};
use crate::queries::sharing::{LinkView, SharingView, links_of, sharing_view};
use crate::state::AppState;

/// Another person of the tenant the file can be shared with.
struct Person {
    id: Uuid,
    handle: String,
}

#[derive(Template)]
#[template(path = "file.html")]
struct FilePage {
    page: Layout,
    file: FileView,
    versions: Vec<VersionView>,
    /// Grants and hold; `None` when this person may not see them.
    sharing: Option<SharingView>,
    links: Vec<LinkView>,
    people: Vec<Person>,
    can_change: bool,
    can_manage: bool,
    can_hold: bool,
    preview: bool,
}

impl FilePage {
    fn status(&self) -> String {
        self.file
            .latest_version
            .as_ref()
            .map(|v| v.status.as_str().to_string())
            .unwrap_or_else(|| "empty".into())
    }

    fn status_label(&self, status: &str) -> String {
        status_label(status).to_string()
    }

    fn size(&self, bytes: &i64) -> String {
        human_size(*bytes)
    }

    /// Whether version `n` is not the one downloads serve already (restoring it would
    /// change nothing).
    fn restorable(&self, n: &i32) -> bool {
        self.file
            .current_version
            .as_ref()
            .is_none_or(|v| v.version_number != *n)
    }

    fn handle_of(&self, id: &Option<Uuid>) -> String {
        let Some(id) = id else { return String::new() };
        self.people
            .iter()
            .find(|p| p.id == *id)
            .map(|p| p.handle.clone())
            .unwrap_or_else(|| id.to_string())
    }
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    path: Result<ApiPath<Uuid>, AppError>,
) -> Result<Response, ConsoleError> {
    let ApiPath(id) = path?;
    let ctx = &viewer.ctx;
    // First the API's answer for this person: a 404 for anyone who may not read it.
    let mut file = file_of(&state, *ctx, id).await?;
    let versions = versions_of(&state, ctx, id).await?;
    // The rights, from the file as its events have it (never a lagging table).
    let events = load_any(&state, ctx.tenant_id, id).await?;
    // What the person just changed here shows at once: name, tags and trash as the log
    // has them (the read tables the view comes from may be a batch behind).
    file.display_name = events.display_name.clone();
    file.tags = events.tags.iter().cloned().collect();
    file.is_deleted = events.deleted;
    let can_manage = policy::can_manage(ctx, &events).is_ok();
    let shown = policy::reads_history(ctx) || can_manage;
    let sharing = shown.then(|| sharing_view(id, &events));
    let links = if shown {
        links_of(&state, ctx, id).await?
    } else {
        Vec::new()
    };
    let people = if can_manage {
        people(&state, &viewer).await?
    } else {
        Vec::new()
    };
    let preview = file.current_version.as_ref().is_some_and(|v| {
        matches!(
            v.mime_type.as_str(),
            "image/png" | "image/jpeg" | "image/webp" | "image/gif"
        )
    });
    Ok(render(&FilePage {
        page: Layout::new(&viewer, file.display_name.clone(), Nav::Files),
        can_change: policy::can_change(ctx, &events).is_ok(),
        can_hold: policy::can_hold(ctx, &events).is_ok(),
        can_manage,
        file,
        versions,
        sharing,
        links,
        people,
        preview,
    }))
}

/// The tenant's people (handles), to pick whom to share with.
async fn people(state: &AppState, viewer: &Viewer) -> Result<Vec<Person>, AppError> {
    let mut tx = viewer.ctx.begin(&state.db).await?;
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, handle FROM users WHERE tenant_id = $1 AND id <> $2 AND NOT is_banned
          ORDER BY handle LIMIT 500",
    )
    .bind(viewer.ctx.tenant_id.0)
    .bind(viewer.ctx.user_id.0)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|(id, handle)| Person { id, handle })
        .collect())
}
