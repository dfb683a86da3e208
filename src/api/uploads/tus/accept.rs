//! One chunk into one upload, from `PATCH` or creation-with-upload: lock → confirm the
//! state the request was checked on (one index probe; if another instance moved the
//! upload, load it and check again) → truncate/append/fsync → record `ChunkAccepted`
//! (decided on the state this process remembers: no load) → complete when full. Runs in its own task, so a client that hangs up mid-body cannot cancel it
//! half-way: the bytes that arrived are kept and recorded (tus resume semantics), and
//! the lock is always released.

use std::time::Duration;

use axum::body::Body;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::chunk::{self, Ending, Throttle};
use super::chunk_body::{ChunkBody, Limits};
use super::complete::{self, progress_message};
use super::headers::Checksum;
use super::phases::Phases;
use super::s3_chunk::{self, Pending};
use crate::aggregates::upload::{CompletedAs, Upload, UploadCommand, UploadError};
use crate::commands::store;
use crate::commands::{CommandError, execute};
use crate::error::AppError;
use crate::ids::TenantId;
use crate::live::publish::publish_progress;
use crate::state::AppState;
use crate::store::EventMetadata;
use crate::uploads::digest;
use crate::uploads::lock::UploadLock;

/// A client that sends nothing for this long has gone (its bytes so far are kept).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// What a chunk request asks for.
pub struct Chunk {
    pub tenant: TenantId,
    pub upload_id: Uuid,
    pub from_offset: u64,
    pub declared_length: Option<u64>,
    pub checksum: Option<Checksum>,
    pub meta: EventMetadata,
    /// When the request's handler began (for the phase timings).
    pub started: std::time::Instant,
    /// The state the request's checks passed on and the sequence it ends at: under the
    /// lock, one probe confirms it instead of a load (`None`: load).
    pub seen: Option<(Upload, u64)>,
}

/// The upload after the chunk, and what it became if this chunk completed it.
pub struct Accepted {
    pub upload: Upload,
    pub completed: Option<CompletedAs>,
}

pub async fn accept(state: &AppState, chunk: Chunk, body: Body) -> Result<Accepted, AppError> {
    let key = UploadLock::key(
        &state.config.redis_key_prefix,
        chunk.tenant.0,
        chunk.upload_id,
    );
    let mut phases = Phases::since(chunk.started);
    phases.mark("checks");
    let lock = UploadLock::acquire(&state.redis_conn, key, state.config.tus.lock_lease)
        .await
        .map_err(|e| AppError::Unavailable(format!("upload lock unavailable: {e}")))?
        .ok_or(AppError::UploadLocked)?;
    phases.mark("lock");
    let state = state.clone();
    // Own task: dropping the request future (client gone) must not stop it half-way.
    let task = tokio::spawn(async move {
        let mut chunk = chunk;
        let result = locked(&state, &mut chunk, &lock, body, &mut phases).await;
        // Where the upload now stands, for its watchers (a completed one was announced
        // by `complete::finish`). Sent together with the release: both ride the one
        // multiplexed Redis connection, so they cost one round trip instead of two, and
        // both are done before the answer, so a client's next PATCH finds the lock free
        // and its progress comes after this one.
        let progress = match &result {
            Ok(Accepted {
                upload,
                completed: None,
            }) => Some(upload),
            _ => None,
        };
        tokio::join!(lock.release(), async {
            if let Some(upload) = progress {
                publish(&state, chunk.tenant, chunk.upload_id, upload, None).await;
            }
        });
        phases.mark("release");
        let bytes = result
            .as_ref()
            .map_or(0, |a| a.upload.offset - chunk.from_offset);
        phases.log(chunk.upload_id, bytes);
        result
    });
    task.await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("chunk task failed: {e}")))?
}

async fn locked(
    state: &AppState,
    chunk: &mut Chunk,
    lock: &UploadLock,
    body: Body,
    phases: &mut Phases,
) -> Result<Accepted, AppError> {
    let uploads = store::<Upload>(state, chunk.tenant);
    let id = chunk.upload_id.to_string();
    // The truth under the lock: another instance may have moved the offset meanwhile.
    // The state seen before the lock is it if its stream has not moved since (one index
    // probe); otherwise the upload is loaded and checked again.
    let seen = match chunk.seen.take() {
        Some((upload, sequence)) => uploads
            .still_ends_at(&id, sequence)
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("event store: {e}")))?
            .then_some(upload),
        None => None,
    };
    let upload = match seen {
        Some(upload) => upload,
        None => {
            let upload = super::load_state(state, chunk.tenant, chunk.upload_id).await?;
            super::usable(&upload)?;
            upload
        }
    };
    phases.mark("load");
    if upload.offset != chunk.from_offset {
        return Err(AppError::OffsetMismatch {
            sent: chunk.from_offset,
            expected: upload.offset,
        });
    }
    let length = upload.length.or(chunk.declared_length);
    let room = match length {
        Some(l) => l.saturating_sub(upload.offset),
        None => upload.max_size.saturating_sub(upload.offset),
    };
    let mut progress = Reporter {
        state: state.clone(),
        tenant: chunk.tenant,
        upload: &upload,
        upload_id: chunk.upload_id,
        length,
        throttle: Throttle::new(PROGRESS_EVERY),
    };
    let body = ChunkBody::new(
        body.into_data_stream(),
        Limits {
            room,
            idle: IDLE_TIMEOUT,
            lock,
        },
        chunk.checksum.as_ref(),
        &mut progress,
    );
    // Local: the temp file (truncated back on discard). S3: parts, and a tail kept
    // in memory until the chunk is known to count.
    let (written, sink) = match (
        &upload.multipart,
        state.storage.local_path(&upload.temp_key),
    ) {
        (Some(multipart), _) => {
            let (written, pending) =
                s3_chunk::write(&state.storage, &upload, multipart, body).await?;
            phases.mark("receive");
            (written, Sink::Parts(pending))
        }
        (None, Some(path)) => {
            // The SHA-256 so far, carried in the upload's events: completion then needs
            // no second read of the whole file.
            let running = match upload.offset {
                0 => Some(Sha256::new()),
                _ => upload
                    .sha256_state
                    .as_deref()
                    .and_then(digest::resume_sha256),
            };
            let written = match chunk::write(&path, upload.offset, running, body).await {
                Ok(written) => written,
                Err(err) => {
                    // What was written of the chunk does not count: give its room back
                    // now (a full disk most of all), not at the next PATCH.
                    if let Err(cut) = chunk::truncate(&path, upload.offset).await {
                        tracing::warn!(error = %cut, "could not cut a failed chunk back");
                    }
                    return Err(AppError::local_write("writing a chunk", err));
                }
            };
            phases.mark_split("receive", "fsync", written.synced_in);
            (written, Sink::File(path))
        }
        (None, None) => {
            return Err(AppError::Internal(anyhow::anyhow!(
                "upload {} has neither a temp file nor a multipart upload",
                chunk.upload_id
            )));
        }
    };
    let discard = |why: AppError| async {
        // S3: the parts this chunk sent stay unrecorded; the next chunk from the same
        // offset replaces them, and completion, termination or expiry drop the rest.
        if let Sink::File(path) = &sink {
            chunk::truncate(path, upload.offset)
                .await
                .map_err(|e| AppError::Internal(anyhow::anyhow!("discarding a chunk: {e}")))?;
        }
        Err(why)
    };
    match (written.ending, written.checksum_ok) {
        // Someone else may own the file now: touch nothing, record nothing.
        (Ending::LockLost, _) => return Err(AppError::UploadLocked),
        (Ending::TooLarge, _) => {
            return discard(AppError::PayloadTooLarge(format!(
                "the chunk exceeds the upload's remaining {room} bytes"
            )))
            .await;
        }
        (_, Some(false)) => return discard(AppError::ChecksumMismatch).await,
        // A cut chunk cannot be verified against its checksum: none of it counts.
        (Ending::Cut, None) if chunk.checksum.is_some() => {
            return discard(AppError::BadRequest("the chunk was cut off".into())).await;
        }
        _ => {}
    }
    let parts = match sink {
        Sink::Parts(pending) if written.bytes > 0 => Some(
            pending
                .store_tail(
                    &state.storage,
                    chunk.tenant,
                    chunk.upload_id,
                    upload.offset + written.bytes,
                )
                .await
                .map_err(|e| AppError::Internal(anyhow::anyhow!("storing a tail: {e}")))?,
        ),
        _ => None,
    };
    if !lock.is_held() {
        return Err(AppError::UploadLocked);
    }
    let now = chrono::Utc::now();
    let command = UploadCommand::AcceptChunk {
        from_offset: upload.offset,
        bytes: written.bytes,
        declared_length: chunk.declared_length,
        now,
        expires_at: now + state.config.tus.expiry,
        parts,
        sha256_state: written.sha256.as_ref().map(digest::save_sha256),
    };
    let committed = execute(&uploads, &id, command, &chunk.meta, &())
        .await
        .map_err(|e| match e {
            CommandError::Domain(UploadError::OffsetMismatch { expected }) => {
                AppError::OffsetMismatch {
                    sent: chunk.from_offset,
                    expected,
                }
            }
            other => other.into(),
        })?;
    phases.mark("commit");
    let replaced_tail = upload.multipart.as_ref().and_then(|m| m.tail.clone());
    let upload = committed.aggregate;
    if let Some(old) = replaced_tail
        && upload.multipart.as_ref().and_then(|m| m.tail.as_ref()) != Some(&old)
    {
        // Best effort: a leftover tail goes at completion, termination or expiry.
        let _ = state.storage.delete(&old.key).await;
    }
    if written.ending == Ending::Cut {
        tracing::info!(
            upload = %chunk.upload_id,
            offset = upload.offset,
            "chunk cut off; the bytes that arrived are recorded"
        );
    }
    let completed = if upload.is_full() {
        let completed =
            complete::finish(state, chunk.tenant, chunk.upload_id, &upload, &chunk.meta).await?;
        phases.mark("complete");
        Some(completed)
    } else {
        None
    };
    Ok(Accepted { upload, completed })
}

/// Where a chunk's bytes went.
enum Sink {
    File(std::path::PathBuf),
    Parts(Pending),
}

/// Publishes where an upload stands (best effort).
pub async fn publish(
    state: &AppState,
    tenant: TenantId,
    upload_id: Uuid,
    upload: &Upload,
    completed: Option<CompletedAs>,
) {
    if let Some(message) = progress_message(tenant, upload_id, upload, upload.offset, completed) {
        publish_progress(&state.redis_conn, &state.config.redis_key_prefix, &message).await;
    }
}

/// Reports bytes as they arrive, at most every `PROGRESS_EVERY`.
struct Reporter<'a> {
    state: AppState,
    tenant: TenantId,
    upload: &'a Upload,
    upload_id: Uuid,
    length: Option<u64>,
    throttle: Throttle,
}

impl chunk::Progress for Reporter<'_> {
    fn received(&mut self, total_in_chunk: u64) {
        if !self.throttle.ready() {
            return;
        }
        let mut view = self.upload.clone();
        view.length = self.length;
        let Some(message) = progress_message(
            self.tenant,
            self.upload_id,
            &view,
            self.upload.offset + total_in_chunk,
            None,
        ) else {
            return;
        };
        let state = self.state.clone();
        tokio::spawn(async move {
            publish_progress(&state.redis_conn, &state.config.redis_key_prefix, &message).await;
        });
    }
}
