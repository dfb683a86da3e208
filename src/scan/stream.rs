//! The synchronous core of the builtin scanner: bytes are pushed in chunks of any size and
//! every signature is matched as if the stream were one buffer, in constant memory.
//!
//! A `ContentScan` scans one stream (the input, or one archive member): body patterns and
//! whole-stream hashes (`StreamScan`), plus a `ZipScan` that finds zip members inside it
//! and scans each with a nested `ContentScan`.

use aho_corasick::AhoCorasick;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::builtin::ArchiveLimits;
use super::pattern::BodyOffset;
use super::signatures::{HashReach, SignatureDb};
use super::zip::ZipScan;

/// A detection: the signature (or limit heuristic) name. Returned as an `Err` so `?`
/// stops all scanning at the first hit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Found(pub String);

/// Work done inside archives so far, across every nesting level of one input.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    /// Bytes of the input itself read so far.
    pub input_bytes: u64,
    pub archive_bytes: u64,
    pub members: u64,
}

impl Budget {
    /// Counts `n` more extracted bytes; false once past the limits.
    pub fn extract(&mut self, n: usize, limits: &ArchiveLimits) -> bool {
        self.archive_bytes += n as u64;
        let allowed = limits
            .max_archive_bytes
            .max(limits.max_expansion.saturating_mul(self.input_bytes));
        self.archive_bytes <= allowed
    }
}

/// What every level of a scan shares.
pub(crate) struct Ctx<'a> {
    pub db: &'a SignatureDb,
    pub limits: &'a ArchiveLimits,
    pub budget: &'a mut Budget,
}

/// Body patterns and hashes over one stream.
///
/// Each chunk is searched where it lies, without being copied: a pattern occurrence is
/// found when its last byte arrives, inside the chunk if it starts there, otherwise in
/// the `seam` (the `max_body_len - 1` bytes before the chunk followed by as many of the
/// chunk's first bytes), which holds every occurrence that straddles the boundary.
pub(crate) struct StreamScan {
    /// The last `max_body_len - 1` bytes of the stream before the current chunk.
    tail: Vec<u8>,
    /// Scratch for `tail` + the current chunk's head; reused, so no allocation per chunk.
    seam: Vec<u8>,
    /// Bytes of the stream seen so far, the current chunk included.
    seen: u64,
    /// Per `db.fixed` entry: decided already (its bytes have all been seen).
    fixed_done: Vec<bool>,
    /// Dropped once the stream is longer than any signature of that digest can match.
    md5: Option<Md5>,
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
}

/// Hashes `chunk` into `hasher` while a stream ending at `end` bytes can still match a
/// signature of that digest; drops the hasher for good once it cannot.
fn feed<H: Digest>(hasher: &mut Option<H>, reach: HashReach, end: u64, chunk: &[u8]) {
    if let Some(h) = hasher {
        if reach.covers(end) {
            h.update(chunk);
        } else {
            *hasher = None;
        }
    }
}

impl StreamScan {
    pub fn new(db: &SignatureDb) -> Self {
        Self {
            tail: Vec::new(),
            seam: Vec::new(),
            seen: 0,
            fixed_done: vec![false; db.fixed.len()],
            md5: db.md5.covers(0).then(Md5::new),
            sha1: db.sha1.covers(0).then(Sha1::new),
            sha256: db.sha256.covers(0).then(Sha256::new),
        }
    }

    pub fn update(&mut self, db: &SignatureDb, chunk: &[u8]) -> Result<(), Found> {
        if chunk.is_empty() {
            return Ok(());
        }
        let chunk_start = self.seen;
        self.seen += chunk.len() as u64;
        feed(&mut self.md5, db.md5, self.seen, chunk);
        feed(&mut self.sha1, db.sha1, self.seen, chunk);
        feed(&mut self.sha256, db.sha256, self.seen, chunk);
        if db.max_body_len == 0 {
            return Ok(());
        }
        let keep = db.max_body_len - 1;
        self.seam.clear();
        self.seam.extend_from_slice(&self.tail);
        self.seam.extend_from_slice(&chunk[..keep.min(chunk.len())]);
        let seam_start = chunk_start - self.tail.len() as u64;
        let result = self.match_body(db, chunk, chunk_start, seam_start);
        if chunk.len() >= keep {
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - keep..]);
        } else {
            self.tail.extend_from_slice(chunk);
            let excess = self.tail.len().saturating_sub(keep);
            self.tail.drain(..excess);
        }
        result
    }

    fn match_body(
        &mut self,
        db: &SignatureDb,
        chunk: &[u8],
        chunk_start: u64,
        seam_start: u64,
    ) -> Result<(), Found> {
        if let Some(anchors) = &db.anchors {
            search(db, anchors, &self.seam)?;
            // A chunk shorter than the seam's share of it was searched whole in there.
            if chunk.len() > db.max_body_len - 1 {
                search(db, anchors, chunk)?;
            }
        }
        for (done, &i) in self.fixed_done.iter_mut().zip(&db.fixed) {
            let sig = &db.body[i];
            let BodyOffset::At(at) = sig.offset else {
                continue;
            };
            if *done || at.saturating_add(sig.pattern.len() as u64) > self.seen {
                continue;
            }
            *done = true;
            // Undecided until now, so the pattern ends in this chunk: it lies in the chunk
            // if it starts there, otherwise in the seam (it is at most `keep + 1` long).
            let bytes = match at.checked_sub(chunk_start) {
                Some(rel) => &chunk[rel as usize..],
                None => match at.checked_sub(seam_start) {
                    Some(rel) => &self.seam[rel as usize..],
                    None => continue, // unreachable: the seam reaches back far enough
                },
            };
            if sig.matches_at(bytes) {
                return Err(Found(sig.name.clone()));
            }
        }
        Ok(())
    }

    /// The stream ended: compare its hashes (those still kept: see `HashReach`).
    pub fn finish(self, db: &SignatureDb) -> Result<(), Found> {
        let size = self.seen;
        let digests = [
            self.md5.map(|h| h.finalize().to_vec()),
            self.sha1.map(|h| h.finalize().to_vec()),
            self.sha256.map(|h| h.finalize().to_vec()),
        ];
        for digest in digests.iter().flatten() {
            if let Some(name) = db.hash_match(digest, size) {
                return Err(Found(name.to_string()));
            }
        }
        Ok(())
    }
}

/// Every `offset *` signature whose anchor occurs in `bytes` and whose whole pattern
/// lies there too. Overlapping: one anchor occurrence must not hide another.
fn search(db: &SignatureDb, anchors: &AhoCorasick, bytes: &[u8]) -> Result<(), Found> {
    for hit in anchors.find_overlapping_iter(bytes) {
        for &i in &db.anchor_sigs[hit.pattern().as_usize()] {
            let sig = &db.body[i];
            if let Some(start) = hit.start().checked_sub(sig.anchor_at)
                && sig.matches_at(&bytes[start..])
            {
                return Err(Found(sig.name.clone()));
            }
        }
    }
    Ok(())
}

/// One stream at one nesting depth (0 = the input itself).
pub(crate) struct ContentScan {
    sigs: StreamScan,
    zip: ZipScan,
}

impl ContentScan {
    pub fn new(db: &SignatureDb, depth: u32) -> Self {
        Self {
            sigs: StreamScan::new(db),
            zip: ZipScan::new(depth + 1),
        }
    }

    pub fn update(&mut self, ctx: &mut Ctx<'_>, chunk: &[u8]) -> Result<(), Found> {
        self.sigs.update(ctx.db, chunk)?;
        self.zip.update(ctx, chunk)
    }

    pub fn finish(self, ctx: &mut Ctx<'_>) -> Result<(), Found> {
        self.zip.finish(ctx)?;
        self.sigs.finish(ctx.db)
    }
}
