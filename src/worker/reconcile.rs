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
        let rows: Vec<(Uuid, Uuid, i32)> = sqlx::query_as(
            "SELECT tenant_id, file_id, version_number FROM jobs
              WHERE status IN ('queued', 'in_progress', 'failed')
                AND updated_at < now() - make_interval(secs => $1)
              ORDER BY updated_at LIMIT $2",
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
