//! Virus scanning for the worker pipeline: one `Scanner` trait, three implementations.
//!
//! - `clamd`: real ClamAV over TCP (INSTREAM), with timeouts and a circuit breaker;
//! - `builtin`: an embedded, streaming scanner over a documented subset of ClamAV's
//!   `.hdb`/`.hsb`/`.ndb` formats that also looks inside zip archives; the project's
//!   `signatures/` are compiled in, so a zero-setup run still scans;
//! - `none`: scanning switched off on purpose (`SCANNER=none`), warned about at every start.
//!
//! The worker treats `ScanError` as "not scanned": the job is retried, the file never
//! passes. See docs/architecture.md, "Virus scanning".

mod breaker;
mod builtin;
mod clamd;
mod pattern;
mod settings;
mod signatures;
mod stream;
mod zip;

#[cfg(test)]
mod test_zip;
#[cfg(test)]
mod tests;

pub use breaker::CircuitBreaker;
pub use builtin::{ArchiveLimits, BuiltinScanner};
pub use clamd::{ClamdOptions, ClamdScanner};
pub use settings::{ScanSettings, ScannerKind};
pub use signatures::{SignatureDb, SignatureError};

/// What a scan concluded about the bytes it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// `signature` is the scanner's name for what it found (e.g. `Chronicle.Test.EICAR`).
    Infected {
        signature: String,
    },
}

/// A scan that reached no verdict. Never a reason to let a file through: the caller retries.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The scanner could not give a verdict: unreachable, timed out, circuit open, or it
    /// refused the input (e.g. clamd's StreamMaxLength). Retry later.
    #[error("scanner unavailable: {0}")]
    Unavailable(String),
    /// Reading the input failed; the scanner itself is fine.
    #[error("reading the input to scan failed: {0}")]
    Io(#[from] std::io::Error),
}

#[async_trait::async_trait]
pub trait Scanner: Send + Sync {
    /// Short name for logs and metrics: `clamd`, `builtin` or `none`.
    fn name(&self) -> &'static str;

    /// Reads `input` (to its end, unless a verdict comes earlier) and returns the verdict.
    async fn scan(
        &self,
        input: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    ) -> Result<Verdict, ScanError>;

    /// A scan the caller feeds itself, synchronously, for scanners that run in-process
    /// (`None`: use `scan`). The worker reads an upload once for its hash, its type and
    /// this scan, instead of once per purpose.
    fn session(&self) -> Option<Box<dyn ScanSession>> {
        None
    }

    /// Whether the scanner can take work now (for readiness probes). Embedded scanners are
    /// always ready; clamd answers `PING`.
    async fn health(&self) -> Result<(), ScanError> {
        Ok(())
    }
}

/// A scan fed chunk by chunk (CPU work: call it off the async threads).
pub trait ScanSession: Send {
    /// Scans the next bytes of the input; `Some` once the verdict is known early (a
    /// detection), after which the rest need not be read.
    fn update(&mut self, chunk: &[u8]) -> Option<Verdict>;

    /// The input ended: the verdict.
    fn finish(self: Box<Self>) -> Verdict;
}

/// `SCANNER=none`: every input is reported clean without being read.
pub struct DisabledScanner;

#[async_trait::async_trait]
impl Scanner for DisabledScanner {
    fn name(&self) -> &'static str {
        "none"
    }

    async fn scan(
        &self,
        _input: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    ) -> Result<Verdict, ScanError> {
        Ok(Verdict::Clean)
    }

    fn session(&self) -> Option<Box<dyn ScanSession>> {
        Some(Box::new(DisabledScanner))
    }
}

impl ScanSession for DisabledScanner {
    fn update(&mut self, _chunk: &[u8]) -> Option<Verdict> {
        None
    }

    fn finish(self: Box<Self>) -> Verdict {
        Verdict::Clean
    }
}
