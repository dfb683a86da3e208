//! `GET /v1/files` (keyset pagination, filters) and `GET /v1/tags`.
//!
//! Order is `created_at DESC, id DESC`; the cursor is the last row's (created_at, id),
//! opaque to clients (base64url). Keyset paging never skips or repeats a row while files
//! are added or removed between pages: newer files sort before the cursor, so a paging
//! client simply does not see them until it starts again.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};

use super::cursor::CursorKey;
use super::extract::ApiQuery;
use super::files::{FileRow, FileView, VIEW_SELECT, parse_status};
use crate::auth::FileReader;
use crate::auth::policy;
use crate::error::{AppError, ErrorBody};
use crate::state::AppState;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;
/// Longer than any display name (255 bytes): such a prefix can match nothing.
const MAX_NAME_PREFIX: usize = 255;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Only files carrying this tag.
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub tag: Option<String>,
    /// Only files whose latest version has this status.
    #[param(pattern = "^(|uploaded|queued|processing|virus_failed|duplicate|failed|completed)$")]
    pub status: Option<String>,
    /// Case-insensitive display-name prefix (`%` and `_` match themselves).
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub name: Option<String>,
    /// `true`: only soft-deleted files (the trash). Default: only live files.
    pub deleted: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FilePage {
    pub items: Vec<FileView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `%`, `_` and the escape character itself match literally.
fn escape_like(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A page size: `DEFAULT_LIMIT` when absent, else 1..=`MAX_LIMIT` or 400.
pub(super) fn page_limit(limit: Option<u32>) -> Result<u32, AppError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    Ok(limit)
}

/// Files the caller may see, newest first, one page at a time.
#[utoipa::path(get, path = "/v1/files", tag = "files", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = FilePage), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    FileReader(ctx): FileReader,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<FilePage>, AppError> {
    let limit = page_limit(params.limit)?;
    let key = CursorKey::new(state.config.jwt_secret.expose());
    let tenant = ctx.tenant_id.0;
    let cursor = params
        .cursor
        .as_deref()
        .map(|c| key.decode(tenant, c))
        .transpose()?;
    let status = match params.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(parse_status(s).ok_or_else(|| {
            AppError::BadRequest(
                "status must be one of uploaded, queued, processing, virus_failed, duplicate, failed, completed".into(),
            )
        })?),
        None => None,
    };
    let name = params.name.filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.len() > MAX_NAME_PREFIX) {
        return Err(AppError::BadRequest("name prefix is too long".into()));
    }
    let tag = params.tag.filter(|t| !t.is_empty());

    let mut q = QueryBuilder::<Postgres>::new(VIEW_SELECT);
    // RLS limits rows to the tenant; naming it too lets the planner use the
    // (tenant_id, [owner_id,] is_deleted, created_at DESC, id DESC) indexes.
    q.push(" WHERE f.tenant_id = ").push_bind(ctx.tenant_id.0);
    q.push(" AND NOT f.purged AND f.is_deleted = ")
        .push_bind(params.deleted.unwrap_or(false));
    if !policy::reads_every_file(&ctx) {
        q.push(" AND f.owner_id = ").push_bind(ctx.user_id.0);
    }
    if let Some(status) = status {
        q.push(" AND f.latest_status = ")
            .push_bind(status.as_str())
            .push("::file_status");
    }
    if let Some(tag) = tag {
        q.push(" AND EXISTS (SELECT 1 FROM file_tags t WHERE t.tenant_id = f.tenant_id AND t.file_id = f.id AND t.tag = ")
            .push_bind(tag)
            .push(")");
    }
    if let Some(name) = name {
        // lower() on both sides (Postgres's, not Rust's, so they agree); the pattern is
        // a plain prefix, which the files_name_prefix index serves.
        q.push(" AND lower(f.display_name) LIKE (lower(")
            .push_bind(escape_like(&name))
            .push(r") || '%') ESCAPE '\'");
    }
    if let Some((at, id)) = cursor {
        q.push(" AND (f.created_at, f.id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(" ORDER BY f.created_at DESC, f.id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);

    let mut tx = ctx.begin(&state.db).await?;
    let rows = q.build_query_as::<FileRow>().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    let mut items = rows
        .into_iter()
        .map(FileView::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|f| key.encode(tenant, f.created_at, f.id))
    } else {
        None
    };
    Ok(Json(FilePage { items, next_cursor }))
}

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TagCount {
    pub name: String,
    /// Live (not deleted) files carrying the tag that the caller can see.
    pub file_count: i64,
}

/// Tags with the number of files carrying them, by name. A `user` counts only its own
/// files (other users' tags would reveal their files); admins and auditors the tenant's.
#[utoipa::path(get, path = "/v1/tags", tag = "files", security(("bearer" = [])),
    responses((status = 200, body = [TagCount]), (status = 401, body = ErrorBody)))]
pub async fn tags(
    State(state): State<AppState>,
    FileReader(ctx): FileReader,
) -> Result<Json<Vec<TagCount>>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let tags: Vec<TagCount> = if policy::reads_every_file(&ctx) {
        sqlx::query_as(
            "SELECT name, file_count::bigint AS file_count FROM tags
              WHERE tenant_id = $1 ORDER BY name COLLATE \"C\"",
        )
        .bind(ctx.tenant_id.0)
        .fetch_all(&mut *tx)
        .await?
    } else {
        sqlx::query_as(
            "SELECT t.tag AS name, count(*) AS file_count
               FROM file_tags t
               JOIN files f ON f.tenant_id = t.tenant_id AND f.id = t.file_id
              WHERE t.tenant_id = $1 AND f.owner_id = $2 AND NOT f.is_deleted
              GROUP BY t.tag ORDER BY t.tag COLLATE \"C\"",
        )
        .bind(ctx.tenant_id.0)
        .bind(ctx.user_id.0)
        .fetch_all(&mut *tx)
        .await?
    };
    tx.commit().await?;
    Ok(Json(tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(escape_like("plain"), "plain");
    }
}
