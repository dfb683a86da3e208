//! The synchronous core of the builtin scanner: bytes are pushed in chunks of any size and
//! every signature is matched as if the stream were one buffer, in constant memory.
//!
//! A `ContentScan` scans one stream (the input, or one archive member): body patterns and
//! whole-stream hashes (`StreamScan`), plus a `ZipScan` that finds zip members inside it
//! and scans each with a nested `ContentScan`.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::builtin::ArchiveLimits;
use super::pattern::BodyOffset;
use super::signatures::SignatureDb;
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
pub(crate) struct StreamScan {
    /// The last `max_body_len - 1` bytes seen, then the current chunk: a pattern that
    /// straddles a chunk boundary is whole in here.
    window: Vec<u8>,
    /// Bytes of the stream seen so far (absolute offset of the window's end).
    seen: u64,
    /// Per `db.fixed` entry: decided already (its bytes have all been seen).
    fixed_done: Vec<bool>,
    md5: Option<Md5>,
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
}

impl StreamScan {
    pub fn new(db: &SignatureDb) -> Self {
        Self {
            window: Vec::new(),
            seen: 0,
            fixed_done: vec![false; db.fixed.len()],
            md5: db.needs_md5.then(Md5::new),
            sha1: db.needs_sha1.then(Sha1::new),
            sha256: db.needs_sha256.then(Sha256::new),
        }
    }

    pub fn update(&mut self, db: &SignatureDb, chunk: &[u8]) -> Result<(), Found> {
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(h) = &mut self.md5 {
            h.update(chunk);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(chunk);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(chunk);
        }
        if db.max_body_len == 0 {
            self.seen += chunk.len() as u64;
            return Ok(());
        }
        let window_start = self.seen - self.window.len() as u64;
        self.window.extend_from_slice(chunk);
        self.seen += chunk.len() as u64;
        let result = self.match_body(db, window_start);
        let keep = (db.max_body_len - 1).min(self.window.len());
        self.window.drain(..self.window.len() - keep);
        result
    }

    fn match_body(&mut self, db: &SignatureDb, window_start: u64) -> Result<(), Found> {
        let window = &self.window;
        if let Some(anchors) = &db.anchors {
            for hit in anchors.find_overlapping_iter(window.as_slice()) {
                for &i in &db.anchor_sigs[hit.pattern().as_usize()] {
                    let sig = &db.body[i];
                    if let Some(start) = hit.start().checked_sub(sig.anchor_at)
                        && sig.matches_at(&window[start..])
                    {
                        return Err(Found(sig.name.clone()));
                    }
                }
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
            // The window always reaches back far enough: see the tail kept in `update`.
            if let Some(rel) = at.checked_sub(window_start)
                && sig.matches_at(&window[rel as usize..])
            {
                return Err(Found(sig.name.clone()));
            }
        }
        Ok(())
    }

    /// The stream ended: compare its hashes.
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
