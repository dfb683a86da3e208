//! One job: hash → dedup (tenant only) → scan → optimise → finalize, each step recorded
//! as a File command, a job's steps committed together (see `process`). Every step is
//! idempotent: the aggregate turns a repeated command into no events, storage keys are
//! content-addressed, so a redelivered job (worker killed, visibility timeout) changes
//! nothing twice.

use futures::TryStreamExt;
use uuid::Uuid;

use super::inspect::{Inspected, inspect};
use super::{JobError, Worker};
use crate::aggregates::file::{
    File, FileCommand, FileError, FileStatus, FinalBlob, Original, Variant, VersionState,
};
use crate::ids::{FileId, TenantId};
use crate::media;
use crate::queue::JobMessage;
use crate::scan::{ScanError, Verdict};
use crate::storage::Storage;
use crate::uploads::mime;

/// A completed version of another, not purged file of the tenant with the given SHA-256.
///
/// The file is checked by a subquery per candidate version, not by a join: a join let
/// the plan that sqlx's prepared statement caches — a generic plan, built from the
/// statistics of the moment, which on a young database (or one autovacuum has not yet
/// analysed) say both tables are empty — scan *every* file of the tenant for each
/// candidate instead of looking the file up by its key. The lookup then cost ~8 ms at
/// 13,000 files and grew with each upload. A correlated scalar subquery is never turned
/// into a join, so the file is always found through `files_pkey`, whatever the
/// statistics (tests/integration/pipeline.rs,
/// `the_dedup_lookup_reads_a_few_pages_however_many_files_the_tenant_has`). A missing
/// `files` row makes the condition NULL: the version is not an original, as with the join.
/// Index `file_versions_dedup` is in the `ORDER BY`'s order (migration 0053), so the scan
/// stops at the earliest copy instead of sorting every copy of the bytes.
pub const DEDUP_LOOKUP_SQL: &str = "SELECT v.file_id, v.version_number
       FROM file_versions v
      WHERE v.tenant_id = $1 AND v.sha256 = $2 AND v.status = 'completed' AND v.file_id <> $3
        AND (SELECT NOT f.purged FROM files f WHERE f.tenant_id = v.tenant_id AND f.id = v.file_id)
      ORDER BY v.created_at, v.file_id, v.version_number
      LIMIT 1";

/// How a job ended, for the queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The version reached a verdict: forget the job.
    Finished,
    /// The version had its verdict before this delivery (a redelivery, or a job the
    /// reconciler queued again while the `jobs` table lagged): forget it, no work done.
    AlreadySettled,
    /// This attempt failed; run again after the backoff for `attempt`.
    RetryLater { attempt: u32 },
    /// Attempts exhausted: the version is `failed`, the job dead-lettered.
    DeadLettered,
}

impl Worker {
    pub async fn run_job(&self, job: &JobMessage) -> Result<Outcome, JobError> {
        let n = job.version_number;
        // Its own commit, before any work: the jobs read table shows the job in progress
        // before its outcome, and a redelivery repeating it records nothing. Decided on
        // the state the commit loads, so deciding costs no load of its own.
        let file = self
            .commit_decided(job, |file| {
                let Some(v) = file.versions.iter().find(|v| v.number == n) else {
                    return vec![];
                };
                if v.status.is_settled() {
                    return vec![];
                }
                // A redelivery of a job whose worker died keeps its attempt number: a
                // crash is not the job's fault.
                let attempt = if v.status == FileStatus::Processing {
                    v.attempt.max(1)
                } else {
                    v.failed_attempt + 1
                };
                vec![FileCommand::StartProcessing {
                    version_number: n,
                    attempt,
                }]
            })
            .await?;
        let Some(v) = file.versions.iter().find(|v| v.number == n) else {
            return Err(JobError::Drop("the version does not exist".into()));
        };
        if v.status.is_settled() {
            return Ok(Outcome::AlreadySettled);
        }
        // The attempt just started (or, for a redelivery, the one still recorded).
        let attempt = v.attempt;
        let (reason, max_attempts) = match self.process(job, &file, v).await {
            Ok(()) => return Ok(Outcome::Finished),
            Err(JobError::Retry(reason)) => (reason, self.settings.max_attempts),
            // This attempt is the last: retrying cannot change the bytes.
            Err(JobError::Reject(reason)) => (reason, attempt - v.attempt_base),
            Err(other) => return Err(other),
        };
        tracing::warn!(job = %job.job_id, attempt, reason, "processing attempt failed");
        let fail = FileCommand::FailProcessing {
            version_number: v.number,
            attempt,
            max_attempts,
            reason,
        };
        let after = self.commit(job, &[fail]).await?;
        let now = after.versions.iter().find(|x| x.number == v.number);
        Ok(match now.map(|x| x.status) {
            Some(FileStatus::Failed) => Outcome::DeadLettered,
            _ => Outcome::RetryLater {
                attempt: attempt - v.attempt_base,
            },
        })
    }

    async fn process(
        &self,
        job: &JobMessage,
        file: &File,
        v: &VersionState,
    ) -> Result<(), JobError> {
        let tenant = job.tenant_id;
        let n = v.number;
        let temp = v.temp_location.clone().ok_or_else(|| {
            JobError::Retry("the upload's temporary bytes are not recorded".into())
        })?;

        // One read for the hash, the size, the type and, with an in-process scanner, the
        // scan; meanwhile the tenant's other files are searched for the recorded SHA-256
        // (the bytes must match it, or the result is not used), so a small file's job
        // waits for the disk and the database at once instead of one after the other.
        let lookup = async {
            match v.duplicate_of {
                None => self.find_original(tenant, job.file_id, &v.sha256).await,
                Some(_) => Ok(None),
            }
        };
        let (bytes, other_file) = tokio::join!(
            inspect(&self.storage, &temp, self.scanner.session()),
            lookup
        );
        let bytes = bytes?;
        // The recorded SHA-256 is the server's own for a proxied upload, the client's
        // declaration for a direct one (the API never saw those bytes): either way bytes
        // that differ are never served, and retrying would not change them.
        if bytes.sha256 != v.sha256 || bytes.size != v.size_bytes {
            return Err(JobError::Reject(format!(
                "the stored bytes do not match the upload's SHA-256 and size (got {}, {} bytes)",
                bytes.sha256, bytes.size
            )));
        }
        // The steps decided below are committed together: one append for the hash,
        // duplicate, variants and verdict instead of one each. Each command is still
        // idempotent, so a redelivery that repeats them changes nothing twice.
        let mut steps = vec![FileCommand::RecordHash {
            version_number: n,
            sha256: bytes.sha256.clone(),
        }];

        // Dedup, within the tenant only. Same file: the version is a duplicate, done.
        if let Some(earlier) = file.versions.iter().find(|o| {
            // A pruned version is no longer an original (retention removed it).
            o.number != n
                && o.status == FileStatus::Completed
                && !o.pruned
                && o.sha256 == bytes.sha256
        }) {
            steps.push(FileCommand::RecordDuplicate {
                version_number: n,
                original: Original::ThisFile {
                    version_number: earlier.number,
                },
            });
            self.commit(job, &steps).await?;
            self.release(&temp).await;
            return Ok(());
        }
        // Another file of the tenant: recorded; the blob below is shared, not copied.
        if let Some(original) = other_file? {
            steps.push(FileCommand::RecordDuplicate {
                version_number: n,
                original,
            });
        }

        let verdict = match &bytes.verdict {
            Some(verdict) => verdict.clone(),
            None => {
                // An external scanner (clamd) reads the bytes itself and may be slow or
                // hang: what is known is on record before it starts.
                self.commit(job, &std::mem::take(&mut steps)).await?;
                self.scan(&temp).await?
            }
        };
        if let Verdict::Infected { signature } = verdict {
            steps.push(FileCommand::FailVirusScan {
                version_number: n,
                signature,
            });
            self.commit(job, &steps).await?;
            self.release(&temp).await;
            return Ok(());
        }

        let detected = mime::detect(&bytes.head);
        steps.extend(
            self.optimise(job, tenant, &temp, &bytes, detected, v)
                .await?,
        );

        // On local storage a hard link: the bytes are not copied.
        let storage_key = Storage::blob_key(tenant, &bytes.sha256);
        self.storage
            .copy_if_absent(&temp, &storage_key)
            .await
            .map_err(retry("finalizing into storage"))?;
        steps.push(FileCommand::Complete {
            version_number: n,
            result: FinalBlob {
                storage_key,
                size_bytes: bytes.size,
                sha256: bytes.sha256,
                detected_mime: detected.to_string(),
            },
        });
        self.commit(job, &steps).await?;
        self.release(&temp).await;
        Ok(())
    }

    async fn scan(&self, key: &str) -> Result<Verdict, JobError> {
        let object = self
            .storage
            .read(key, None)
            .await
            .map_err(retry("reading temporary bytes"))?;
        let mut reader =
            tokio_util::io::StreamReader::new(object.stream.map_err(std::io::Error::other));
        self.scanner.scan(&mut reader).await.map_err(|e| match e {
            ScanError::Unavailable(why) => {
                JobError::Retry(format!("virus scanner unavailable: {why}"))
            }
            other => JobError::Retry(format!("virus scan failed: {other}")),
        })
    }

    /// Images get an EXIF-free copy and a thumbnail, stored here and recorded by the
    /// commands returned. A picture the optimiser cannot handle is still a valid file: it
    /// completes without variants.
    async fn optimise(
        &self,
        job: &JobMessage,
        tenant: TenantId,
        temp: &str,
        bytes: &Inspected,
        detected: &'static str,
        v: &VersionState,
    ) -> Result<Vec<FileCommand>, JobError> {
        if !detected.starts_with("image/") || bytes.size > self.media.max_input_bytes {
            return Ok(vec![]);
        }
        // Held until the picture is decoded and re-encoded: at most one per core.
        let _permit = self
            .optimising
            .acquire()
            .await
            .map_err(retry("waiting to optimise an image"))?;
        let input = self
            .storage
            .read_all(temp)
            .await
            .map_err(retry("reading an image"))?;
        let limits = self.media;
        let result =
            tokio::task::spawn_blocking(move || media::optimise(&input, detected, &limits))
                .await
                .map_err(retry("image optimiser crashed"))?;
        let optimised = match result {
            Ok(Some(o)) => o,
            Ok(None) => return Ok(vec![]),
            Err(err) => {
                tracing::info!(job = %job.job_id, error = %err, "image not optimised; completing without variants");
                return Ok(vec![]);
            }
        };
        let mut variants = vec![("thumbnail", optimised.thumbnail_mime, optimised.thumbnail)];
        let mut steps = Vec::new();
        if let Some(stripped) = optimised.stripped {
            variants.push(("stripped", detected, stripped));
        }
        for (name, mime_type, data) in variants {
            if v.variants.iter().any(|x| x.name == name) {
                continue; // recorded by an earlier delivery
            }
            let storage_key = Storage::variant_key(tenant, &bytes.sha256, name);
            let size_bytes = data.len() as u64;
            self.storage
                .put(&storage_key, data)
                .await
                .map_err(|e| JobError::Retry(format!("storing the {name}: {e}")))?;
            steps.push(FileCommand::RecordOptimized {
                version_number: v.number,
                variant: Variant {
                    name: name.into(),
                    storage_key,
                    mime_type: mime_type.into(),
                    size_bytes,
                },
            });
        }
        Ok(steps)
    }

    /// A completed version of another, not purged file of the same tenant with these
    /// bytes. The worker role sees every tenant, so the tenant filter here is explicit.
    async fn find_original(
        &self,
        tenant: TenantId,
        file: FileId,
        sha256: &str,
    ) -> Result<Option<Original>, JobError> {
        let row: Option<(Uuid, i32)> = sqlx::query_as(DEDUP_LOOKUP_SQL)
            .bind(tenant.0)
            .bind(sha256)
            .bind(file.0)
            .fetch_optional(&self.db)
            .await
            .map_err(retry("dedup lookup"))?;
        Ok(row.map(|(f, n)| Original::OtherFile {
            file_id: FileId(f),
            version_number: n as u32,
        }))
    }

    /// Removes temporary bytes once a verdict is recorded. A failure only leaves garbage.
    async fn release(&self, temp: &str) {
        if let Err(err) = self.storage.delete(temp).await {
            tracing::warn!(error = %err, key = temp, "temporary bytes not removed");
        }
    }

    /// Runs File commands as the worker, in one commit. Domain refusals mean the job no
    /// longer applies (the version settled differently): dropped, not retried.
    async fn commit(&self, job: &JobMessage, commands: &[FileCommand]) -> Result<File, JobError> {
        self.commit_decided(job, |_| commands.to_vec()).await
    }

    /// [`Self::commit`] with the commands decided on the state loaded for the commit.
    async fn commit_decided(
        &self,
        job: &JobMessage,
        decide: impl Fn(&File) -> Vec<FileCommand>,
    ) -> Result<File, JobError> {
        let meta = crate::store::EventMetadata::new(
            job.tenant_id,
            crate::store::Actor::Worker,
            job.job_id.to_string(),
        );
        let store = self.store(job.tenant_id);
        match crate::commands::execute_decided(&store, &job.file_id.to_string(), decide, &meta, &())
            .await
        {
            Ok(committed) => Ok(committed.aggregate),
            Err(crate::commands::CommandError::Domain(err)) => Err(domain(err)),
            Err(other) => Err(JobError::Retry(other.to_string())),
        }
    }
}

/// A failure worth another attempt, with what was being done.
fn retry<E: std::fmt::Display>(doing: &'static str) -> impl FnOnce(E) -> JobError {
    move |e| JobError::Retry(format!("{doing}: {e}"))
}

fn domain(err: FileError) -> JobError {
    JobError::Drop(err.to_string())
}
