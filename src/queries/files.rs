//! One file and its versions as a reader sees them (`GET /v1/files/{id}`,
//! `/v1/files/{id}/versions`, the console's file page). The file view is shared by the
//! listing (listing.rs), the history's time travel and the answers of the file commands
//! (`view_from_stream`), and cached in Redis (src/cache: cache-aside, single-flight,
//! invalidated by the files projector).
//!
//! **Who sees what** is the policy's (src/auth/policy.rs): `user` sees and changes only
//! files it owns; `admin` sees and changes every file of its tenant; `auditor` sees
//! every file and changes none. A file the caller may not see answers 404, exactly like
//! a file that does not exist, so neither ids nor existence leak.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::aggregates::file::{File, FileStatus};
use crate::auth::TenantContext;
use crate::auth::policy::{self, file_not_found};
use crate::cache::listing::{Answer, ListingKey};
use crate::cache::standing::Epoch;
use crate::commands::files::load_readable;
use crate::error::AppError;
use crate::ids::TenantId;
use crate::state::AppState;

/// A file with its current version (the newest completed one: what a download serves),
/// its latest version's status (e.g. an upload still `processing`), and its tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileView {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
    /// Time of the file's latest event (rename, tag, version progress …).
    pub updated_at: DateTime<Utc>,
    pub is_deleted: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    /// `null` until a version completes.
    pub current_version: Option<CurrentVersion>,
    /// `null` before the first upload.
    pub latest_version: Option<LatestVersion>,
    /// Sorted by byte value.
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CurrentVersion {
    pub version_number: i32,
    pub filename: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub mime_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LatestVersion {
    pub version_number: i32,
    /// uploaded, queued, processing, virus_failed, duplicate, failed or completed.
    #[schema(value_type = String)]
    pub status: FileStatus,
}

pub(crate) fn parse_status(text: &str) -> Option<FileStatus> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

/// The columns of a `FileRow` (`VIEW_SELECT` without its `FROM`), for queries that add
/// columns of their own.
macro_rules! view_columns {
    () => {
        r#"
SELECT f.id, f.owner_id, f.display_name, f.created_at, f.updated_at, f.is_deleted, f.deleted_at,
       f.latest_version, f.latest_status::text AS latest_status,
       cv.version_number AS cv_number, cv.filename AS cv_filename, cv.size_bytes AS cv_size,
       cv.sha256 AS cv_sha256, cv.mime_type AS cv_mime,
       ARRAY(SELECT ft.tag FROM file_tags ft
              WHERE ft.tenant_id = f.tenant_id AND ft.file_id = f.id
              ORDER BY ft.tag COLLATE "C") AS tags"#
    };
}

macro_rules! view_from {
    () => {
        r#"
  FROM files f
  LEFT JOIN file_versions cv
         ON cv.tenant_id = f.tenant_id AND cv.file_id = f.id AND cv.version_number = f.current_version"#
    };
}

pub(crate) const VIEW_COLUMNS: &str = view_columns!();
pub(crate) const VIEW_FROM: &str = view_from!();
/// Selects a `FileRow`; callers add `WHERE` / `ORDER BY`.
pub(crate) const VIEW_SELECT: &str = concat!(view_columns!(), view_from!());

/// A row of `VIEW_SELECT`: the file with its current version's columns flattened (all
/// `NULL` until a version completes).
#[derive(sqlx::FromRow)]
pub(crate) struct FileRow {
    id: Uuid,
    owner_id: Uuid,
    display_name: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    is_deleted: bool,
    deleted_at: Option<DateTime<Utc>>,
    latest_version: Option<i32>,
    latest_status: Option<String>,
    cv_number: Option<i32>,
    cv_filename: Option<String>,
    cv_size: Option<i64>,
    cv_sha256: Option<String>,
    cv_mime: Option<String>,
    tags: Vec<String>,
}

impl TryFrom<FileRow> for FileView {
    type Error = sqlx::Error;

    fn try_from(row: FileRow) -> Result<Self, sqlx::Error> {
        // The join's columns are all set or all NULL: a version that completed has them.
        let current_version = match (
            row.cv_number,
            row.cv_filename,
            row.cv_size,
            row.cv_sha256,
            row.cv_mime,
        ) {
            (None, ..) => None,
            (
                Some(version_number),
                Some(filename),
                Some(size_bytes),
                Some(sha256),
                Some(mime_type),
            ) => Some(CurrentVersion {
                version_number,
                filename,
                size_bytes,
                sha256,
                mime_type,
            }),
            _ => {
                return Err(sqlx::Error::Decode(
                    "a current version with NULL columns".into(),
                ));
            }
        };
        let latest_version = match (row.latest_version, row.latest_status) {
            (Some(version_number), Some(status)) => Some(LatestVersion {
                version_number,
                status: parse_status(&status).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown file_status {status:?}").into())
                })?,
            }),
            _ => None,
        };
        Ok(FileView {
            id: row.id,
            owner_id: row.owner_id,
            display_name: row.display_name,
            created_at: row.created_at,
            updated_at: row.updated_at,
            is_deleted: row.is_deleted,
            deleted_at: row.deleted_at,
            current_version,
            latest_version,
            tags: row.tags,
        })
    }
}

/// The file from the read tables, serialized as the endpoint returns it (what the cache
/// stores); `None` if the tenant has no such file or it was purged. Runs under RLS.
async fn load_view(pool: PgPool, ctx: TenantContext, id: Uuid) -> Result<Option<String>, AppError> {
    let mut tx = ctx.begin(&pool).await?;
    let row = sqlx::query_as::<_, FileRow>(&format!(
        "{VIEW_SELECT} WHERE f.tenant_id = $1 AND f.id = $2 AND NOT f.purged"
    ))
    .bind(ctx.tenant_id.0)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let Some(row) = row else { return Ok(None) };
    let view = FileView::try_from(row)?;
    Ok(Some(
        serde_json::to_string(&view).map_err(|e| AppError::Internal(e.into()))?,
    ))
}

/// The view a command's response carries, from the state the command just committed
/// (the event stream), so the writer reads its own write even before the projector has
/// caught up. Timestamps come from the stream's `recorded_at`, as the projector takes
/// them, so this equals what `GET` shows once projected.
pub(crate) async fn view_from_stream(
    pool: &PgPool,
    tenant: TenantId,
    id: Uuid,
    file: &File,
) -> Result<FileView, AppError> {
    view_from_stream_at(pool, tenant, id, file, None).await
}

/// `view_from_stream` for `file` as it was after event `until` (time travel): the
/// timestamps come from the events up to that point only.
pub(crate) async fn view_from_stream_at(
    pool: &PgPool,
    tenant: TenantId,
    id: Uuid,
    file: &File,
    until: Option<i64>,
) -> Result<FileView, AppError> {
    type Times = Option<DateTime<Utc>>;
    let (created_at, updated_at, deleted_at): (Times, Times, Times) = sqlx::query_as(
        "SELECT min(recorded_at) FILTER (WHERE event_type = 'FileCreated'),
                max(recorded_at),
                max(recorded_at) FILTER (WHERE event_type = 'Deleted')
           FROM events
          WHERE tenant_id = $1 AND aggregate_type = 'file' AND aggregate_id = $2
            AND ($3::bigint IS NULL OR sequence <= $3)",
    )
    .bind(tenant.0)
    .bind(id.to_string())
    .bind(until)
    .fetch_one(pool)
    .await?;
    let (Some(created_at), Some(updated_at), Some(owner)) = (created_at, updated_at, file.owner_id)
    else {
        return Err(file_not_found());
    };
    Ok(FileView {
        id,
        owner_id: owner.0,
        display_name: file.display_name.clone(),
        created_at,
        updated_at,
        is_deleted: file.deleted,
        deleted_at: if file.deleted { deleted_at } else { None },
        current_version: file.current_version().map(|v| CurrentVersion {
            version_number: v.number as i32,
            filename: v.filename.clone(),
            size_bytes: v.size_bytes as i64,
            sha256: v.sha256.clone(),
            mime_type: v.mime_type.clone(),
        }),
        latest_version: file.versions.last().map(|v| LatestVersion {
            version_number: v.number as i32,
            status: v.status,
        }),
        // A BTreeSet iterates in byte order, like `COLLATE "C"` above.
        tags: file.tags.iter().cloned().collect(),
    })
}

/// One file as `GET /v1/files/{id}` answers it (the console's file page too).
pub(crate) async fn file_of(
    state: &AppState,
    ctx: TenantContext,
    id: Uuid,
) -> Result<FileView, AppError> {
    let body = file_body(state, ctx, id, None).await?;
    serde_json::from_slice(&body).map_err(|e| AppError::Internal(e.into()))
}

/// The JSON body of `GET /v1/files/{id}`, the caller's right to see the file checked on
/// every answer. `prefetched`: the tenant's listing epoch when the rate limiter read it
/// for this request.
///
/// Where the body comes from, fastest first:
/// - **This instance's memory**, under the tenant's listing epoch, like a listing
///   (src/cache/listing.rs): the body is read only from the files projector's tables,
///   whose every batch moves the epoch before its rows can be read.
/// - **The Redis cache** (src/cache/mod.rs, single-flight: a cold stampede costs one
///   database read), whose answer is remembered when the epoch was trusted. That is
///   safe because the files projector deletes a batch's files from Redis *before* it
///   ends the batch's epoch change (`projections::files`), and the cache's generation
///   check keeps a read that started before the deletion from writing the old body
///   back: once a reader sees the new epoch, Redis holds no body older than it.
pub(crate) async fn file_body(
    state: &AppState,
    ctx: TenantContext,
    id: Uuid,
    prefetched: Option<Epoch>,
) -> Result<Bytes, AppError> {
    let key = ListingKey {
        tenant: ctx.tenant_id.0,
        answer: Answer::File(id),
    };
    let epoch = state.listings.epoch(key.tenant, prefetched).await;
    let remembered = match &epoch {
        Epoch::Trusted(token) => state.listings.remembered(&key, token),
        Epoch::Untrusted => None,
    };
    let body = match remembered {
        Some(body) => {
            state.metrics.file_memory_hits.inc();
            body
        }
        None => {
            let pool = state.db.clone();
            let body = state
                .file_cache
                .get_or_load(ctx.tenant_id, id, move || load_view(pool, ctx, id))
                .await?
                .ok_or_else(file_not_found)?;
            let body = Bytes::copy_from_slice(body.as_bytes());
            if let Epoch::Trusted(token) = epoch {
                state.listings.remember(key, token, body.clone());
            }
            body
        }
    };
    let owner = match serde_json::from_slice::<Owner>(&body) {
        Ok(owner) => owner.owner_id,
        Err(err) => {
            // A body cached in Redis by a build with another `FileView` shape: answer
            // from Postgres; the entry expires with its TTL.
            tracing::warn!(error = %err, "cached file body does not parse; reading Postgres");
            let body = load_view(state.db.clone(), ctx, id).await?;
            let body = Bytes::from(body.ok_or_else(file_not_found)?);
            let owner: Owner =
                serde_json::from_slice(&body).map_err(|e| AppError::Internal(e.into()))?;
            authorize_view(state, &ctx, id, owner.owner_id).await?;
            return Ok(body);
        }
    };
    authorize_view(state, &ctx, id, owner).await?;
    Ok(body)
}

/// The one field of a file's body that the policy needs.
#[derive(Deserialize)]
struct Owner {
    owner_id: Uuid,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionView {
    pub version_number: i32,
    /// uploaded, queued, processing, virus_failed, duplicate, failed or completed.
    pub status: String,
    pub filename: String,
    /// Declared at upload; the detected type once completed.
    pub mime_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    /// Set when the bytes repeat an earlier completed version: of this file, or of another
    /// file the caller may read (otherwise `null`, so no one learns that another user
    /// holds the same bytes).
    pub duplicate_of: Option<DuplicateOf>,
    /// Set when this version restores an older one.
    pub restored_from_version: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A row of the versions query: the version, and the owner and purge state of the
/// file it duplicates (for the policy's decision whether to name that file).
#[derive(sqlx::FromRow)]
struct VersionRow {
    version_number: i32,
    status: String,
    filename: String,
    mime_type: String,
    size_bytes: i64,
    sha256: String,
    duplicate_of_file: Option<Uuid>,
    duplicate_of_version: Option<i32>,
    original_owner: Option<Uuid>,
    original_purged: bool,
    restored_from_version: Option<i32>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DuplicateOf {
    pub file_id: Uuid,
    pub version_number: i32,
}

/// Every version of a file the caller may read, oldest first (the API and the console).
pub(crate) async fn versions_of(
    state: &AppState,
    ctx: &TenantContext,
    id: Uuid,
) -> Result<Vec<VersionView>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let owner: Option<Uuid> = sqlx::query_scalar(
        "SELECT owner_id FROM files WHERE tenant_id = $1 AND id = $2 AND NOT purged",
    )
    .bind(ctx.tenant_id.0)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(owner) = owner else {
        return Err(file_not_found());
    };
    if !policy::can_read_owned_by(ctx, owner) {
        // A grantee: decided from the log, outside this transaction.
        tx.commit().await?;
        authorize_view(state, ctx, id, owner).await?;
        tx = ctx.begin(&state.db).await?;
    }
    let rows: Vec<VersionRow> = sqlx::query_as(
        "SELECT v.version_number, v.status::text AS status, v.filename, v.mime_type, v.size_bytes,
                v.sha256, v.duplicate_of_file, v.duplicate_of_version, o.owner_id AS original_owner,
                coalesce(o.purged, true) AS original_purged, v.restored_from_version,
                v.created_at, v.updated_at
           FROM file_versions v
           LEFT JOIN files o ON o.tenant_id = v.tenant_id AND o.id = v.duplicate_of_file
          WHERE v.tenant_id = $1 AND v.file_id = $2
          ORDER BY v.version_number",
    )
    .bind(ctx.tenant_id.0)
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let versions = rows
        .into_iter()
        .map(|r| {
            let duplicate_of = match (r.duplicate_of_file, r.duplicate_of_version) {
                (Some(file_id), Some(version_number))
                    if policy::can_see_duplicate_of(
                        ctx,
                        id,
                        file_id,
                        r.original_owner,
                        r.original_purged,
                    ) =>
                {
                    Some(DuplicateOf {
                        file_id,
                        version_number,
                    })
                }
                _ => None,
            };
            VersionView {
                version_number: r.version_number,
                status: r.status,
                filename: r.filename,
                mime_type: r.mime_type,
                size_bytes: r.size_bytes,
                sha256: r.sha256,
                duplicate_of,
                restored_from_version: r.restored_from_version,
                created_at: r.created_at,
                updated_at: r.updated_at,
            }
        })
        .collect();
    Ok(versions)
}

/// For read-table answers (`GET /v1/files/{id}`, versions): the owner's readers pass
/// at once; anyone else only with a grant in the log (`policy::can_read`), so a revoked
/// grant stops working on the next request, not when the projection catches up.
pub(crate) async fn authorize_view(
    state: &AppState,
    ctx: &TenantContext,
    id: Uuid,
    owner: Uuid,
) -> Result<(), AppError> {
    if policy::can_read_owned_by(ctx, owner) {
        return Ok(());
    }
    load_readable(state, ctx, id).await.map(|_| ())
}
