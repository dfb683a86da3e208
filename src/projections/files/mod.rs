//! `files`, `file_versions`, `tags`, `file_tags`, `file_grants`: the read side of the
//! File aggregate. `file_grants` serves `GET /v1/files?shared_with_me=true`; whether a
//! grant lets a request through is decided from the log (src/auth/policy.rs), never
//! from this table, so a revocation is not delayed by the projection.
//!
//! The events of an upload's life (created, uploaded, processing, completed, failed …)
//! are folded per row and written a few statements per batch (`batch.rs`); the rarer
//! ones that read rows (tags, delete, restore, purge, sharing, rename, prune) are
//! written one by one, after what the batch folded before them. Every value is taken
//! from the events or their `recorded_at`, so a rebuild reproduces the rows exactly.
//! `tags.file_count` counts files that carry the tag and are not deleted; a tag whose
//! count reaches 0 disappears.
//! `file_versions.processed_at` is the verdict event's time (completed, virus, duplicate
//! of this file, last failed attempt), cleared by a retry: the end of the processing
//! latency the `analytics` views measure (migrations/0015_analyst.sql).
//! Streams whose id is not a UUID (tests and benchmarks write such streams; the API
//! never does) are not files a client can address: they are skipped with a warning
//! rather than blocking the projector forever.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use sqlx::PgConnection;
use uuid::Uuid;

mod batch;

use batch::{Pending, Touched};

use super::{EventRecord, Projector, Reactions};
use crate::aggregates::FileEvent;
use crate::aggregates::file::{FileStatus, Grantee};
use crate::cache::listing;
use crate::cache::standing::StandingEpochs;

#[derive(Default)]
pub struct FilesProjector {
    /// Live instances delete the `GET /v1/files/{id}` cache entries of the files each
    /// committed batch touched; rebuilds and CLI runs have none.
    reactions: Option<Reactions>,
    /// Live instances announce each batch in the listing epochs of the tenants it
    /// touches, before it commits, and end it after (src/cache/listing.rs).
    listings: Option<StandingEpochs>,
    /// Batches (by their first event's position) whose announcement succeeded: only
    /// those are ended; the others are announced again after their commit.
    announced: Mutex<HashSet<i64>>,
}

impl FilesProjector {
    pub fn live(reactions: Reactions) -> Self {
        let listings = listing::epochs(reactions.redis.clone(), &reactions.key_prefix);
        Self {
            reactions: Some(reactions),
            listings: Some(listings),
            announced: Mutex::default(),
        }
    }

    /// Whether `before_commit` announced the batch `events` (and forgets it).
    fn was_announced(&self, events: &[EventRecord]) -> bool {
        let Some(first) = events.first() else {
            return false;
        };
        let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        announced.remove(&first.position.global_position)
    }

    /// Ends the batch's announcement, or, if it could not be announced, announces (and
    /// ends) a change after the commit, retried in the background until Redis answers:
    /// the epochs move past every listing remembered before the batch.
    async fn end_or_announce_late(&self, events: &[EventRecord]) {
        let Some(listings) = &self.listings else {
            return;
        };
        let tenants = tenants_changed(events);
        if self.was_announced(events) {
            listings.end_changes(&tenants).await;
            return;
        }
        if tenants.is_empty() {
            return;
        }
        let listings = listings.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            // After `MAX_AGE` nothing remembered before the batch is served anyway.
            while started.elapsed() < listing::MAX_AGE {
                if listings.begin_changes(&tenants).await.is_ok() {
                    listings.end_changes(&tenants).await;
                    return;
                }
                tokio::time::sleep(LATE_ANNOUNCEMENT_RETRY).await;
            }
        });
    }
}

/// How often a late announcement is retried while Redis does not answer.
const LATE_ANNOUNCEMENT_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// The tenants whose files `events` change (every file event moves at least its file's
/// `updated_at`, so every one can change a listing), each once.
fn tenants_changed(events: &[EventRecord]) -> Vec<Uuid> {
    let mut tenants: Vec<Uuid> = events
        .iter()
        .filter(|e| e.aggregate_type == "file")
        .map(|e| e.tenant_id)
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    tenants
}

#[async_trait]
impl Projector for FilesProjector {
    fn name(&self) -> &'static str {
        "files"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["files", "file_versions", "tags", "file_tags", "file_grants"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> Result<(), sqlx::Error> {
        let (mut touched, mut pending) = (Touched::default(), Pending::default());
        for e in events.iter().filter(|e| e.aggregate_type == "file") {
            let Ok(file_id) = Uuid::parse_str(&e.aggregate_id) else {
                tracing::warn!(stream = %e.aggregate_id, "file stream id is not a UUID; not projected");
                continue;
            };
            let event: FileEvent = serde_json::from_str(&e.payload)
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
            touched.note(e, file_id, changes_versions(&event));
            if !pending.fold(e, file_id, &event) {
                pending.flush(conn).await?;
                apply_file(conn, e, file_id, event).await?;
            }
        }
        pending.flush(conn).await?;
        touched.apply(conn).await
    }

    /// Announces the batch in its tenants' listing epochs. When Redis does not answer,
    /// the batch still commits (the read model must not wait for Redis: file reads do
    /// not need it) and is announced late, after its commit (docs/listing-cache.md,
    /// "When Redis is down or slow").
    async fn before_commit(&self, events: &[EventRecord]) -> anyhow::Result<()> {
        let (Some(listings), Some(first)) = (&self.listings, events.first()) else {
            return Ok(());
        };
        let tenants = tenants_changed(events);
        if tenants.is_empty() {
            return Ok(());
        }
        match listings.begin_changes(&tenants).await {
            Ok(()) => {
                let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
                announced.insert(first.position.global_position);
            }
            Err(err) => tracing::warn!(
                error = %err,
                ?tenants,
                "listing epochs not announced; announcing after the commit"
            ),
        }
        Ok(())
    }

    /// The commit's outcome is unknown: end the announcement, or announce late.
    async fn commit_failed(&self, events: &[EventRecord]) {
        self.end_or_announce_late(events).await;
    }

    /// Deletes the batch's files from the Redis cache, then ends the announcement: in
    /// that order, a reader that sees the epoch's new token finds no body older than the
    /// batch in Redis, so it may remember what Redis answers under that token
    /// (`queries::files::file_body`).
    async fn after_commit(&self, events: &[EventRecord]) {
        if let Some(reactions) = &self.reactions {
            let mut files: Vec<(Uuid, Uuid)> = events
                .iter()
                .filter(|e| e.aggregate_type == "file")
                .filter_map(|e| Some((e.tenant_id, Uuid::parse_str(&e.aggregate_id).ok()?)))
                .collect();
            files.sort_unstable();
            files.dedup();
            crate::cache::invalidate_files(&reactions.redis, &reactions.key_prefix, &files).await;
        }
        self.end_or_announce_late(events).await;
    }
}

/// Events that add a version or move a version's status.
fn changes_versions(event: &FileEvent) -> bool {
    matches!(
        event,
        FileEvent::Uploaded { .. }
            | FileEvent::VersionRestored { .. }
            | FileEvent::ProcessingStarted { .. }
            | FileEvent::DuplicateDetected { .. }
            | FileEvent::VirusFailed { .. }
            | FileEvent::ProcessingFailed { .. }
            | FileEvent::VersionCompleted { .. }
            | FileEvent::VersionPruned { .. }
    )
}

async fn apply_file(
    conn: &mut PgConnection,
    e: &EventRecord,
    file_id: Uuid,
    event: FileEvent,
) -> Result<(), sqlx::Error> {
    let (tenant, at) = (e.tenant_id, e.recorded_at);
    match event {
        FileEvent::VersionRestored {
            version_number,
            from_version,
            filename,
            blob,
        } => {
            sqlx::query(
                "INSERT INTO file_versions (tenant_id, file_id, version_number, status, filename, mime_type,
                                            size_bytes, sha256, storage_key, restored_from_version,
                                            created_at, updated_at)
                 VALUES ($1, $2, $3, $5::file_status, $6, $7, $8, $9, $10, $11, $4, $4)",
            )
            .bind(tenant)
            .bind(file_id)
            .bind(version_number as i32)
            .bind(at)
            .bind(FileStatus::Completed.as_str())
            .bind(filename)
            .bind(blob.detected_mime)
            .bind(blob.size_bytes as i64)
            .bind(blob.sha256)
            .bind(blob.storage_key)
            .bind(from_version as i32)
            .execute(&mut *conn)
            .await?;
            set_current(conn, e, file_id, version_number, blob.size_bytes).await?;
        }
        FileEvent::VersionPruned { version_number } => {
            // Retention: the version leaves the history (GET /versions); the log keeps
            // its events. Only versions older than a completed one are pruned, so the
            // current and latest versions never change here.
            sqlx::query(
                "DELETE FROM file_versions WHERE tenant_id = $1 AND file_id = $2 AND version_number = $3",
            )
            .bind(tenant)
            .bind(file_id)
            .bind(version_number as i32)
            .execute(conn)
            .await?;
        }
        FileEvent::Renamed { display_name } => {
            sqlx::query("UPDATE files SET display_name = $3 WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(file_id)
                .bind(display_name)
                .execute(conn)
                .await?;
        }
        FileEvent::Tagged { tag } => {
            sqlx::query("INSERT INTO file_tags (tenant_id, file_id, tag) VALUES ($1, $2, $3)")
                .bind(tenant)
                .bind(file_id)
                .bind(&tag)
                .execute(&mut *conn)
                .await?;
            // Tags change only on live files (the aggregate refuses them on deleted ones).
            sqlx::query(
                "INSERT INTO tags (tenant_id, name, file_count) VALUES ($1, $2, 1)
                 ON CONFLICT (tenant_id, name) DO UPDATE SET file_count = tags.file_count + 1",
            )
            .bind(tenant)
            .bind(&tag)
            .execute(conn)
            .await?;
        }
        FileEvent::Untagged { tag } => {
            sqlx::query("DELETE FROM file_tags WHERE tenant_id = $1 AND file_id = $2 AND tag = $3")
                .bind(tenant)
                .bind(file_id)
                .bind(&tag)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "UPDATE tags SET file_count = file_count - 1 WHERE tenant_id = $1 AND name = $2",
            )
            .bind(tenant)
            .bind(&tag)
            .execute(&mut *conn)
            .await?;
            drop_unused_tags(conn, tenant).await?;
        }
        FileEvent::Deleted => {
            count_file_tags(conn, tenant, file_id, false).await?;
            sqlx::query(
                "UPDATE files SET is_deleted = true, deleted_at = $3 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(file_id)
            .bind(at)
            .execute(conn)
            .await?;
        }
        FileEvent::Restored => {
            count_file_tags(conn, tenant, file_id, true).await?;
            sqlx::query(
                "UPDATE files SET is_deleted = false, deleted_at = NULL WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(file_id)
            .execute(conn)
            .await?;
        }
        FileEvent::Purged => {
            let deleted: Option<bool> =
                sqlx::query_scalar("SELECT is_deleted FROM files WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant)
                    .bind(file_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            if deleted == Some(false) {
                count_file_tags(conn, tenant, file_id, false).await?;
            }
            for table in ["file_tags", "file_grants"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE tenant_id = $1 AND file_id = $2"
                ))
                .bind(tenant)
                .bind(file_id)
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query(
                "UPDATE files SET purged = true, is_deleted = true, deleted_at = coalesce(deleted_at, $3)
                  WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(file_id)
            .bind(at)
            .execute(conn)
            .await?;
        }
        FileEvent::FileShared { grantee, access } => {
            let (key, user, role) = grantee_columns(grantee);
            sqlx::query(
                "INSERT INTO file_grants (tenant_id, file_id, grantee, user_id, role, access, granted_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (tenant_id, file_id, grantee)
                 DO UPDATE SET access = EXCLUDED.access, granted_at = EXCLUDED.granted_at",
            )
            .bind(tenant)
            .bind(file_id)
            .bind(key)
            .bind(user)
            .bind(role)
            .bind(access.as_str())
            .bind(at)
            .execute(conn)
            .await?;
        }
        FileEvent::FileUnshared { grantee } => {
            sqlx::query(
                "DELETE FROM file_grants WHERE tenant_id = $1 AND file_id = $2 AND grantee = $3",
            )
            .bind(tenant)
            .bind(file_id)
            .bind(grantee_columns(grantee).0)
            .execute(conn)
            .await?;
        }
        // Written by `batch::Pending`, which takes every one of these.
        FileEvent::FileCreated { .. }
        | FileEvent::Uploaded { .. }
        | FileEvent::ProcessingStarted { .. }
        | FileEvent::ProcessingRetried { .. }
        | FileEvent::Hashed { .. }
        | FileEvent::Optimized { .. }
        | FileEvent::DuplicateDetected { .. }
        | FileEvent::VirusFailed { .. }
        | FileEvent::ProcessingFailed { .. }
        | FileEvent::VersionCompleted { .. }
        | FileEvent::LegalHoldPlaced { .. }
        | FileEvent::LegalHoldReleased
        | FileEvent::LinkCreated(_)
        | FileEvent::LinkRevoked { .. } => {}
    }
    Ok(())
}

/// A grant's key (`user:<id>` or `role:<name>`) and its user or role column.
fn grantee_columns(grantee: Grantee) -> (String, Option<Uuid>, Option<&'static str>) {
    match grantee {
        Grantee::User(user) => (format!("user:{}", user.0), Some(user.0), None),
        Grantee::Role(role) => (format!("role:{}", role.as_str()), None, Some(role.as_str())),
    }
}

/// The file's current version is its newest completed one; completions may arrive
/// out of version order when versions are processed in parallel.
async fn set_current(
    conn: &mut PgConnection,
    e: &EventRecord,
    file_id: Uuid,
    version_number: u32,
    size_bytes: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE files SET current_version = $3, size_bytes = $4
          WHERE tenant_id = $1 AND id = $2 AND (current_version IS NULL OR current_version < $3)",
    )
    .bind(e.tenant_id)
    .bind(file_id)
    .bind(version_number as i32)
    .bind(size_bytes as i64)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts the file's tags in again (restore) or out (delete, purge of a live file).
async fn count_file_tags(
    conn: &mut PgConnection,
    tenant: Uuid,
    file_id: Uuid,
    count_in: bool,
) -> Result<(), sqlx::Error> {
    let sql = if count_in {
        "INSERT INTO tags (tenant_id, name, file_count)
         SELECT tenant_id, tag, 1 FROM file_tags WHERE tenant_id = $1 AND file_id = $2
         ON CONFLICT (tenant_id, name) DO UPDATE SET file_count = tags.file_count + 1"
    } else {
        "UPDATE tags SET file_count = file_count - 1
          WHERE tenant_id = $1
            AND name IN (SELECT tag FROM file_tags WHERE tenant_id = $1 AND file_id = $2)"
    };
    sqlx::query(sql)
        .bind(tenant)
        .bind(file_id)
        .execute(&mut *conn)
        .await?;
    drop_unused_tags(conn, tenant).await
}

async fn drop_unused_tags(conn: &mut PgConnection, tenant: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM tags WHERE tenant_id = $1 AND file_count = 0")
        .bind(tenant)
        .execute(conn)
        .await?;
    Ok(())
}
