//! Writing one chunk into an upload's temp file (local storage). The file may hold bytes
//! past the recorded offset (a PATCH that crashed after writing, before recording): it
//! is truncated to the recorded offset first, so file and aggregate never disagree about
//! a byte that counts. The bytes are fsynced before the caller records them: a 204 means
//! durable.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

use super::headers::{Algorithm, Checksum};
use crate::uploads::lock::UploadLock;

/// Writes go to disk in blocks of this size (the body arrives in ~16 KiB frames).
const WRITE_BUFFER: usize = 1024 * 1024;

/// How the body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every byte the client sent arrived.
    Complete,
    /// The connection broke, or the client went silent: what arrived is kept.
    Cut,
    /// More bytes than the upload may still take: nothing of this chunk counts.
    TooLarge,
    /// This request's lease on the upload lapsed: it stopped writing.
    LockLost,
}

#[derive(Debug)]
pub struct Written {
    pub bytes: u64,
    pub ending: Ending,
    /// Whether `Upload-Checksum` matched (`None` without one, or when the body was cut).
    pub checksum_ok: Option<bool>,
    /// The running SHA-256 passed in, advanced over the bytes written.
    pub sha256: Option<Sha256>,
    /// How long the final `fsync` took (the request's phase timings).
    pub synced_in: Duration,
}

pub(super) enum Hasher {
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Hasher {
    pub(super) fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha1 => Hasher::Sha1(Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
        }
    }
    pub(super) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }
    pub(super) fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// Sizes are reported to `progress` as they arrive (throttled by the caller).
pub trait Progress {
    fn received(&mut self, total_in_chunk: u64);
}

/// Appends `body` at `from` (after truncating to it), at most `room` bytes, advancing
/// `sha256` (the running hash of the bytes before `from`) over them. Stops early when
/// the body breaks, goes silent for `idle`, or the lock lapses.
#[allow(clippy::too_many_arguments)]
pub async fn write<S, E>(
    path: &Path,
    from: u64,
    room: u64,
    mut body: S,
    checksum: Option<&Checksum>,
    mut sha256: Option<Sha256>,
    lock: &UploadLock,
    idle: Duration,
    progress: &mut impl Progress,
) -> std::io::Result<Written>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut file = tokio::fs::OpenOptions::new().write(true).open(path).await?;
    let on_disk = file.metadata().await?.len();
    if on_disk < from {
        // Only possible if someone removed bytes behind the aggregate's back.
        return Err(std::io::Error::other(format!(
            "temp file holds {on_disk} bytes, fewer than the recorded offset {from}"
        )));
    }
    file.set_len(from).await?;
    file.seek(std::io::SeekFrom::Start(from)).await?;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut hasher = checksum.map(|c| Hasher::new(c.algorithm));
    let mut written: u64 = 0;
    let ending = loop {
        if !lock.is_held() {
            break Ending::LockLost;
        }
        let frame = match tokio::time::timeout(idle, body.next()).await {
            Err(_) | Ok(Some(Err(_))) => break Ending::Cut,
            Ok(None) => break Ending::Complete,
            Ok(Some(Ok(frame))) => frame,
        };
        if written + frame.len() as u64 > room {
            break Ending::TooLarge;
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&frame);
        }
        if let Some(h) = sha256.as_mut() {
            h.update(&frame);
        }
        out.write_all(&frame).await?;
        written += frame.len() as u64;
        progress.received(written);
    };
    out.flush().await?;
    let file = out.into_inner();
    let syncing = Instant::now();
    file.sync_data().await?;
    let synced_in = syncing.elapsed();
    let checksum_ok = match (checksum, hasher, ending) {
        (Some(expected), Some(h), Ending::Complete) => Some(h.finish() == expected.digest),
        _ => None,
    };
    Ok(Written {
        bytes: written,
        ending,
        checksum_ok,
        sha256,
        synced_in,
    })
}

/// Cuts the file back to `offset`: a discarded chunk leaves no trace.
pub async fn truncate(path: &Path, offset: u64) -> std::io::Result<()> {
    let file = tokio::fs::OpenOptions::new().write(true).open(path).await?;
    file.set_len(offset).await?;
    file.sync_data().await
}

/// Creates the empty temp file of a new upload (and its directory), durably.
pub async fn create(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await?;
    file.sync_all().await?;
    if let Some(dir) = path.parent() {
        // The new directory entry must survive a crash too.
        tokio::fs::File::open(dir).await?.sync_all().await?;
    }
    Ok(())
}

/// Calls `f` at most every `every` (the first call passes).
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Throttle { every, last: None }
    }

    pub fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < self.every)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}
