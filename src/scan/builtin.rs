//! The embedded scanner: the zero-setup default. Reads the input in chunks and matches
//! the signature database (see `signatures.rs` for the supported formats) as it goes, also
//! inside zip archives, in memory that does not grow with the input.

use std::sync::Arc;

use tokio::io::AsyncReadExt;

use super::signatures::SignatureDb;
use super::stream::{Budget, ContentScan, Ctx, Found};
use super::{ScanError, ScanSession, Scanner, Verdict};

/// Bytes handed to a blocking thread at a time. Reads are gathered up to this size first:
/// storage streams yield 8 KiB pieces, and a thread hand-off per piece cost more than the
/// matching itself.
const READ_CHUNK: usize = 1024 * 1024;

/// Bounds on the work one input may cause inside archives (zip bombs). Exceeding one is a
/// detection named like ClamAV's (`Heuristics.Limits.Exceeded.*`): an archive that cannot
/// be inspected completely is not passed as clean.
///
/// Extraction may reach `max_archive_bytes` or `max_expansion` times the input read so
/// far, whichever is larger: a bomb is flagged after a bounded amount of work, while a big
/// archive of already-compressed files (extracting to about its own size) still passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Bytes extracted from archive members, all nesting levels together…
    pub max_archive_bytes: u64,
    /// …or this many times the input's size, if that is more.
    pub max_expansion: u64,
    /// Archive members, all nesting levels together.
    pub max_members: u64,
    /// Deepest archive member inspected: 1 = members of a zip, 2 = zip in a zip, …
    pub max_depth: u32,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_archive_bytes: 1 << 30,
            max_expansion: 10,
            max_members: 100_000,
            max_depth: 4,
        }
    }
}

pub struct BuiltinScanner {
    db: Arc<SignatureDb>,
    limits: ArchiveLimits,
}

/// Scan state of one input, moved to a blocking thread for each chunk.
struct Session {
    root: ContentScan,
    budget: Budget,
}

impl Session {
    fn new(db: &SignatureDb) -> Self {
        Self {
            root: ContentScan::new(db, 0),
            budget: Budget::default(),
        }
    }

    fn update(
        &mut self,
        db: &SignatureDb,
        limits: &ArchiveLimits,
        chunk: &[u8],
    ) -> Result<(), Found> {
        self.budget.input_bytes += chunk.len() as u64;
        let mut ctx = Ctx {
            db,
            limits,
            budget: &mut self.budget,
        };
        self.root.update(&mut ctx, chunk)
    }

    fn finish(mut self, db: &SignatureDb, limits: &ArchiveLimits) -> Verdict {
        let mut ctx = Ctx {
            db,
            limits,
            budget: &mut self.budget,
        };
        verdict(self.root.finish(&mut ctx))
    }
}

fn verdict(result: Result<(), Found>) -> Verdict {
    match result {
        Ok(()) => Verdict::Clean,
        Err(Found(signature)) => Verdict::Infected { signature },
    }
}

impl BuiltinScanner {
    pub fn new(db: SignatureDb, limits: ArchiveLimits) -> Self {
        Self {
            db: Arc::new(db),
            limits,
        }
    }

    pub fn signature_count(&self) -> usize {
        self.db.len()
    }

    /// Scans bytes already in memory, fed in `chunk`-sized pieces (tests use odd sizes to
    /// prove that matches across chunk boundaries are found).
    pub fn scan_slice(&self, bytes: &[u8], chunk: usize) -> Verdict {
        self.scan_pieces(bytes.chunks(chunk.max(1)))
    }

    /// Scans a stream that arrives in `pieces` of any sizes (the fuzz targets choose them).
    pub fn scan_pieces<'a>(&self, pieces: impl IntoIterator<Item = &'a [u8]>) -> Verdict {
        let mut session = Session::new(&self.db);
        for piece in pieces {
            if let Err(found) = session.update(&self.db, &self.limits, piece) {
                return verdict(Err(found));
            }
        }
        session.finish(&self.db, &self.limits)
    }
}

/// The builtin scanner fed by a caller that reads the input itself.
struct FedSession {
    db: Arc<SignatureDb>,
    limits: ArchiveLimits,
    session: Session,
}

impl ScanSession for FedSession {
    fn update(&mut self, chunk: &[u8]) -> Option<Verdict> {
        self.session
            .update(&self.db, &self.limits, chunk)
            .err()
            .map(|found| verdict(Err(found)))
    }

    fn finish(self: Box<Self>) -> Verdict {
        self.session.finish(&self.db, &self.limits)
    }
}

#[async_trait::async_trait]
impl Scanner for BuiltinScanner {
    fn name(&self) -> &'static str {
        "builtin"
    }

    fn session(&self) -> Option<Box<dyn ScanSession>> {
        Some(Box::new(FedSession {
            db: Arc::clone(&self.db),
            limits: self.limits,
            session: Session::new(&self.db),
        }))
    }

    async fn scan(
        &self,
        input: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    ) -> Result<Verdict, ScanError> {
        let mut session = Session::new(&self.db);
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let mut n = 0;
            while n < buf.len() {
                match input.read(&mut buf[n..]).await? {
                    0 => break,
                    read => n += read,
                }
            }
            if n == 0 {
                break;
            }
            // Hashing and inflating are CPU work (a deflate bomb chunk can expand a
            // thousandfold): keep it off the async worker threads.
            let (db, limits) = (Arc::clone(&self.db), self.limits);
            let (returned, chunk_buf, result) = tokio::task::spawn_blocking(move || {
                let result = session.update(&db, &limits, &buf[..n]);
                (session, buf, result)
            })
            .await
            .map_err(|e| ScanError::Unavailable(format!("builtin scanner task failed: {e}")))?;
            if let Err(found) = result {
                return Ok(verdict(Err(found)));
            }
            session = returned;
            buf = chunk_buf;
        }
        let (db, limits) = (Arc::clone(&self.db), self.limits);
        tokio::task::spawn_blocking(move || session.finish(&db, &limits))
            .await
            .map_err(|e| ScanError::Unavailable(format!("builtin scanner task failed: {e}")))
    }
}
