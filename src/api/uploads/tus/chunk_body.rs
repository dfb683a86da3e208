//! A PATCH body as both chunk writers (local file, S3 parts) read it: frame by frame
//! until the body ends, breaks, goes silent, exceeds the room the upload has left, or the
//! request's lease on the upload lapses — computing `Upload-Checksum` on the way and
//! reporting progress. The writers differ only in where a frame goes.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::chunk::{Ending, Hasher, Progress};
use super::headers::Checksum;
use crate::uploads::lock::UploadLock;

/// What stops a chunk, besides the body itself.
pub struct Limits<'a> {
    /// The bytes the upload may still take (its length, or its maximum size, minus the
    /// offset).
    pub room: u64,
    /// How long the client may stay silent.
    pub idle: Duration,
    /// This request's lease on the upload.
    pub lock: &'a UploadLock,
}

pub struct ChunkBody<'a, S, P> {
    body: S,
    limits: Limits<'a>,
    checksum: Option<&'a Checksum>,
    hasher: Option<Hasher>,
    progress: &'a mut P,
    received: u64,
    reported: u64,
}

impl<'a, S, E, P> ChunkBody<'a, S, P>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    P: Progress,
{
    pub fn new(
        body: S,
        limits: Limits<'a>,
        checksum: Option<&'a Checksum>,
        progress: &'a mut P,
    ) -> Self {
        ChunkBody {
            body,
            limits,
            hasher: checksum.map(|c| Hasher::new(c.algorithm)),
            checksum,
            progress,
            received: 0,
            reported: 0,
        }
    }

    /// The next frame (already counted and hashed), or how the body ended. The frames
    /// before it are reported as received first: by then the writer has taken them.
    pub async fn next(&mut self) -> Result<Bytes, Ending> {
        if self.received > self.reported {
            self.progress.received(self.received);
            self.reported = self.received;
        }
        if !self.lock_held() {
            return Err(Ending::LockLost);
        }
        let frame = match tokio::time::timeout(self.limits.idle, self.body.next()).await {
            Err(_) | Ok(Some(Err(_))) => return Err(Ending::Cut),
            Ok(None) => return Err(Ending::Complete),
            Ok(Some(Ok(frame))) => frame,
        };
        if self.received + frame.len() as u64 > self.limits.room {
            return Err(Ending::TooLarge);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&frame);
        }
        self.received += frame.len() as u64;
        Ok(frame)
    }

    /// Whether this request still holds the upload: a lapsed holder must not write
    /// what the new holder may record.
    pub fn lock_held(&self) -> bool {
        self.limits.lock.is_held()
    }

    /// The bytes taken, and whether they match `Upload-Checksum` (`None` without one,
    /// or when the body did not arrive whole).
    pub fn finish(self, ending: Ending) -> (u64, Option<bool>) {
        let checksum_ok = match (self.checksum, self.hasher, ending) {
            (Some(expected), Some(h), Ending::Complete) => Some(h.finish() == expected.digest),
            _ => None,
        };
        (self.received, checksum_ok)
    }
}
