//! `jobs`: one processing job per uploaded version, from File events: what operators
//! list and retry, and what the worker's reconciler (src/worker/reconcile.rs) checks
//! against the queue. Jobs reach the queue from the use case whose commit asks for them
//! (src/commands/jobs.rs), not from this projector: a job does not wait for its batch.
//!
//! Status mapping (the `job_status` enum):
//! Uploaded → queued; ProcessingStarted → in_progress; ProcessingFailed → failed (a retry
//! is scheduled) or dead_letter (attempts exhausted); ProcessingRetried → queued;
//! VersionCompleted, VirusFailed, DuplicateDetected of this file → succeeded (processing
//! reached its verdict, whatever it was).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{EventRecord, Projector};
use crate::aggregates::FileEvent;
use crate::aggregates::file::Original;
use crate::ids::{FileId, TenantId, version_id};
use crate::queue::JobMessage;

pub struct JobsProjector;

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
        let mut changes = Changes::default();
        for e in events.iter().filter(|e| e.aggregate_type == "file") {
            let Ok(file_id) = Uuid::parse_str(&e.aggregate_id) else {
                continue; // not an API file stream (tests, benches); see files.rs
            };
            let event: FileEvent = serde_json::from_str(&e.payload)
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
            changes.add(e, FileId(file_id), event);
        }
        changes.write(conn).await
    }
}

/// A batch's effect on the `jobs` table, written in (at most) two statements: the new
/// jobs, then each touched job's final change. A job is created and then started and
/// finished within one batch under a steady stream of uploads, and three statements per
/// job cost the projector more than the rows did; the rows end as if each event had been
/// applied in turn.
#[derive(Default)]
struct Changes {
    new: Vec<NewJob>,
    /// In the order jobs were first touched; `index` finds a job's entry.
    updates: Vec<Update>,
    index: HashMap<(Uuid, Uuid), usize>,
}

struct NewJob {
    tenant_id: Uuid,
    job: JobMessage,
    at: DateTime<Utc>,
}

/// A job's change folded over the batch's events: each field as the last event that
/// sets it left it (`None`: no event of the batch sets it).
struct Update {
    tenant_id: Uuid,
    id: Uuid,
    status: &'static str,
    attempts: Option<i32>,
    last_error: Option<String>,
    max_attempts: Option<i32>,
    at: DateTime<Utc>,
}

impl Changes {
    fn add(&mut self, e: &EventRecord, file_id: FileId, event: FileEvent) {
        let (version_number, status) = match event {
            FileEvent::Uploaded { version_number, .. } => {
                let job =
                    JobMessage::process_version(TenantId(e.tenant_id), file_id, version_number);
                self.new.push(NewJob {
                    tenant_id: e.tenant_id,
                    job,
                    at: e.recorded_at,
                });
                return;
            }
            FileEvent::ProcessingStarted {
                version_number,
                attempt,
            } => {
                let u = self.update(e, file_id, version_number, "in_progress");
                u.attempts = Some(attempt as i32);
                return;
            }
            FileEvent::ProcessingFailed {
                version_number,
                attempt,
                reason,
                last_attempt,
                max_attempts,
            } => {
                let status = if last_attempt {
                    "dead_letter"
                } else {
                    "failed"
                };
                let u = self.update(e, file_id, version_number, status);
                u.attempts = Some(attempt as i32);
                u.last_error = Some(reason);
                if max_attempts > 0 {
                    u.max_attempts = Some(max_attempts as i32);
                }
                return;
            }
            FileEvent::ProcessingRetried { version_number } => (version_number, "queued"),
            FileEvent::VersionCompleted { version_number, .. }
            | FileEvent::VirusFailed { version_number, .. }
            | FileEvent::DuplicateDetected {
                version_number,
                original: Original::ThisFile { .. },
            } => (version_number, "succeeded"),
            _ => return,
        };
        self.update(e, file_id, version_number, status);
    }

    /// The job's entry with `status` and the event's time recorded.
    fn update(
        &mut self,
        e: &EventRecord,
        file_id: FileId,
        version_number: u32,
        status: &'static str,
    ) -> &mut Update {
        let id = version_id(file_id, version_number);
        let i = *self.index.entry((e.tenant_id, id)).or_insert_with(|| {
            self.updates.push(Update {
                tenant_id: e.tenant_id,
                id,
                status,
                attempts: None,
                last_error: None,
                max_attempts: None,
                at: e.recorded_at,
            });
            self.updates.len() - 1
        });
        let u = &mut self.updates[i];
        u.status = status;
        u.at = e.recorded_at;
        u
    }

    async fn write(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if !self.new.is_empty() {
            let n = self.new.len();
            let (mut tenants, mut ids, mut files, mut numbers, mut payloads, mut times) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for j in &self.new {
                tenants.push(j.tenant_id);
                ids.push(j.job.job_id);
                files.push(j.job.file_id.0);
                numbers.push(j.job.version_number as i32);
                payloads.push(j.job.to_json());
                times.push(j.at);
            }
            sqlx::query(
                "INSERT INTO jobs (tenant_id, id, file_id, version_number, job_type, payload,
                                   status, created_at, updated_at)
                 SELECT u.tenant_id, u.id, u.file_id, u.version_number, 'process_version',
                        u.payload::jsonb, 'queued', u.at, u.at
                   FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::text[],
                               $6::timestamptz[])
                     AS u(tenant_id, id, file_id, version_number, payload, at)",
            )
            .bind(&tenants)
            .bind(&ids)
            .bind(&files)
            .bind(&numbers)
            .bind(&payloads)
            .bind(&times)
            .execute(&mut *conn)
            .await?;
        }
        if self.updates.is_empty() {
            return Ok(());
        }
        let n = self.updates.len();
        let mut tenants = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut statuses = Vec::with_capacity(n);
        let mut attempts = Vec::with_capacity(n);
        let mut errors = Vec::with_capacity(n);
        let mut maxima = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        for u in self.updates {
            tenants.push(u.tenant_id);
            ids.push(u.id);
            statuses.push(u.status);
            attempts.push(u.attempts);
            errors.push(u.last_error);
            maxima.push(u.max_attempts);
            times.push(u.at);
        }
        // No event sets a field to NULL, so NULL here means "left as it was".
        sqlx::query(
            "UPDATE jobs j
                SET status = u.status::job_status, attempts = coalesce(u.attempts, j.attempts),
                    last_error = coalesce(u.last_error, j.last_error),
                    max_attempts = coalesce(u.max_attempts, j.max_attempts),
                    updated_at = u.at
               FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::text[],
                           $6::int[], $7::timestamptz[])
                 AS u(tenant_id, id, status, attempts, last_error, max_attempts, at)
              WHERE j.tenant_id = u.tenant_id AND j.id = u.id",
        )
        .bind(&tenants)
        .bind(&ids)
        .bind(&statuses)
        .bind(&attempts)
        .bind(&errors)
        .bind(&maxima)
        .bind(&times)
        .execute(conn)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projections::record::CatchUpPosition;

    fn record(file_id: FileId, position: i64) -> EventRecord {
        EventRecord {
            position: CatchUpPosition {
                transaction_id: 1,
                global_position: position,
            },
            tenant_id: Uuid::nil(),
            aggregate_type: "file".into(),
            aggregate_id: file_id.0.to_string(),
            sequence: position,
            event_type: String::new(),
            event_version: "1.0".into(),
            payload: String::new(),
            metadata: Default::default(),
            recorded_at: DateTime::from_timestamp(position, 0).unwrap(),
        }
    }

    #[test]
    fn a_batch_folds_each_job_into_the_row_its_events_leave_in_turn() {
        let (a, b) = (FileId(Uuid::now_v7()), FileId(Uuid::now_v7()));
        let mut changes = Changes::default();
        let events = [
            (
                a,
                FileEvent::ProcessingStarted {
                    version_number: 1,
                    attempt: 1,
                },
            ),
            (
                b,
                FileEvent::ProcessingStarted {
                    version_number: 1,
                    attempt: 1,
                },
            ),
            (
                a,
                FileEvent::ProcessingFailed {
                    version_number: 1,
                    attempt: 1,
                    reason: "scanner unreachable".into(),
                    last_attempt: false,
                    max_attempts: 3,
                },
            ),
            (a, FileEvent::ProcessingRetried { version_number: 1 }),
            (
                a,
                FileEvent::ProcessingStarted {
                    version_number: 1,
                    attempt: 2,
                },
            ),
        ];
        for (i, (file, event)) in events.into_iter().enumerate() {
            changes.add(&record(file, i as i64 + 1), file, event);
        }
        assert_eq!(changes.updates.len(), 2, "one row change per job");
        let (first, second) = (&changes.updates[0], &changes.updates[1]);
        assert_eq!(first.id, version_id(a, 1));
        // The retry's start is the last status; the failure's error and limit stay.
        assert_eq!(first.status, "in_progress");
        assert_eq!(first.attempts, Some(2));
        assert_eq!(first.last_error.as_deref(), Some("scanner unreachable"));
        assert_eq!(first.max_attempts, Some(3));
        assert_eq!(first.at, DateTime::from_timestamp(5, 0).unwrap());
        assert_eq!(second.id, version_id(b, 1));
        assert_eq!((second.status, second.attempts), ("in_progress", Some(1)));
        assert_eq!(
            (second.last_error.as_deref(), second.max_attempts),
            (None, None)
        );
    }
}
