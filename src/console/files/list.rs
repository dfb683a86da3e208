//! `/files`: the listing use case of `GET /v1/files` behind a search form, and
//! `/files/table`, the same table alone for htmx to swap in (after a search keystroke,
//! or when an upload's status changes).

use askama::Template;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use serde::Deserialize;

use super::{human_size, status_label};
use crate::api::edge::extract::ApiQuery;
use crate::console::error::ConsoleError;
use crate::console::page::{Layout, Nav, render};
use crate::console::session::Viewer;
use crate::queries::files::FileView;
use crate::queries::listing::{ListParams, list_files};
use crate::queries::usage::{UsageView, usage_of};
use crate::state::AppState;

/// What the search form sends. Empty fields (an HTML form sends them all) mean "not
/// set"; `tag` may repeat.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FilesQuery {
    q: String,
    sort: String,
    order: String,
    status: String,
    tag_mode: String,
    /// `true`: the trash.
    deleted: String,
    /// `true`: files others shared with me.
    shared: String,
    cursor: String,
}

/// The form's state, for the template and for links that keep it.
struct Filters {
    query: FilesQuery,
    tags: Vec<String>,
}

impl Filters {
    fn parse(uri: &Uri) -> Result<Self, ConsoleError> {
        let (query, tags) = ApiQuery::<FilesQuery>::from_uri_split(uri, "tag")?;
        let tags = tags.into_iter().filter(|t| !t.is_empty()).collect();
        Ok(Filters { query, tags })
    }

    fn trash(&self) -> bool {
        self.query.deleted == "true"
    }

    fn shared(&self) -> bool {
        self.query.shared == "true"
    }

    fn params(&self) -> ListParams {
        let set = |v: &str| (!v.is_empty()).then(|| v.to_string());
        ListParams {
            cursor: set(&self.query.cursor),
            limit: Some(50),
            tag: self.tags.clone(),
            tag_mode: set(&self.query.tag_mode),
            status: set(&self.query.status),
            name: None,
            q: set(&self.query.q),
            sort: set(&self.query.sort),
            order: set(&self.query.order),
            deleted: Some(self.trash()),
            shared_with_me: self.shared().then_some(true),
        }
    }

    /// The query string of these filters with `change` applied (no cursor: page one).
    fn with(&self, change: impl FnOnce(&mut Vec<(String, String)>)) -> String {
        let q = &self.query;
        let mut pairs: Vec<(String, String)> = [
            ("q", &q.q),
            ("sort", &q.sort),
            ("order", &q.order),
            ("status", &q.status),
            ("tag_mode", &q.tag_mode),
            ("deleted", &q.deleted),
            ("shared", &q.shared),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
        pairs.extend(self.tags.iter().map(|t| ("tag".to_string(), t.clone())));
        change(&mut pairs);
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }

    /// This listing (for the table's refresh).
    fn current(&self) -> String {
        let cursor = self.query.cursor.clone();
        self.with(|p| {
            if !cursor.is_empty() {
                p.push(("cursor".into(), cursor));
            }
        })
    }

    fn adding_tag(&self, tag: &str) -> String {
        let tag = tag.to_string();
        self.with(|p| {
            if !p.iter().any(|(k, v)| k == "tag" && *v == tag) {
                p.push(("tag".into(), tag));
            }
        })
    }

    fn removing_tag(&self, tag: &str) -> String {
        self.with(|p| p.retain(|(k, v)| !(k == "tag" && v == tag)))
    }

    fn next_page(&self, cursor: &str) -> String {
        let cursor = cursor.to_string();
        self.with(|p| p.push(("cursor".into(), cursor)))
    }

    fn sort_is(&self, key: &str) -> bool {
        self.query.sort == key || (self.query.sort.is_empty() && key == "created")
    }
}

/// A listed file as the table shows it.
struct Row {
    file: FileView,
    status: String,
    size: String,
}

impl Row {
    fn of(file: FileView) -> Self {
        let status = file
            .latest_version
            .as_ref()
            .map(|v| v.status.as_str().to_string())
            .unwrap_or_else(|| "empty".into());
        let size = file
            .current_version
            .as_ref()
            .map(|v| human_size(v.size_bytes))
            .unwrap_or_default();
        Row { file, status, size }
    }

    fn status_label(&self) -> &str {
        status_label(&self.status)
    }
}

/// The statuses a listing can be filtered by, with their words.
const STATUSES: &[(&str, &str)] = &[
    ("uploaded", "uploaded"),
    ("queued", "queued"),
    ("processing", "processing"),
    ("completed", "completed"),
    ("duplicate", "duplicate"),
    ("virus_failed", "virus found"),
    ("failed", "failed"),
];

#[derive(Template)]
#[template(path = "files.html")]
struct FilesPage {
    page: Layout,
    filters: Filters,
    rows: Vec<Row>,
    next_cursor: Option<String>,
    can_upload: bool,
    /// "1.7 kB stored of 5.0 kB" above the drop zone, for those who upload (the usage
    /// use case of `GET /v1/tenants/current/usage`).
    usage: Option<String>,
}

#[derive(Template)]
#[template(path = "files_table.html")]
struct FilesTable {
    filters: Filters,
    rows: Vec<Row>,
    next_cursor: Option<String>,
}

async fn rows(
    state: &AppState,
    viewer: &Viewer,
    filters: &Filters,
) -> Result<(Vec<Row>, Option<String>), ConsoleError> {
    // Fresh: a person who just uploaded expects to see it (read-your-writes).
    let page = list_files(state, viewer.ctx, true, filters.params()).await?;
    Ok((
        page.items.into_iter().map(Row::of).collect(),
        page.next_cursor,
    ))
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    let filters = Filters::parse(&uri)?;
    let (rows, next_cursor) = rows(&state, &viewer, &filters).await?;
    let title = if filters.trash() { "Trash" } else { "Files" };
    let can_upload = crate::auth::policy::writes(&viewer.ctx);
    let usage = if can_upload && !filters.trash() {
        Some(usage_line(&usage_of(&state, &viewer.ctx).await?))
    } else {
        None
    };
    Ok(render(&FilesPage {
        page: Layout::new(&viewer, title, Nav::Files),
        can_upload,
        usage,
        filters,
        rows,
        next_cursor,
    }))
}

/// The tenant's storage in words: "1.7 kB stored of 5.0 kB", or "… stored" without a
/// quota.
fn usage_line(usage: &UsageView) -> String {
    let stored = human_size(usage.stored_bytes as i64);
    match usage.quota_bytes {
        Some(quota) => format!("{stored} stored of {}", human_size(quota as i64)),
        None => format!("{stored} stored"),
    }
}

pub async fn table(
    State(state): State<AppState>,
    viewer: Viewer,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    let filters = Filters::parse(&uri)?;
    let (rows, next_cursor) = rows(&state, &viewer, &filters).await?;
    Ok(render(&FilesTable {
        filters,
        rows,
        next_cursor,
    }))
}
