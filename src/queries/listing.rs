//! The listing (`GET /v1/files`, the console's Files page: search, filters, sorts, keyset
//! pagination) and the tag counts (`GET /v1/tags`).
//!
//! - `q`: a case-insensitive substring of the display name or of a tag, served by the
//!   trigram indexes `files_name_trgm` and `file_tags_trgm` (migrations/0040_search.sql;
//!   the plan on 100k files is in docs/schema.md);
//! - `sort` (`created`, `updated`, `name`, `size`) and `order` (`asc`, `desc`); default
//!   newest first. Ties are broken by id, so the order is total;
//! - `tag` (repeatable) with `tag_mode=all` (default: every tag) or `any`;
//! - unknown parameters are a 400, never ignored.
//!
//! The cursor is the last row's (sort key, id), sealed with the sort it belongs to
//! (src/queries/cursor.rs). Keyset paging never skips or repeats a row while files are added
//! or removed between pages; a row whose key changes between pages (a rename under
//! `sort=name`) moves to where its new key sorts.

use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};

use crate::auth::TenantContext;
use crate::auth::policy;
use crate::error::AppError;
use crate::queries::cursor::{CursorKey, SortedCursor};
use crate::queries::files::{FileRow, FileView, VIEW_COLUMNS, VIEW_FROM, parse_status};
use crate::queries::page_limit;
use crate::state::AppState;

/// Longer than any display name (255 bytes): such a prefix can match nothing.
const MAX_NAME_PREFIX: usize = 255;
/// More tags than a file can sensibly be filtered by.
const MAX_TAG_FILTERS: usize = 20;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `next_cursor` of the previous page (of the same `sort` and `order`).
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Only files carrying this tag; repeat for several (`tag=a&tag=b`), combined by
    /// `tag_mode`. At most 20.
    #[serde(default)]
    #[param(max_items = 20, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub tag: Vec<String>,
    /// `all` (default): files carrying every `tag`; `any`: at least one.
    #[param(pattern = "^(all|any)$")]
    pub tag_mode: Option<String>,
    /// Only files whose latest version has this status.
    #[param(pattern = "^(|uploaded|queued|processing|virus_failed|duplicate|failed|completed)$")]
    pub status: Option<String>,
    /// Case-insensitive display-name prefix (`%` and `_` match themselves).
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub name: Option<String>,
    /// Search: a case-insensitive substring of the display name or of one of the tags
    /// (`%` and `_` match themselves). At most 255 bytes.
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub q: Option<String>,
    /// `created` (default), `updated`, `name` (case-insensitive) or `size` (of the
    /// current version; files without one sort as smallest).
    #[param(pattern = "^(created|updated|name|size)$")]
    pub sort: Option<String>,
    /// `desc` (default for `created`, `updated`, `size`) or `asc` (default for `name`).
    #[param(pattern = "^(asc|desc)$")]
    pub order: Option<String>,
    /// `true`: only soft-deleted files (the trash). Default: only live files.
    pub deleted: Option<bool>,
    /// `true`: only files others shared with the caller (or with its role), instead of
    /// the caller's own (or, for admins and auditors, the tenant's).
    pub shared_with_me: Option<bool>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortKey {
    Created,
    Updated,
    Name,
    Size,
}

/// What a listing is ordered by.
#[derive(Debug, Clone, Copy)]
struct Sort {
    key: SortKey,
    descending: bool,
}

impl Sort {
    fn parse(sort: Option<&str>, order: Option<&str>) -> Result<Self, AppError> {
        let key = match sort.unwrap_or("created") {
            "created" => SortKey::Created,
            "updated" => SortKey::Updated,
            "name" => SortKey::Name,
            "size" => SortKey::Size,
            _ => {
                return Err(AppError::BadRequest(
                    "sort must be one of created, updated, name, size".into(),
                ));
            }
        };
        let descending = match order {
            None => key != SortKey::Name,
            Some("desc") => true,
            Some("asc") => false,
            Some(_) => return Err(AppError::BadRequest("order must be asc or desc".into())),
        };
        Ok(Sort { key, descending })
    }

    /// `<key>:<direction>`, as sealed into cursors.
    fn label(self) -> String {
        let key = match self.key {
            SortKey::Created => "created",
            SortKey::Updated => "updated",
            SortKey::Name => "name",
            SortKey::Size => "size",
        };
        format!("{key}:{}", if self.descending { "desc" } else { "asc" })
    }

    /// The SQL expression rows are ordered by (then by id). Names compare by their
    /// lower-case bytes (`COLLATE "C"`), so the order never depends on the locale.
    fn expr(self) -> &'static str {
        match self.key {
            SortKey::Created => "f.created_at",
            SortKey::Updated => "f.updated_at",
            SortKey::Name => "(lower(f.display_name) COLLATE \"C\")",
            SortKey::Size => "coalesce(f.size_bytes, -1)",
        }
    }

    /// The row's value of the key, as a cursor holds it.
    fn value_of(self, view: &FileView, sort_name: &str, sort_size: i64) -> String {
        match self.key {
            SortKey::Created => view.created_at.timestamp_micros().to_string(),
            SortKey::Updated => view.updated_at.timestamp_micros().to_string(),
            SortKey::Name => sort_name.to_string(),
            SortKey::Size => sort_size.to_string(),
        }
    }

    /// `AND (key, id) < / > (cursor)`: rows after the cursor in this order.
    fn push_after(
        self,
        q: &mut QueryBuilder<'_, Postgres>,
        cursor: SortedCursor,
    ) -> Result<(), AppError> {
        let invalid = || AppError::BadRequest("invalid cursor".into());
        q.push(format_args!(" AND ({}, f.id) ", self.expr()));
        q.push(if self.descending { "< (" } else { "> (" });
        match self.key {
            SortKey::Created | SortKey::Updated => {
                let at = cursor
                    .value
                    .parse::<i64>()
                    .ok()
                    .and_then(chrono::DateTime::from_timestamp_micros)
                    .ok_or_else(invalid)?;
                q.push_bind(at);
            }
            SortKey::Name => {
                q.push_bind(cursor.value).push(" COLLATE \"C\"");
            }
            SortKey::Size => {
                q.push_bind(cursor.value.parse::<i64>().map_err(|_| invalid())?);
            }
        }
        q.push(", ").push_bind(cursor.id).push(")");
        Ok(())
    }
}

/// A listed file with the values its sort keys are computed from in SQL.
#[derive(sqlx::FromRow)]
struct ListedRow {
    #[sqlx(flatten)]
    file: FileRow,
    sort_name: String,
    sort_size: i64,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// The files `ctx` may see, filtered, sorted and paged as `params` say.
pub(crate) async fn list_files(
    state: &AppState,
    ctx: TenantContext,
    fresh: bool,
    params: ListParams,
) -> Result<FilePage, AppError> {
    let limit = page_limit(params.limit)?;
    let sort = Sort::parse(params.sort.as_deref(), params.order.as_deref())?;
    let key = CursorKey::new(state.config.jwt_secret.expose());
    let tenant = ctx.tenant_id.0;
    let cursor = params
        .cursor
        .as_deref()
        .map(|c| key.decode_sorted(tenant, &sort.label(), c))
        .transpose()?;
    let status = match non_empty(params.status) {
        Some(s) => Some(parse_status(&s).ok_or_else(|| {
            AppError::BadRequest(
                "status must be one of uploaded, queued, processing, virus_failed, duplicate, failed, completed".into(),
            )
        })?),
        None => None,
    };
    let name = non_empty(params.name);
    if name.as_ref().is_some_and(|n| n.len() > MAX_NAME_PREFIX) {
        return Err(AppError::BadRequest("name prefix is too long".into()));
    }
    let search = non_empty(params.q);
    if search.as_ref().is_some_and(|n| n.len() > MAX_NAME_PREFIX) {
        return Err(AppError::BadRequest("q is too long".into()));
    }
    // Counted as sent, before empty and repeated values are dropped: the limit is the
    // document's `maxItems`, and a request breaking it is refused whatever it holds.
    if params.tag.len() > MAX_TAG_FILTERS {
        return Err(AppError::BadRequest(format!(
            "at most {MAX_TAG_FILTERS} tag filters"
        )));
    }
    let mut tags: Vec<String> = params.tag.into_iter().filter(|t| !t.is_empty()).collect();
    tags.sort();
    tags.dedup();
    let match_any = match params.tag_mode.as_deref() {
        // An empty value is refused like any other outside the schema's `all|any`.
        None | Some("all") => false,
        Some("any") => true,
        Some(_) => return Err(AppError::BadRequest("tag_mode must be all or any".into())),
    };

    // Built per attempt: a read that failed on a replica runs again on the primary.
    let build = || -> Result<QueryBuilder<'_, Postgres>, AppError> {
        let mut q = QueryBuilder::<Postgres>::new(VIEW_COLUMNS);
        q.push(", lower(f.display_name) AS sort_name, coalesce(f.size_bytes, -1) AS sort_size");
        q.push(VIEW_FROM);
        // RLS limits rows to the tenant; naming it too lets the planner use the
        // (tenant_id, [owner_id,] is_deleted, created_at DESC, id DESC) indexes.
        q.push(" WHERE f.tenant_id = ").push_bind(tenant);
        q.push(" AND NOT f.purged AND f.is_deleted = ")
            .push_bind(params.deleted.unwrap_or(false));
        if params.shared_with_me == Some(true) {
            q.push(" AND f.owner_id <> ").push_bind(ctx.user_id.0);
            q.push(" AND f.id IN (SELECT g.file_id FROM file_grants g WHERE g.tenant_id = ")
                .push_bind(tenant)
                .push(" AND (g.user_id = ")
                .push_bind(ctx.user_id.0)
                .push(" OR g.role = ")
                .push_bind(ctx.role.as_str())
                .push("))");
        } else if !policy::reads_every_file(&ctx) {
            q.push(" AND f.owner_id = ").push_bind(ctx.user_id.0);
        }
        if let Some(status) = status {
            q.push(" AND f.latest_status = ")
                .push_bind(status.as_str())
                .push("::file_status");
        }
        if !tags.is_empty() {
            let wanted = if match_any { 1 } else { tags.len() as i64 };
            q.push(
                " AND (SELECT count(*) FROM file_tags t WHERE t.tenant_id = f.tenant_id AND t.file_id = f.id AND t.tag = ANY(",
            )
            .push_bind(tags.clone())
            .push(")) >= ")
            .push_bind(wanted);
        }
        if let Some(name) = &name {
            // lower() on both sides (Postgres's, not Rust's, so they agree); the pattern is
            // a plain prefix, which the files_name_prefix index serves.
            q.push(" AND lower(f.display_name) LIKE (lower(")
                .push_bind(escape_like(name))
                .push(r") || '%') ESCAPE '\'");
        }
        if let Some(search) = &search {
            push_search(&mut q, search);
        }
        if let Some(cursor) = &cursor {
            sort.push_after(&mut q, cursor.clone())?;
        }
        let direction = if sort.descending { "DESC" } else { "ASC" };
        q.push(format_args!(
            " ORDER BY {} {direction}, f.id {direction} LIMIT ",
            sort.expr()
        ))
        .push_bind(i64::from(limit) + 1);
        Ok(q)
    };

    let rows = state
        .reads
        .read(fresh, |pool| {
            let q = build();
            async move {
                let mut q = q?;
                let mut tx = ctx.begin(&pool).await?;
                let rows = q.build_query_as::<ListedRow>().fetch_all(&mut *tx).await?;
                tx.commit().await?;
                Ok(rows)
            }
        })
        .await?;
    let more = rows.len() > limit as usize;
    let mut items = Vec::with_capacity(rows.len().min(limit as usize));
    let mut next_cursor = None;
    for (i, row) in rows.into_iter().take(limit as usize).enumerate() {
        let view = FileView::try_from(row.file)?;
        if more && i + 1 == limit as usize {
            next_cursor = Some(key.encode_sorted(
                tenant,
                &SortedCursor {
                    sort: sort.label(),
                    id: view.id,
                    value: sort.value_of(&view, &row.sort_name, row.sort_size),
                },
            ));
        }
        items.push(view);
    }
    Ok(FilePage { items, next_cursor })
}

/// `AND f.id IN (files whose name or a tag contains `search`)`: the ids come from
/// `chronicle_search_file_ids` (migrations/0040_search.sql), which lets the trigram
/// indexes serve the `LIKE` (under the tenant policy they could not) and returns the
/// caller's tenant's files only.
fn push_search(q: &mut QueryBuilder<'_, Postgres>, search: &str) {
    q.push(" AND f.id IN (SELECT chronicle_search_file_ids(lower(")
        .push_bind(format!("%{}%", escape_like(search)))
        .push(")))");
}

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TagCount {
    pub name: String,
    /// Live (not deleted) files carrying the tag that the caller can see.
    pub file_count: i64,
}

/// Tags with the number of files carrying them that `ctx` can see, by name.
pub(crate) async fn tags_of(
    state: &AppState,
    ctx: TenantContext,
    fresh: bool,
) -> Result<Vec<TagCount>, AppError> {
    let tags = state
        .reads
        .read(fresh, |pool| async move {
            let mut tx = ctx.begin(&pool).await?;
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
            Ok(tags)
        })
        .await?;
    Ok(tags)
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
