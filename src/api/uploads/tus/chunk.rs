//! Writing one chunk into an upload's temp file (local storage). The file may hold bytes
//! past the recorded offset (a PATCH that crashed after writing, before recording): it
//! is truncated to the recorded offset first, so file and aggregate never disagree about
//! a byte that counts. The bytes are fsynced before the caller records them: a 204 means
//! durable.
//!
//! The file is written by one blocking task per chunk, fed blocks over a short channel,
//! so receiving and hashing go on while a block is written. The blocking task writes
//! through [`ChunkFile`]: the chunk's aligned middle with `O_DIRECT`, its unaligned
//! edges through the page cache (chunk_file.rs says why). The closing `fdatasync` is
//! still what the 204 waits for.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::chunk_body::ChunkBody;
use super::chunk_file::ChunkFile;
use super::headers::Algorithm;

/// Writes go to disk in blocks of this size (the body arrives in ~16 KiB frames).
const WRITE_BUFFER: usize = 1024 * 1024;
/// Blocks received but not yet written: the memory a chunk may hold beyond the block
/// being filled.
const BLOCKS_IN_FLIGHT: usize = 4;

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

/// Appends `body` at `from` (after truncating to it), advancing `sha256` (the running
/// hash of the bytes before `from`) over it.
pub async fn write<S, E, P>(
    path: &Path,
    from: u64,
    mut sha256: Option<Sha256>,
    mut body: ChunkBody<'_, S, P>,
) -> std::io::Result<Written>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    P: Progress,
{
    let file = tokio::fs::OpenOptions::new().write(true).open(path).await?;
    let on_disk = file.metadata().await?.len();
    if on_disk < from {
        // Only possible if someone removed bytes behind the aggregate's back.
        return Err(std::io::Error::other(format!(
            "temp file holds {on_disk} bytes, fewer than the recorded offset {from}"
        )));
    }
    file.set_len(from).await?;
    let (file, path) = (file.into_std().await, path.to_path_buf());
    let (blocks, received) = mpsc::channel::<Bytes>(BLOCKS_IN_FLIGHT);
    let disk = tokio::task::spawn_blocking(move || {
        write_blocks(ChunkFile::new(file, &path, from), received)
    });
    let mut block = BytesMut::with_capacity(WRITE_BUFFER);
    let ending = loop {
        let frame = match body.next().await {
            Ok(frame) => frame,
            Err(ending) => break ending,
        };
        if let Some(h) = sha256.as_mut() {
            h.update(&frame);
        }
        block.extend_from_slice(&frame);
        if block.len() >= WRITE_BUFFER && blocks.send(block.split().freeze()).await.is_err() {
            // The writer stopped: its error is what this chunk fails with, below.
            break Ending::Cut;
        }
    };
    if !block.is_empty() {
        // A send fails only when the writer stopped; its error follows.
        let _ = blocks.send(block.freeze()).await;
    }
    drop(blocks);
    let synced_in = disk.await.map_err(std::io::Error::other)??;
    let (bytes, checksum_ok) = body.finish(ending);
    Ok(Written {
        bytes,
        ending,
        checksum_ok,
        sha256,
        synced_in,
    })
}

/// The chunk's blocking half: writes the blocks as they come, and once the channel
/// closes makes the file durable; returns how long that closing sync took.
fn write_blocks(
    mut file: ChunkFile,
    mut blocks: mpsc::Receiver<Bytes>,
) -> std::io::Result<Duration> {
    while let Some(block) = blocks.blocking_recv() {
        file.write(&block)?;
    }
    let syncing = Instant::now();
    file.sync()?;
    Ok(syncing.elapsed())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocking half appends after the bytes already there, block after block, and a
    /// block that is not a whole `WRITE_BUFFER` (the last one) as well.
    #[tokio::test]
    async fn blocks_are_appended_in_order() {
        let path = std::env::temp_dir().join(format!("chronicle-chunk-{}", uuid::Uuid::now_v7()));
        std::fs::write(&path, b"abc").unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let file = ChunkFile::new(file, &path, 3);
        let (tx, rx) = mpsc::channel(BLOCKS_IN_FLIGHT);
        let disk = tokio::task::spawn_blocking(move || write_blocks(file, rx));
        let mut expected = b"abc".to_vec();
        // 9.5 MiB in half blocks: an unaligned start, and a tail left to the closing sync.
        for i in 0..19u8 {
            let block = vec![i; WRITE_BUFFER / 2];
            expected.extend_from_slice(&block);
            tx.send(Bytes::from(block)).await.unwrap();
        }
        drop(tx);
        disk.await.unwrap().unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(on_disk.len(), expected.len());
        assert!(
            on_disk == expected,
            "the file's bytes differ from what was sent"
        );
    }
}
