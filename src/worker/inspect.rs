//! Reading a temporary upload once: its SHA-256, size and first bytes (for type
//! detection) and, when the scanner runs in-process, the virus scan, all from the same
//! pass. A 1 GiB upload used to be read three times (hash, scan, copy) in 8 KiB pieces,
//! each piece handed to a thread; now it is read once, 1 MiB at a time, on one blocking
//! thread (local storage) or gathered from the object stream (S3). Memory stays one buffer.

use std::io::Read;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::JobError;
use crate::scan::{ScanSession, Verdict};
use crate::storage::Storage;

/// Bytes read and processed at a time.
const BLOCK: usize = 1024 * 1024;
/// Bytes kept for type detection (`uploads::mime::detect`).
const HEAD: usize = 512;

/// What the bytes turned out to be.
pub(super) struct Inspected {
    pub sha256: String,
    pub size: u64,
    pub head: Vec<u8>,
    /// The scan's verdict when a session was fed in the same pass.
    pub verdict: Option<Verdict>,
}

/// The state of one pass; everything in it is CPU work on bytes already read.
struct Pass {
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
    scan: Option<Box<dyn ScanSession>>,
    /// A detection before the end: the rest is still hashed, no longer scanned.
    early: Option<Verdict>,
}

impl Pass {
    fn new(scan: Option<Box<dyn ScanSession>>) -> Self {
        Self {
            hasher: Sha256::new(),
            size: 0,
            head: Vec::with_capacity(HEAD),
            scan,
            early: None,
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        if self.head.len() < HEAD {
            let take = (HEAD - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.size += chunk.len() as u64;
        self.hasher.update(chunk);
        if self.early.is_none()
            && let Some(scan) = self.scan.as_mut()
        {
            self.early = scan.update(chunk);
        }
    }

    fn finish(self) -> Inspected {
        let verdict = match (self.early, self.scan) {
            (Some(found), _) => Some(found),
            (None, Some(scan)) => Some(scan.finish()),
            (None, None) => None,
        };
        Inspected {
            sha256: hex::encode(self.hasher.finalize()),
            size: self.size,
            head: self.head,
            verdict,
        }
    }
}

/// Reads `key` once, feeding `scan` (if any) with the same bytes.
pub(super) async fn inspect(
    storage: &Storage,
    key: &str,
    scan: Option<Box<dyn ScanSession>>,
) -> Result<Inspected, JobError> {
    let pass = Pass::new(scan);
    match storage.local_path(key) {
        Some(path) => tokio::task::spawn_blocking(move || read_file(&path, pass))
            .await
            .map_err(|e| JobError::Retry(format!("reading temporary bytes: {e}")))?
            .map_err(|e| JobError::Retry(format!("reading temporary bytes: {e}"))),
        None => read_stream(storage, key, pass).await,
    }
}

fn read_file(path: &std::path::Path, mut pass: Pass) -> std::io::Result<Inspected> {
    let mut file = std::fs::File::open(path)?;
    // A small file needs a small buffer: zeroing (and mapping) 1 MiB per 10 KiB file
    // cost more than reading it. One byte more than the file, so its end reads as 0.
    let len = file.metadata().map(|m| m.len()).unwrap_or(BLOCK as u64);
    let mut buf = vec![0u8; (len as usize).saturating_add(1).clamp(1, BLOCK)];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(pass.finish());
        }
        pass.feed(&buf[..n]);
    }
}

/// Object storage yields small pieces: gathered into blocks, each processed off the
/// async threads.
async fn read_stream(storage: &Storage, key: &str, mut pass: Pass) -> Result<Inspected, JobError> {
    let retry =
        |e: &dyn std::fmt::Display| JobError::Retry(format!("reading temporary bytes: {e}"));
    let object = storage.read(key, None).await.map_err(|e| retry(&e))?;
    let mut stream = object.stream;
    let mut block = Vec::with_capacity(BLOCK);
    loop {
        let next = stream.next().await;
        if let Some(chunk) = &next {
            let chunk = chunk.as_ref().map_err(|e| retry(e))?;
            block.extend_from_slice(chunk);
            if block.len() < BLOCK {
                continue;
            }
        }
        let done = next.is_none();
        let (returned, emptied) = tokio::task::spawn_blocking(move || {
            pass.feed(&block);
            block.clear();
            (pass, block)
        })
        .await
        .map_err(|e| retry(&e))?;
        pass = returned;
        block = emptied;
        if done {
            return Ok(pass.finish());
        }
    }
}
