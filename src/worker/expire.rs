//! Expires resumable uploads nobody finished: an unfinished upload past `expires_at`
//! (creation or last chunk + `UPLOAD_EXPIRY_SECS`) loses its temp bytes (S3: its
//! multipart upload is aborted and its tails deleted) and gets
//! `UploadExpired`; the API answers 410 for it from then on (and already once it is
//! overdue). Each upload is handled under its upload lock, so a PATCH never writes into
//! bytes being deleted; a locked upload waits for the next round.
//!
//! The ending itself is the use case `commands::uploads::end` (shared with the owner's
//! `DELETE`): bytes first, event second.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Worker;
use crate::commands::uploads::{self, Ending, UploadsAt};
use crate::ids::TenantId;
use crate::store::{Actor, EventMetadata};
use crate::uploads::lock::UploadLock;

/// Uploads expired per round; the rest waits for the next one.
const BATCH: i64 = 500;

impl Worker {
    pub(super) async fn expire_loop(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.expire_uploads().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(uploads = n, "expired unfinished uploads"),
                Err(err) => tracing::warn!(error = %err, "expiring uploads failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.uploads.expire_every) => {}
            }
        }
    }

    /// One round; returns how many uploads expired.
    pub async fn expire_uploads(&self) -> anyhow::Result<usize> {
        // The worker role sees every tenant; each row names its own.
        let due: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT tenant_id, id FROM uploads
              WHERE state = 'in_progress' AND expires_at <= now()
              ORDER BY expires_at LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&self.db)
        .await?;
        let mut expired = 0;
        for (tenant, id) in due {
            let key = UploadLock::key(&self.key_prefix, tenant, id);
            let Some(lock) = UploadLock::acquire(&self.redis, key, self.uploads.lock_lease).await?
            else {
                continue;
            };
            let outcome = self.expire_one(TenantId(tenant), id).await;
            lock.release().await;
            if outcome? {
                expired += 1;
            }
        }
        Ok(expired)
    }

    async fn expire_one(&self, tenant: TenantId, id: Uuid) -> anyhow::Result<bool> {
        let at = UploadsAt {
            events: &self.events,
            storage: &self.storage,
            snapshot_every: self.snapshot_every,
        };
        let meta = EventMetadata::new(tenant, Actor::Worker, format!("upload-expiry:{id}"));
        let now = chrono::Utc::now();
        uploads::end(at, tenant, id, Ending::Expire { now }, &meta)
            .await
            .map_err(|e| anyhow::anyhow!("expiring upload {id}: {e}"))
    }
}
