//! Version retention and the blob garbage collector, one round every
//! `BLOB_GC_EVERY_SECS` (docs/architecture.md "Purge, garbage collection and retention").
//!
//! 1. **Retention** (`VERSION_RETENTION=N`): files with settled versions older than
//!    their N-th newest completed one get `PruneVersions`; the File aggregate decides
//!    what goes (`VersionPruned`), so repeating a round changes nothing.
//! 2. **Collection**: a blob `(tenant, sha256)` whose references (`blob_references`,
//!    src/projections/blob_refs.rs) are all released, the last one longer ago than
//!    `BLOB_GC_GRACE_SECS`, loses its bytes and variants. Each candidate is re-checked
//!    right before its delete, including events the projector has not reached yet.
//!
//! The worker role sees every tenant: every query names its tenant explicitly, and
//! storage keys are built from that tenant. Deletes are idempotent, so two workers
//! collecting the same blob, or a round cut short, are harmless.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Worker;
use crate::aggregates::file::{FileCommand, FileError};
use crate::commands::{self, CommandError};
use crate::ids::TenantId;
use crate::storage::Storage;
use crate::store::{Actor, EventMetadata};

/// Files pruned and blobs collected per round; the rest waits for the next one.
const BATCH: i64 = 500;
/// The variants the worker may have stored for a blob (src/worker/pipeline.rs).
const VARIANTS: [&str; 2] = ["thumbnail", "stripped"];

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub files_pruned: usize,
    pub blobs_collected: usize,
}

impl Worker {
    pub(super) async fn gc_loop(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.gc_round().await {
                Ok(report) if report == GcReport::default() => {}
                Ok(report) => tracing::info!(?report, "blob GC round"),
                Err(err) => tracing::warn!(error = %err, "blob GC round failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.settings.gc.every) => {}
            }
        }
    }

    /// One round: retention first (its releases reach the collector once projected,
    /// i.e. in a later round), then collection.
    pub async fn gc_round(&self) -> anyhow::Result<GcReport> {
        let files_pruned = match self.settings.gc.version_retention {
            Some(keep) => self.apply_retention(keep).await?,
            None => 0,
        };
        let blobs_collected = self.collect_garbage().await?;
        Ok(GcReport {
            files_pruned,
            blobs_collected,
        })
    }

    /// Sends `PruneVersions` to files whose read rows show settled versions older than
    /// their `keep`-th newest completed one. The read tables only pick candidates; the
    /// aggregate decides.
    async fn apply_retention(&self, keep: u32) -> anyhow::Result<usize> {
        let files: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "WITH ranked AS (
                 SELECT tenant_id, file_id, version_number,
                        row_number() OVER (PARTITION BY tenant_id, file_id
                                           ORDER BY version_number DESC) AS rank
                   FROM file_versions WHERE status = 'completed'),
             cutoff AS (SELECT tenant_id, file_id, version_number FROM ranked WHERE rank = $1)
             SELECT DISTINCT c.tenant_id, c.file_id
               FROM cutoff c
               JOIN files f ON f.tenant_id = c.tenant_id AND f.id = c.file_id AND NOT f.purged
               JOIN file_versions v ON v.tenant_id = c.tenant_id AND v.file_id = c.file_id
                    AND v.version_number < c.version_number
                    AND v.status IN ('completed', 'duplicate', 'virus_failed', 'failed')
              LIMIT $2",
        )
        .bind(keep as i64)
        .bind(BATCH)
        .fetch_all(&self.db)
        .await?;
        let mut pruned = 0;
        for (tenant, file) in files {
            let tenant = TenantId(tenant);
            let meta = EventMetadata::new(tenant, Actor::Worker, format!("retention:{file}"));
            let command = FileCommand::PruneVersions { keep };
            match commands::execute(&self.store(tenant), &file.to_string(), command, &meta, &())
                .await
            {
                Ok(_) => pruned += 1,
                // Purged meanwhile: nothing left to keep.
                Err(CommandError::Domain(FileError::Purged)) => {}
                // A legal hold keeps every version until it is released.
                Err(CommandError::Domain(FileError::LegalHold)) => {
                    tracing::debug!(%file, "retention skipped: the file is under legal hold");
                }
                Err(err) => tracing::warn!(%file, error = %err, "retention failed for a file"),
            }
        }
        Ok(pruned)
    }

    /// Deletes the bytes nothing references any more; returns how many blobs went.
    pub async fn collect_garbage(&self) -> anyhow::Result<usize> {
        let grace = self.settings.gc.grace.as_secs_f64();
        let candidates: Vec<(Uuid, String)> = sqlx::query_as(
            "WITH released AS (
                 SELECT DISTINCT tenant_id, sha256 FROM blob_references
                  WHERE released_at IS NOT NULL),
             blobs AS (
                 SELECT r.tenant_id, r.sha256, max(b.released_at) AS last_release,
                        bool_and(b.released_at IS NOT NULL) AS all_released
                   FROM released r
                   JOIN blob_references b ON b.tenant_id = r.tenant_id AND b.sha256 = r.sha256
                  GROUP BY r.tenant_id, r.sha256)
             SELECT tenant_id, sha256 FROM blobs
              WHERE all_released AND last_release < now() - make_interval(secs => $1)
                AND NOT EXISTS (SELECT 1 FROM blob_collections c
                                 WHERE c.tenant_id = blobs.tenant_id AND c.sha256 = blobs.sha256
                                   AND c.collected_at >= blobs.last_release)
              ORDER BY last_release
              LIMIT $2",
        )
        .bind(grace)
        .bind(BATCH)
        .fetch_all(&self.db)
        .await?;
        let mut collected = 0;
        for (tenant, sha256) in candidates {
            let tenant = TenantId(tenant);
            if !self.still_garbage(tenant, &sha256, grace).await? {
                continue;
            }
            self.delete_blob(tenant, &sha256).await?;
            collected += 1;
        }
        Ok(collected)
    }

    /// The re-check right before a delete: no reference of this tenant's blob is live
    /// or released within the grace, and no event the `blob_refs` projector has not
    /// applied yet could add one (an upload or restore naming these bytes, or an
    /// operator retry). Without a checkpoint (projector never ran) nothing is garbage.
    async fn still_garbage(
        &self,
        tenant: TenantId,
        sha256: &str,
        grace: f64,
    ) -> anyhow::Result<bool> {
        let garbage: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM blob_references
                                 WHERE tenant_id = $1 AND sha256 = $2
                                   AND (released_at IS NULL
                                        OR released_at >= now() - make_interval(secs => $3)))
                AND EXISTS (SELECT 1 FROM projector_checkpoints c
                             WHERE c.name = 'blob_refs'
                               AND NOT EXISTS (
                                   SELECT 1 FROM events e
                                    WHERE (e.transaction_id, e.global_position)
                                          > (c.last_transaction_id, c.last_position)
                                      AND e.tenant_id = $1 AND e.aggregate_type = 'file'
                                      AND (e.event_type = 'ProcessingRetried'
                                           OR strpos(e.payload::text, $2) > 0)))",
        )
        .bind(tenant.0)
        .bind(sha256)
        .bind(grace)
        .fetch_one(&self.db)
        .await?;
        Ok(garbage)
    }

    /// Deletes the blob and its variants (missing objects are fine), then records the
    /// collection. A failure leaves no record, so the next round tries again.
    async fn delete_blob(&self, tenant: TenantId, sha256: &str) -> anyhow::Result<()> {
        for name in VARIANTS {
            self.storage
                .delete(&Storage::variant_key(tenant, sha256, name))
                .await?;
        }
        self.storage.forget_variants(tenant, sha256).await;
        self.storage
            .delete(&Storage::blob_key(tenant, sha256))
            .await?;
        sqlx::query(
            "INSERT INTO blob_collections (tenant_id, sha256, collected_at) VALUES ($1, $2, now())
             ON CONFLICT (tenant_id, sha256) DO UPDATE SET collected_at = excluded.collected_at",
        )
        .bind(tenant.0)
        .bind(sha256)
        .execute(&self.db)
        .await?;
        tracing::info!(tenant = %tenant, sha256, "blob collected");
        Ok(())
    }
}
