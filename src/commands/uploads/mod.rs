//! Use cases of arriving bytes. `commit_version` turns bytes received in temporary
//! storage into a file version, whichever way they came (multipart, tus, direct to S3).
//! `open` starts a resumable or direct upload, `complete` (complete.rs) ends one whose
//! bytes all arrived, `close_spent` closes a direct upload whose parts cannot make the
//! declared file.
//!
//! `end` ends a resumable upload nobody will finish: its owner terminates it
//! (`DELETE` on the tus resource) or the worker expires it once overdue. Both run under
//! the upload's lock (the caller holds it), so a PATCH never writes into bytes being
//! deleted, and both go **bytes first, event second**: if deleting fails nothing is
//! recorded and the next try starts again; a crash in between leaves an upload without
//! bytes, which the API already refuses and the next try ends for the record.

mod complete;
pub mod quota;

use std::path::Path;

use chrono::{DateTime, Utc};
use cqrs_es::EventStore;
use uuid::Uuid;

use crate::aggregates::file::{File, FileCommand, NewVersion};
use crate::aggregates::upload::{Upload, UploadCommand, UploadStatus};
use crate::error::AppError;
use crate::ids::{FileId, TenantId, UserId};
use crate::state::AppState;
use crate::storage::Storage;
use crate::store::{ChronicleStore, EventLog, EventMetadata};
use crate::uploads::parts;

pub use complete::{Completed, committed_version, complete};

/// Upload streams of `tenant`.
pub fn upload_store(state: &AppState, tenant: TenantId) -> ChronicleStore<Upload> {
    crate::commands::store(state, tenant)
}

/// Bytes set aside for an upload before its start is recorded.
pub enum SetAside<'a> {
    /// Its temporary file (local storage).
    TempFile(&'a Path),
    /// A multipart upload in the bucket under `key` (S3).
    Multipart {
        key: &'a str,
        id: &'a str,
    },
    Nothing,
}

/// Opens upload `id` with `start` (an `UploadCommand::Start`: a tus creation or a
/// direct-to-S3 session). If the command is refused nothing is recorded, and the bytes set
/// aside for it are removed, so a refused start leaves nothing behind.
pub async fn open(
    state: &AppState,
    tenant: TenantId,
    id: Uuid,
    start: UploadCommand,
    meta: &EventMetadata,
    set_aside: SetAside<'_>,
) -> Result<Upload, AppError> {
    let uploads = upload_store(state, tenant);
    match super::execute(&uploads, &id.to_string(), start, meta, &()).await {
        Ok(committed) => Ok(committed.aggregate),
        Err(err) => {
            match set_aside {
                SetAside::TempFile(path) => {
                    let _ = tokio::fs::remove_file(path).await;
                }
                SetAside::Multipart { key, id } => {
                    let _ = state.storage.abort_multipart(key, id).await;
                }
                SetAside::Nothing => {}
            }
            Err(err.into())
        }
    }
}

/// Closes direct upload `id` whose assembled object under `temp_key` cannot be the
/// declared file (its parts add up to another size): bytes first, then the record, as
/// `end` does.
pub async fn close_spent(
    state: &AppState,
    tenant: TenantId,
    id: Uuid,
    temp_key: &str,
    meta: &EventMetadata,
) -> Result<(), AppError> {
    state.storage.delete(temp_key).await?;
    let uploads = upload_store(state, tenant);
    super::execute(
        &uploads,
        &id.to_string(),
        UploadCommand::Terminate,
        meta,
        &(),
    )
    .await?;
    Ok(())
}

/// How an unfinished upload ends.
#[derive(Debug, Clone, Copy)]
pub enum Ending {
    /// Its owner gave up: a completed upload keeps its bytes (422), an ended one is gone.
    Terminate,
    /// Past its deadline at `now`; an upload that is not (any more) is left alone.
    Expire { now: DateTime<Utc> },
}

/// Where uploads live: the event log (their streams) and the blob storage (their bytes).
pub struct UploadsAt<'a> {
    pub events: &'a EventLog,
    pub storage: &'a Storage,
    pub snapshot_every: u64,
}

/// Ends upload `id` of `tenant` as `ending` says; `Ok(false)` when an expiry finds the
/// upload no longer overdue (a chunk pushed its deadline since the read row was made).
pub async fn end(
    at: UploadsAt<'_>,
    tenant: TenantId,
    id: Uuid,
    ending: Ending,
    meta: &EventMetadata,
) -> Result<bool, AppError> {
    let uploads: ChronicleStore<Upload> =
        ChronicleStore::new(at.events.clone(), tenant, at.snapshot_every);
    let upload = uploads
        .load_aggregate(&id.to_string())
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("event store: {e}")))?
        .aggregate;
    let command = match ending {
        Ending::Terminate => {
            // Decided on the state under the lock, before any byte is deleted.
            upload.decide(UploadCommand::Terminate)?;
            UploadCommand::Terminate
        }
        Ending::Expire { now } => {
            let overdue = upload.status == UploadStatus::InProgress
                && upload.expires_at.is_some_and(|at| now >= at);
            if !overdue {
                return Ok(false);
            }
            UploadCommand::Expire { now }
        }
    };
    parts::discard(at.storage, tenant, id, &upload)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("deleting upload bytes: {e}")))?;
    super::execute(&uploads, &id.to_string(), command, meta, &()).await?;
    Ok(true)
}

/// Whose version arriving bytes become.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A file created by this upload (`Uploaded` with `FileCreated`).
    NewFile {
        owner_id: UserId,
        display_name: String,
        tags: Vec<String>,
    },
    /// A new version of an existing file.
    NextVersion,
}

/// Commits received bytes (already durable in temporary storage under
/// `version.temp_location`) as a version of file `file_id`: the one "an upload arrived"
/// step of multipart uploads, finished tus uploads and direct-to-S3 uploads, so each
/// starts the same `Uploaded` → job → worker path. Returns the file as the command left
/// it and the number the version got (a command retried after a lost race may number it
/// anew, so it is found by its temporary key).
pub async fn commit_version(
    state: &AppState,
    tenant: TenantId,
    meta: &EventMetadata,
    file_id: FileId,
    destination: Destination,
    version: NewVersion,
) -> Result<(File, u32), AppError> {
    let temp_key = version.temp_location.clone();
    let command = match destination {
        Destination::NewFile {
            owner_id,
            display_name,
            tags,
        } => FileCommand::CreateWithUpload {
            owner_id,
            display_name,
            tags,
            version,
        },
        Destination::NextVersion => FileCommand::Upload(version),
    };
    let committed =
        super::jobs::execute_and_dispatch(state, tenant, file_id, command, meta).await?;
    let number = version_by_temp_key(&committed.aggregate, &temp_key)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("committed upload has no version")))?;
    Ok((committed.aggregate, number))
}

/// The version whose bytes were received under `temp_key`, if the file has one (found
/// after processing too: `uploaded_from` is kept).
pub fn version_by_temp_key(file: &File, temp_key: &str) -> Option<u32> {
    file.versions
        .iter()
        .rev()
        // `temp_location` for a version from a snapshot older than `uploaded_from`.
        .find(|v| {
            v.uploaded_from
                .as_ref()
                .or(v.temp_location.as_ref())
                .map(String::as_str)
                == Some(temp_key)
        })
        .map(|v| v.number)
}

#[cfg(test)]
mod tests {
    use super::version_by_temp_key;
    use crate::aggregates::file::{File, VersionState};

    fn version(
        number: u32,
        uploaded_from: Option<&str>,
        temp_location: Option<&str>,
    ) -> VersionState {
        VersionState {
            number,
            uploaded_from: uploaded_from.map(str::to_string),
            temp_location: temp_location.map(str::to_string),
            ..VersionState::default()
        }
    }

    #[test]
    fn a_version_is_found_by_its_upload_key_before_and_after_processing() {
        let file = File {
            versions: vec![
                // Restored: no upload key.
                version(1, None, None),
                // Processed: `temp_location` cleared, the upload key kept.
                version(2, Some("tmp/a"), None),
                // Not yet processed.
                version(3, Some("tmp/b"), Some("tmp/b")),
                // From a snapshot taken before the upload key was kept.
                version(4, None, Some("tmp/c")),
            ],
            ..File::default()
        };
        assert_eq!(version_by_temp_key(&file, "tmp/a"), Some(2));
        assert_eq!(version_by_temp_key(&file, "tmp/b"), Some(3));
        assert_eq!(version_by_temp_key(&file, "tmp/c"), Some(4));
        assert_eq!(version_by_temp_key(&file, "tmp/d"), None);
    }
}
