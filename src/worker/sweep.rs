//! Removes temporary objects nothing needs any more: an upload whose process died
//! between writing the bytes and committing `Uploaded`, or a worker that died between
//! recording a verdict and deleting the temp bytes. An object is kept while an
//! unsettled version (uploaded, queued, processing, failed — a dead letter may be
//! retried) points at it, and always while it is younger than `TEMP_SWEEP_AFTER_SECS`,
//! which covers the moment between an upload's last byte and its commit. The bytes of an
//! unfinished resumable upload are never orphans, however long its client pauses: the
//! expiry job (expire.rs) decides when they go.
//!
//! "Nothing points at it" is read from projections, so a sweep runs only when the
//! `files` and `uploads` projectors have applied every committed event: behind a lagging
//! projector (a backlog after a restart, a rebuild) an acknowledged upload's bytes would
//! look orphaned. A skipped sweep is retried on the next round. The local store's staging
//! files (`{key}#{n}`, a write a crash interrupted; src/storage/staging.rs) go first,
//! whatever the projections say: nothing can point at them.
//!
//! The same loop removes webhook secrets no endpoint will use (`sweep_webhook_secrets`).

use uuid::Uuid;

use super::Worker;
use crate::projections;

impl Worker {
    /// Deletes orphaned temporary objects; returns how many.
    pub async fn sweep_temp(&self) -> anyhow::Result<usize> {
        let before =
            chrono::Utc::now() - chrono::Duration::from_std(self.settings.temp_sweep_after)?;
        // Staging files of writes a crash interrupted: never referenced by anything, so
        // no projection needs to be consulted (src/storage/staging.rs).
        let mut removed = 0;
        for prefix in ["tmp", "blobs", "variants"] {
            removed += self
                .storage
                .remove_stale_staging(prefix, before.into())
                .await?;
        }
        if !projections::runtime::caught_up(&self.db, &["files", "uploads"]).await? {
            tracing::info!("temp sweep skipped: projections are behind the event log");
            return Ok(removed);
        }
        for key in self.storage.list_older("tmp", before).await? {
            // tmp/{tenant}/{upload}: the worker role sees every tenant, so filter by it.
            let Some(tenant) = key.split('/').nth(1).and_then(|t| Uuid::parse_str(t).ok()) else {
                continue;
            };
            let referenced: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM file_versions
                                 WHERE tenant_id = $1 AND temp_location = $2)
                     OR EXISTS (SELECT 1 FROM uploads
                                 WHERE tenant_id = $1 AND temp_key = $2
                                   AND state = 'in_progress')",
            )
            .bind(tenant)
            .bind(&key)
            .fetch_one(&self.db)
            .await?;
            if !referenced {
                self.storage.delete(&key).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Deletes webhook secrets whose endpoint was deleted, or was never created and
    /// never will be (the secret is older than `temp_sweep_after`, which covers the
    /// moment between storing a secret and committing its endpoint); returns how many.
    /// Creating an endpoint and deleting one each take two steps (commands::webhooks),
    /// and a crash or a failed delete between them leaves such a row. Decided from the
    /// event log, not the `webhook_endpoints` projection: a lagging projector would make
    /// a new endpoint's secret look orphaned.
    pub async fn sweep_webhook_secrets(&self) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "DELETE FROM webhook_secrets s
              WHERE EXISTS (SELECT 1 FROM events e
                             WHERE e.tenant_id = s.tenant_id
                               AND e.aggregate_type = 'webhook_endpoint'
                               AND e.aggregate_id = s.endpoint_id::text
                               AND e.event_type = 'WebhookEndpointDeleted')
                 OR (s.created_at < now() - make_interval(secs => $1)
                     AND NOT EXISTS (SELECT 1 FROM events e
                                      WHERE e.tenant_id = s.tenant_id
                                        AND e.aggregate_type = 'webhook_endpoint'
                                        AND e.aggregate_id = s.endpoint_id::text))",
        )
        .bind(self.settings.temp_sweep_after.as_secs_f64())
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected())
    }
}
