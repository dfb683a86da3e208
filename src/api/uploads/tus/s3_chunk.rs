//! Writing one chunk into an upload in S3 mode. The upload's bytes are cut into parts of
//! a fixed size (storage::multipart::part_size), so part `n` always holds bytes
//! `n·size..(n+1)·size`: a chunk resumes the recorded tail (read back into the buffer),
//! and every time the buffer holds a whole part it goes to S3 as the next part number.
//! A part re-sent after a crash or a discarded chunk replaces the earlier one under the
//! same number. What is left (less than one part) is stored by `Pending::store_tail`
//! only once the caller has decided the chunk counts, under a key naming the offset it
//! ends at and this PATCH: no other chunk touches the recorded tail. Memory: one part.

use bytes::{Bytes, BytesMut};
use futures::Stream;
use uuid::Uuid;

use super::chunk::{Ending, Progress, Written};
use super::chunk_body::ChunkBody;
use crate::aggregates::upload::{Multipart, StoredParts, Tail, Upload};
use crate::ids::TenantId;
use crate::storage::{Storage, StorageError, part_size};
use crate::uploads::parts;

/// A chunk's parts are in S3; its remainder waits in memory for the caller's verdict.
pub struct Pending {
    first_part: u32,
    e_tags: Vec<String>,
    rest: BytesMut,
}

impl Pending {
    /// Stores the remainder as the new tail (ending at `offset`, the upload's new offset)
    /// and says what the chunk added.
    pub async fn store_tail(
        self,
        storage: &Storage,
        tenant: TenantId,
        upload_id: Uuid,
        offset: u64,
    ) -> Result<StoredParts, StorageError> {
        let tail = if self.rest.is_empty() {
            None
        } else {
            let key = Storage::tail_key(tenant, upload_id, offset, Uuid::now_v7());
            let length = self.rest.len() as u64;
            storage.put_tail(&key, self.rest.freeze()).await?;
            Some(Tail { key, length })
        };
        Ok(StoredParts {
            first_part: self.first_part,
            e_tags: self.e_tags,
            tail,
        })
    }
}

/// Streams `body` into parts after the recorded ones.
pub async fn write<S, E, P>(
    storage: &Storage,
    upload: &Upload,
    multipart: &Multipart,
    mut body: ChunkBody<'_, S, P>,
) -> Result<(Written, Pending), StorageError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    P: Progress,
{
    let size = part_size(upload.max_size) as usize;
    let first_part = multipart.e_tags.len() as u32;
    let mut buffer = BytesMut::with_capacity(size);
    if let Some(tail) = &multipart.tail {
        buffer.extend_from_slice(&parts::read_tail(storage, tail).await?);
    }
    let mut e_tags = Vec::new();
    let ending = 'body: loop {
        let mut frame = match body.next().await {
            Ok(frame) => frame,
            Err(ending) => break ending,
        };
        while !frame.is_empty() {
            let take = (size - buffer.len()).min(frame.len());
            buffer.extend_from_slice(&frame.split_to(take));
            if buffer.len() == size {
                // A lapsed holder must not replace a part the new holder may record.
                if !body.lock_held() {
                    break 'body Ending::LockLost;
                }
                let index = first_part as usize + e_tags.len();
                let part = buffer.split().freeze();
                e_tags.push(
                    storage
                        .put_part(&upload.temp_key, &multipart.id, index, part)
                        .await?,
                );
                buffer.reserve(size);
            }
        }
    };
    let (bytes, checksum_ok) = body.finish(ending);
    let written = Written {
        bytes,
        ending,
        checksum_ok,
        // S3: completion hashes the assembled object.
        sha256: None,
        synced_in: std::time::Duration::ZERO,
    };
    Ok((
        written,
        Pending {
            first_part,
            e_tags,
            rest: buffer,
        },
    ))
}
