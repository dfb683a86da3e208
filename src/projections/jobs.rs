//! `jobs`: one processing job per uploaded version, from File events — and, after each
//! live batch commits, the dispatch of new and retried jobs to the Redis queue. The
//! events table is the outbox: a crash between commit and dispatch is repaired by the
//! worker's reconciler (src/worker/reconcile.rs), never lost.
//!
//! Status mapping (the `job_status` enum):
//! Uploaded → queued; ProcessingStarted → in_progress; ProcessingFailed → failed (a retry
//! is scheduled) or dead_letter (attempts exhausted); ProcessingRetried → queued;
//! VersionCompleted, VirusFailed, DuplicateDetected of this file → succeeded (processing
//! reached its verdict, whatever it was).

use async_trait::async_trait;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{EventRecord, Projector};
use crate::aggregates::FileEvent;
use crate::aggregates::file::Original;
use crate::ids::{FileId, TenantId, version_id};
use crate::queue::{JobMessage, Queue};

pub struct JobsProjector {
    /// Where new jobs are dispatched after commit; None for CLI tools and rebuilds.
    queue: Option<Queue>,
}

impl JobsProjector {
    pub fn new(queue: Option<Queue>) -> Self {
        Self { queue }
    }
}

/// The job a file event asks to run, if any.
fn dispatch_of(e: &EventRecord) -> Option<JobMessage> {
    if e.aggregate_type != "file" {
        return None;
    }
    let file_id = FileId(Uuid::parse_str(&e.aggregate_id).ok()?);
    let version_number = match serde_json::from_str::<FileEvent>(&e.payload).ok()? {
        FileEvent::Uploaded { version_number, .. }
        | FileEvent::ProcessingRetried { version_number } => version_number,
        _ => return None,
    };
    Some(JobMessage::process_version(
        TenantId(e.tenant_id),
        file_id,
        version_number,
    ))
}

#[async_trait]
impl Projector for JobsProjector {
    fn name(&self) -> &'static str {
        "jobs"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["jobs"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> Result<(), sqlx::Error> {
        for e in events.iter().filter(|e| e.aggregate_type == "file") {
            let Ok(file_id) = Uuid::parse_str(&e.aggregate_id) else {
                continue; // not an API file stream (tests, benches); see files.rs
            };
            let event: FileEvent = serde_json::from_str(&e.payload)
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
            apply_event(conn, e, FileId(file_id), event).await?;
        }
        Ok(())
    }

    async fn after_commit(&self, events: &[EventRecord]) {
        let Some(queue) = &self.queue else { return };
        let jobs: Vec<JobMessage> = events.iter().filter_map(dispatch_of).collect();
        if let Err(err) = queue.enqueue_all(&jobs).await {
            // The reconciler will find the jobs unfinished and unknown to Redis.
            tracing::warn!(error = %err, jobs = jobs.len(), "dispatch to the queue failed; the reconciler will retry it");
        }
    }
}

async fn apply_event(
    conn: &mut PgConnection,
    e: &EventRecord,
    file_id: FileId,
    event: FileEvent,
) -> Result<(), sqlx::Error> {
    let update = |sql: &'static str, version_number: u32| {
        sqlx::query(sql)
            .bind(e.tenant_id)
            .bind(version_id(file_id, version_number))
            .bind(e.recorded_at)
    };
    match event {
        FileEvent::Uploaded { version_number, .. } => {
            let job = JobMessage::process_version(TenantId(e.tenant_id), file_id, version_number);
            sqlx::query(
                "INSERT INTO jobs (tenant_id, id, file_id, version_number, job_type, payload,
                                   status, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'process_version', $5::jsonb, 'queued', $6, $6)",
            )
            .bind(e.tenant_id)
            .bind(job.job_id)
            .bind(file_id.0)
            .bind(version_number as i32)
            .bind(job.to_json())
            .bind(e.recorded_at)
            .execute(conn)
            .await?;
        }
        FileEvent::ProcessingStarted {
            version_number,
            attempt,
        } => {
            update(
                "UPDATE jobs SET status = 'in_progress', attempts = $4, updated_at = $3
                  WHERE tenant_id = $1 AND id = $2",
                version_number,
            )
            .bind(attempt as i32)
            .execute(conn)
            .await?;
        }
        FileEvent::ProcessingFailed {
            version_number,
            attempt,
            reason,
            last_attempt,
            max_attempts,
        } => {
            update(
                "UPDATE jobs SET status = $4::job_status, attempts = $5, last_error = $6,
                                 max_attempts = CASE WHEN $7 > 0 THEN $7 ELSE max_attempts END,
                                 updated_at = $3
                  WHERE tenant_id = $1 AND id = $2",
                version_number,
            )
            .bind(if last_attempt {
                "dead_letter"
            } else {
                "failed"
            })
            .bind(attempt as i32)
            .bind(reason)
            .bind(max_attempts as i32)
            .execute(conn)
            .await?;
        }
        FileEvent::ProcessingRetried { version_number } => {
            update(
                "UPDATE jobs SET status = 'queued', updated_at = $3 WHERE tenant_id = $1 AND id = $2",
                version_number,
            )
            .execute(conn)
            .await?;
        }
        FileEvent::VersionCompleted { version_number, .. }
        | FileEvent::VirusFailed { version_number, .. }
        | FileEvent::DuplicateDetected {
            version_number,
            original: Original::ThisFile { .. },
        } => {
            update(
                "UPDATE jobs SET status = 'succeeded', updated_at = $3 WHERE tenant_id = $1 AND id = $2",
                version_number,
            )
            .execute(conn)
            .await?;
        }
        _ => {}
    }
    Ok(())
}
