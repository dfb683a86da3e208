//! `GET /v1/files` (keyset pagination, filters) and `GET /v1/tags`.
//!
//! Order is `created_at DESC, id DESC`; the cursor is the last row's (created_at, id),
//! opaque to clients (base64url). Keyset paging never skips or repeats a row while files
//! are added or removed between pages: newer files sort before the cursor, so a paging
//! client simply does not see them until it starts again.

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::extract::ApiQuery;
use super::files::{FileView, VIEW_SELECT, parse_status, sees_all, view_from_row};
use crate::auth::TenantContext;
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

/// Bytes of HMAC-SHA256 kept in a cursor: enough that a forged cursor is refused.
const CURSOR_TAG_LEN: usize = 12;

/// Signs cursors, so a tampered one is refused (400) instead of silently paging from
/// wherever it points. Keyed by a hash of `JWT_SECRET` and bound to the tenant.
pub(super) struct CursorKey([u8; 32]);

impl CursorKey {
    pub(super) fn new(secret: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"chronicle files cursor v1\0");
        h.update(secret.as_bytes());
        Self(h.finalize().into())
    }

    /// HMAC-SHA256 (RFC 2104) over the tenant and the payload.
    fn tag(&self, tenant: Uuid, payload: &[u8]) -> [u8; CURSOR_TAG_LEN] {
        let pad = |byte: u8| {
            let mut block = [byte; 64];
            block.iter_mut().zip(self.0).for_each(|(b, k)| *b ^= k);
            block
        };
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(tenant.as_bytes())
            .chain_update(payload)
            .finalize();
        let outer = Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize();
        let mut tag = [0u8; CURSOR_TAG_LEN];
        tag.copy_from_slice(&outer[..CURSOR_TAG_LEN]);
        tag
    }

    /// `text` plus its tag, in base64url: a cursor the client can hand back but not forge.
    pub(super) fn seal(&self, tenant: Uuid, text: &str) -> String {
        let mut bytes = text.as_bytes().to_vec();
        let tag = self.tag(tenant, &bytes);
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The text of a cursor `seal` made for this tenant; anything else is a 400.
    pub(super) fn open(&self, tenant: Uuid, cursor: &str) -> Result<String, AppError> {
        let invalid = || AppError::BadRequest("invalid cursor".into());
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let split = bytes
            .len()
            .checked_sub(CURSOR_TAG_LEN)
            .ok_or_else(invalid)?;
        let (payload, tag) = bytes.split_at(split);
        // Compare every byte: no early exit whose timing would help forge a tag.
        let expected = self.tag(tenant, payload);
        if expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return Err(invalid());
        }
        String::from_utf8(payload.to_vec()).map_err(|_| invalid())
    }

    /// `<created_at in µs since the epoch>:<id>`, sealed.
    pub(super) fn encode(&self, tenant: Uuid, created_at: DateTime<Utc>, id: Uuid) -> String {
        self.seal(
            tenant,
            &format!("{}:{}", created_at.timestamp_micros(), id.simple()),
        )
    }

    pub(super) fn decode(
        &self,
        tenant: Uuid,
        cursor: &str,
    ) -> Result<(DateTime<Utc>, Uuid), AppError> {
        let invalid = || AppError::BadRequest("invalid cursor".into());
        let text = self.open(tenant, cursor)?;
        let (micros, id) = text.split_once(':').ok_or_else(invalid)?;
        let at = micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(invalid)?;
        let id = Uuid::try_parse(id).map_err(|_| invalid())?;
        Ok((at, id))
    }
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
    ctx: TenantContext,
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
    if !sees_all(&ctx) {
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
    let rows = q.build().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    let mut items = rows
        .iter()
        .map(view_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|f| key.encode(tenant, f.created_at, f.id))
    } else {
        None
    };
    Ok(Json(FilePage { items, next_cursor }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
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
    ctx: TenantContext,
) -> Result<Json<Vec<TagCount>>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let rows = if sees_all(&ctx) {
        sqlx::query(
            "SELECT name, file_count::bigint AS file_count FROM tags
              WHERE tenant_id = $1 ORDER BY name COLLATE \"C\"",
        )
        .bind(ctx.tenant_id.0)
        .fetch_all(&mut *tx)
        .await?
    } else {
        sqlx::query(
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
    let tags = rows
        .iter()
        .map(|r| {
            Ok(TagCount {
                name: r.try_get("name")?,
                file_count: r.try_get("file_count")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_tampering_is_refused() {
        let key = CursorKey::new("secret");
        let tenant = Uuid::now_v7();
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let cursor = key.encode(tenant, at, id);
        assert_eq!(key.decode(tenant, &cursor).unwrap(), (at, id));
        // Any change to the payload breaks the tag.
        let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        bytes[3] ^= 1;
        let flipped = URL_SAFE_NO_PAD.encode(&bytes);
        let forged = URL_SAFE_NO_PAD.encode(format!("{}:{}", 1, id.simple()));
        for bad in [
            "",
            "not base64!",
            "AAAA",
            &flipped,
            &forged,
            &cursor[..cursor.len() - 2],
        ] {
            assert!(key.decode(tenant, bad).is_err(), "accepted {bad:?}");
        }
        assert!(
            key.decode(Uuid::now_v7(), &cursor).is_err(),
            "another tenant's cursor"
        );
        assert!(
            CursorKey::new("other").decode(tenant, &cursor).is_err(),
            "another key"
        );
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(escape_like("plain"), "plain");
    }
}
