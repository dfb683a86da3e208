//! The writes of a batch of file events that are folded and written set-based, a few
//! statements per batch instead of one or two per event: new `files` and `file_versions`
//! rows (`Created`), the columns each processing event sets on its version (`Versions`),
//! and what every event sets on its `files` row (`Touched`).
//!
//! Why folding is exact: each per-event statement these replace set columns to values
//! taken from the event alone, never computed from the row (the one `coalesce` in the
//! duplicate case means "this event does not set the column"). So writing, per row, the
//! last value each column was given in the batch leaves the row as the statements one
//! after another would. Writes that read rows (tags, purge, restore) stay per event, and
//! `Pending::flush` runs before each of them, so they see every earlier event applied.
//! The flush order — new files, new versions, version changes, current versions — is
//! the only order the events of one file can come in.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::aggregates::FileEvent;
use crate::aggregates::file::{FileStatus, Original};
use crate::projections::EventRecord;

type At = DateTime<Utc>;
type FileKey = (Uuid, Uuid);
type VersionKey = (Uuid, Uuid, i32);

/// Everything a batch has folded and not yet written.
#[derive(Default)]
pub(super) struct Pending {
    created: Created,
    versions: Versions,
}

impl Pending {
    /// Folds `event` in; false when it is written on its own (after a flush).
    pub(super) fn fold(&mut self, e: &EventRecord, file_id: Uuid, event: &FileEvent) -> bool {
        let key = |v: u32| (e.tenant_id, file_id, v as i32);
        let at = e.recorded_at;
        let change = match event {
            FileEvent::FileCreated {
                owner_id,
                display_name,
            } => {
                self.created.files.push(NewFile {
                    tenant: e.tenant_id,
                    id: file_id,
                    owner: owner_id.0,
                    display_name: display_name.clone(),
                    at,
                });
                return true;
            }
            FileEvent::Uploaded {
                version_number,
                version,
            } => {
                self.created.versions.push(NewVersion {
                    key: key(*version_number),
                    filename: version.filename.clone(),
                    mime: version.declared_mime.clone(),
                    size: version.size_bytes as i64,
                    sha256: version.sha256.clone(),
                    temp_location: version.temp_location.clone(),
                    at,
                });
                return true;
            }
            FileEvent::ProcessingStarted {
                version_number,
                attempt,
            } => (
                key(*version_number),
                Change {
                    status: Some(FileStatus::Processing),
                    attempts: Some(*attempt as i32),
                    ..Change::default()
                },
            ),
            FileEvent::ProcessingRetried { version_number } => (
                key(*version_number),
                Change {
                    status: Some(FileStatus::Queued),
                    processed_at: Some(None),
                    ..Change::default()
                },
            ),
            // Variants get their own table with thumbnails; until then only the time moves.
            FileEvent::Hashed { version_number, .. }
            | FileEvent::Optimized { version_number, .. } => {
                (key(*version_number), Change::default())
            }
            FileEvent::DuplicateDetected {
                version_number,
                original,
            } => {
                let (of, change) = match original {
                    Original::ThisFile { version_number: v } => (
                        (file_id, *v),
                        Change {
                            status: Some(FileStatus::Duplicate),
                            clears_temp: true,
                            processed_at: Some(Some(at)),
                            ..Change::default()
                        },
                    ),
                    // Processing goes on to completion with the shared blob.
                    Original::OtherFile {
                        file_id: f,
                        version_number: v,
                    } => ((f.0, *v), Change::default()),
                };
                let duplicate_of = Some((of.0, of.1 as i32));
                (
                    key(*version_number),
                    Change {
                        duplicate_of,
                        ..change
                    },
                )
            }
            FileEvent::VirusFailed {
                version_number,
                signature,
            } => (
                key(*version_number),
                Change {
                    status: Some(FileStatus::VirusFailed),
                    last_error: Some(format!("virus found: {signature}")),
                    clears_temp: true,
                    processed_at: Some(Some(at)),
                    ..Change::default()
                },
            ),
            FileEvent::ProcessingFailed {
                version_number,
                reason,
                last_attempt,
                ..
            } => (
                key(*version_number),
                Change {
                    status: Some(if *last_attempt {
                        FileStatus::Failed
                    } else {
                        FileStatus::Queued
                    }),
                    last_error: Some(reason.clone()),
                    processed_at: Some(last_attempt.then_some(at)),
                    ..Change::default()
                },
            ),
            FileEvent::VersionCompleted {
                version_number,
                result,
            } => {
                let size = result.size_bytes as i64;
                // The file's current version is its newest completed one; completions
                // may arrive out of version order when versions are processed in
                // parallel (the first of equal numbers stays, as `current_version <`
                // one after another would leave it).
                let current = self.versions.current.entry((e.tenant_id, file_id));
                let (v, s) = current.or_insert((*version_number as i32, size));
                if (*version_number as i32) > *v {
                    (*v, *s) = (*version_number as i32, size);
                }
                (
                    key(*version_number),
                    Change {
                        status: Some(FileStatus::Completed),
                        clears_temp: true,
                        processed_at: Some(Some(at)),
                        completed: Some(Completed {
                            storage_key: result.storage_key.clone(),
                            size,
                            sha256: result.sha256.clone(),
                            mime: result.detected_mime.clone(),
                        }),
                        ..Change::default()
                    },
                )
            }
            // Holds and links are decided from the log; they move only `updated_at`.
            FileEvent::LegalHoldPlaced { .. }
            | FileEvent::LegalHoldReleased
            | FileEvent::LinkCreated(_)
            | FileEvent::LinkRevoked { .. } => return true,
            _ => return false,
        };
        self.versions.fold(change.0, change.1, at);
        true
    }

    /// Writes and forgets everything folded so far.
    pub(super) async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        std::mem::take(&mut self.created).write(&mut *conn).await?;
        std::mem::take(&mut self.versions).write(conn).await
    }
}

struct NewFile {
    tenant: Uuid,
    id: Uuid,
    owner: Uuid,
    display_name: String,
    at: At,
}

struct NewVersion {
    key: VersionKey,
    filename: String,
    mime: String,
    size: i64,
    sha256: String,
    temp_location: String,
    at: At,
}

/// New rows, in event order.
#[derive(Default)]
struct Created {
    files: Vec<NewFile>,
    versions: Vec<NewVersion>,
}

impl Created {
    async fn write(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if !self.files.is_empty() {
            let f = &self.files;
            sqlx::query(
                "INSERT INTO files (tenant_id, id, owner_id, display_name, created_at, updated_at)
                 SELECT t, i, o, n, a, a
                   FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[])
                        AS x(t, i, o, n, a)",
            )
            .bind(f.iter().map(|f| f.tenant).collect::<Vec<_>>())
            .bind(f.iter().map(|f| f.id).collect::<Vec<_>>())
            .bind(f.iter().map(|f| f.owner).collect::<Vec<_>>())
            .bind(
                f.iter()
                    .map(|f| f.display_name.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(f.iter().map(|f| f.at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.versions.is_empty() {
            let v = &self.versions;
            sqlx::query(
                "INSERT INTO file_versions (tenant_id, file_id, version_number, status, filename, mime_type,
                                            size_bytes, sha256, temp_location, created_at, updated_at)
                 SELECT t, f, n, $10::file_status, name, mime, size, sha, temp, a, a
                   FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::text[],
                               $6::int8[], $7::text[], $8::text[], $9::timestamptz[])
                        AS x(t, f, n, name, mime, size, sha, temp, a)",
            )
            .bind(v.iter().map(|v| v.key.0).collect::<Vec<_>>())
            .bind(v.iter().map(|v| v.key.1).collect::<Vec<_>>())
            .bind(v.iter().map(|v| v.key.2).collect::<Vec<_>>())
            .bind(v.iter().map(|v| v.filename.as_str()).collect::<Vec<_>>())
            .bind(v.iter().map(|v| v.mime.as_str()).collect::<Vec<_>>())
            .bind(v.iter().map(|v| v.size).collect::<Vec<_>>())
            .bind(v.iter().map(|v| v.sha256.as_str()).collect::<Vec<_>>())
            .bind(v.iter().map(|v| v.temp_location.as_str()).collect::<Vec<_>>())
            .bind(v.iter().map(|v| v.at).collect::<Vec<_>>())
            .bind(FileStatus::Uploaded.as_str())
            .execute(conn)
            .await?;
        }
        Ok(())
    }
}

/// What a completion sets on its version.
#[derive(Clone)]
struct Completed {
    storage_key: String,
    size: i64,
    sha256: String,
    mime: String,
}

/// The columns events set on one version row; `None` leaves a column as it is. Every
/// event also sets `updated_at` to its time.
#[derive(Clone, Default)]
struct Change {
    status: Option<FileStatus>,
    attempts: Option<i32>,
    /// `Some(None)` clears it (a retry).
    processed_at: Option<Option<At>>,
    last_error: Option<String>,
    clears_temp: bool,
    completed: Option<Completed>,
    duplicate_of: Option<(Uuid, i32)>,
}

impl Change {
    /// `later` applied after `self`: each column keeps the last value it was set to.
    fn then(self, later: Change) -> Change {
        Change {
            status: later.status.or(self.status),
            attempts: later.attempts.or(self.attempts),
            processed_at: later.processed_at.or(self.processed_at),
            last_error: later.last_error.or(self.last_error),
            clears_temp: later.clears_temp || self.clears_temp,
            completed: later.completed.or(self.completed),
            duplicate_of: later.duplicate_of.or(self.duplicate_of),
        }
    }
}

/// Folded version changes, and each file's newest completed version in the batch.
#[derive(Default)]
struct Versions {
    changes: HashMap<VersionKey, (Change, At)>,
    current: HashMap<FileKey, (i32, i64)>,
}

impl Versions {
    fn fold(&mut self, key: VersionKey, change: Change, at: At) {
        let folded = match self.changes.remove(&key) {
            Some((earlier, _)) => earlier.then(change),
            None => change,
        };
        self.changes.insert(key, (folded, at));
    }

    async fn write(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if !self.changes.is_empty() {
            let rows: Vec<(&VersionKey, &Change, &At)> =
                self.changes.iter().map(|(k, (c, at))| (k, c, at)).collect();
            let done = |r: &(&VersionKey, &Change, &At)| r.1.completed.clone();
            sqlx::query(
                "UPDATE file_versions v SET
                        status = coalesce(c.status::file_status, v.status),
                        attempts = coalesce(c.attempts, v.attempts),
                        processed_at = CASE WHEN c.sets_processed THEN c.processed_at ELSE v.processed_at END,
                        last_error = coalesce(c.last_error, v.last_error),
                        temp_location = CASE WHEN c.clears_temp THEN NULL ELSE v.temp_location END,
                        storage_key = CASE WHEN c.completed THEN c.storage_key ELSE v.storage_key END,
                        size_bytes = CASE WHEN c.completed THEN c.size_bytes ELSE v.size_bytes END,
                        sha256 = CASE WHEN c.completed THEN c.sha256 ELSE v.sha256 END,
                        mime_type = CASE WHEN c.completed THEN c.mime_type ELSE v.mime_type END,
                        duplicate_of_file = coalesce(c.dup_file, v.duplicate_of_file),
                        duplicate_of_version = coalesce(c.dup_version, v.duplicate_of_version),
                        updated_at = c.at
                   FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::int[], $6::bool[],
                               $7::timestamptz[], $8::text[], $9::bool[], $10::bool[], $11::text[],
                               $12::int8[], $13::text[], $14::text[], $15::uuid[], $16::int[],
                               $17::timestamptz[])
                        AS c(tenant_id, file_id, version_number, status, attempts, sets_processed,
                             processed_at, last_error, clears_temp, completed, storage_key,
                             size_bytes, sha256, mime_type, dup_file, dup_version, at)
                  WHERE v.tenant_id = c.tenant_id AND v.file_id = c.file_id
                    AND v.version_number = c.version_number",
            )
            .bind(rows.iter().map(|r| r.0.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.0.1).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.0.2).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1.status.map(FileStatus::as_str)).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1.attempts).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1.processed_at.is_some()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1.processed_at.flatten()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1.last_error.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1.clears_temp).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1.completed.is_some()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| done(r).map(|c| c.storage_key)).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| done(r).map(|c| c.size)).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| done(r).map(|c| c.sha256)).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| done(r).map(|c| c.mime)).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1.duplicate_of.map(|d| d.0)).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1.duplicate_of.map(|d| d.1)).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| *r.2).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.current.is_empty() {
            let c: Vec<(&FileKey, &(i32, i64))> = self.current.iter().collect();
            sqlx::query(
                "UPDATE files f SET current_version = c.version, size_bytes = c.size
                   FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::int8[]) AS c(tenant_id, id, version, size)
                  WHERE f.tenant_id = c.tenant_id AND f.id = c.id
                    AND (f.current_version IS NULL OR f.current_version < c.version)",
            )
            .bind(c.iter().map(|r| r.0.0).collect::<Vec<_>>())
            .bind(c.iter().map(|r| r.0.1).collect::<Vec<_>>())
            .bind(c.iter().map(|r| r.1.0).collect::<Vec<_>>())
            .bind(c.iter().map(|r| r.1.1).collect::<Vec<_>>())
            .execute(conn)
            .await?;
        }
        Ok(())
    }
}

/// The files a batch touched, for what each of its events would set on the `files` row
/// and no event reads: `updated_at` (every event of a file moves it to the event's
/// `recorded_at`) and `latest_version` / `latest_status` (the highest version and its
/// status, for `GET /v1/files?status=`, migrations/0010_files_read.sql). Written once
/// per file at the end of the batch: the rows end the same, whatever the batch
/// boundaries (a rebuild reproduces them).
#[derive(Default)]
pub(super) struct Touched {
    /// (tenant, file) → the `recorded_at` of its last event in the batch, and whether any
    /// of its events added a version or moved a version's status.
    files: HashMap<FileKey, (At, bool)>,
}

impl Touched {
    pub(super) fn note(&mut self, e: &EventRecord, file_id: Uuid, versions_changed: bool) {
        let entry = self
            .files
            .entry((e.tenant_id, file_id))
            .or_insert((e.recorded_at, false));
        entry.0 = e.recorded_at;
        entry.1 |= versions_changed;
    }

    pub(super) async fn apply(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.files.is_empty() {
            return Ok(());
        }
        let (mut tenants, mut ids, mut ats, mut changed) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((tenant, id), (at, versions_changed)) in self.files {
            tenants.push(tenant);
            ids.push(id);
            ats.push(at);
            changed.push(versions_changed);
        }
        // One UPDATE per touched file, not one for `updated_at` and another for the
        // latest version: two updates of a row in one transaction write two row versions
        // (this statement pair was the costliest of the small-file pipeline's, by
        // pg_stat_statements). The lateral lookup runs only for files whose versions
        // changed; elsewhere (and where a file has no version row) `latest_*` stay.
        sqlx::query(
            "UPDATE files f SET updated_at = t.at,
                    latest_version = CASE WHEN v.version_number IS NULL THEN f.latest_version
                                          ELSE v.version_number END,
                    latest_status = CASE WHEN v.version_number IS NULL THEN f.latest_status
                                         ELSE v.status END
               FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::bool[])
                    AS t(tenant_id, id, at, changed)
               LEFT JOIN LATERAL (
                    SELECT version_number, status FROM file_versions
                     WHERE t.changed AND tenant_id = t.tenant_id AND file_id = t.id
                     ORDER BY version_number DESC LIMIT 1) v ON true
              WHERE f.tenant_id = t.tenant_id AND f.id = t.id",
        )
        .bind(&tenants)
        .bind(&ids)
        .bind(&ats)
        .bind(&changed)
        .execute(conn)
        .await?;
        Ok(())
    }
}
