//! Postgres is the record of jobs, Redis only carries them. Every `reconcile_every`, the
//! unfinished jobs that have not moved for that long are checked against the queue's
//! `known` set; those Redis does not know (lost between commit and dispatch, or with a
//! Redis that restarted empty) are enqueued again. A job enqueued twice is harmless:
//! each step is idempotent.

use uuid::Uuid;

use super::Worker;
use crate::ids::{FileId, TenantId};
use crate::queue::JobMessage;

/// Jobs checked per round.
const BATCH: i64 = 1000;

impl Worker {
    /// Re-enqueues lost jobs; returns how many.
    pub async fn reconcile(&self) -> anyhow::Result<usize> {
        let grace = self.settings.reconcile_every.as_secs_f64();
        // The `jobs` table is a projection and lags under load: a job acknowledged a
        // moment ago may still read `queued`. Re-queueing it would deliver a settled job
        // again (harmless, but each such duplicate, once acknowledged, made the next
        // round re-queue it again). So a version with a verdict in the log is skipped.
        let rows: Vec<(Uuid, Uuid, i32)> = sqlx::query_as(
            "SELECT j.tenant_id, j.file_id, j.version_number FROM jobs j
              WHERE j.status IN ('queued', 'in_progress', 'failed')
                AND j.updated_at < now() - make_interval(secs => $1)
                AND NOT EXISTS (
                    SELECT 1 FROM events e
                     WHERE e.tenant_id = j.tenant_id AND e.aggregate_type = 'file'
                       AND e.aggregate_id = j.file_id::text
                       AND e.event_type IN ('VersionCompleted', 'DuplicateDetected', 'VirusFailed')
                       AND (e.payload::jsonb -> e.event_type ->> 'version_number')::int = j.version_number)
              ORDER BY j.updated_at LIMIT $2",
        )
        .bind(grace)
        .bind(BATCH)
        .fetch_all(&self.db)
        .await?;
        let jobs: Vec<JobMessage> = rows
            .into_iter()
            .map(|(t, f, n)| JobMessage::process_version(TenantId(t), FileId(f), n as u32))
            .collect();
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.job_id).collect();
        let known = self.queue.known(&ids).await?;
        let mut requeued = 0;
        for (job, known) in jobs.iter().zip(known) {
            if !known {
                self.queue.enqueue(job).await?;
                requeued += 1;
            }
        }
        Ok(requeued)
    }
}
