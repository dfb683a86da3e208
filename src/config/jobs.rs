//! Settings of the worker side: the job queue, the temp sweeper, the blob garbage
//! collector and version retention.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::{ConfigError, invalid, parse_u64};

/// `WORKER_CONCURRENCY` when unset. A small file's job spends most of its time waiting
/// for device flushes (its two commits, the blob's directory entry) and Redis, so a
/// worker's throughput is about its concurrency over a job's latency until the CPU is
/// busy. `chronicle bench upload --small-only` on two cores with nothing else running
/// (docs/benchmarks.md): completed 62–70 % of the accepted rate at 8, 78–83 % at 16,
/// 90–96 % at 32 on the machine of that time; on a later one 83–84 % at 32, 86–89 % at
/// 64, no better at 128. A large file's job is one blocking thread hashing and scanning
/// 1 MiB at a time, so 64 of them hold at most 64 MiB of buffers; they share the
/// worker's few database connections (a job holds one only to commit). Image
/// optimisation, which decodes whole pictures, runs for at most as many jobs at once as
/// there are cores, whatever this is (`Worker::optimising`).
pub const DEFAULT_WORKER_CONCURRENCY: usize = 64;

/// The processing queue and its workers.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Jobs one worker process runs at once (`WORKER_CONCURRENCY`, default 64); 0 makes a
    /// worker that runs projectors only and takes no jobs.
    pub concurrency: usize,
    /// Attempts before a job is dead-lettered (`JOB_MAX_ATTEMPTS`, default 3).
    pub max_attempts: u32,
    /// First retry delay; each further one is 5× longer, with full jitter
    /// (`JOB_BACKOFF_BASE_MS`, default 5000: ~5 s, 25 s, 125 s).
    pub backoff_base: Duration,
    /// A delivered job not acknowledged or extended for this long is redelivered
    /// (`JOB_VISIBILITY_TIMEOUT_SECS`, default 300).
    pub visibility_timeout: Duration,
    /// How often unfinished jobs in Postgres are checked against the Redis queue, which
    /// may have lost them (`JOB_RECONCILE_SECS`, default 30).
    pub reconcile_every: Duration,
    /// Temporary objects no unfinished version points at are removed once they are this
    /// old (`TEMP_SWEEP_AFTER_SECS`, default 86400): leftovers of crashes between upload
    /// and commit, or between a verdict and the cleanup.
    pub temp_sweep_after: Duration,
    /// Purge, garbage collection and retention (src/worker/gc.rs).
    pub gc: GcSettings,
}

/// The blob garbage collector and version retention, run by the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcSettings {
    /// A blob is deleted only when its last reference went away longer ago than this
    /// (`BLOB_GC_GRACE_SECS`, default 86400): an operator can undo a purge meanwhile.
    pub grace: Duration,
    /// How often the collector (and retention) runs (`BLOB_GC_EVERY_SECS`, default 600).
    pub every: Duration,
    /// Keep the newest N completed versions of each file (`VERSION_RETENTION`); `None`
    /// (unset) keeps every version.
    pub version_retention: Option<u32>,
}

impl JobSettings {
    pub(super) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let concurrency = parse_within(
            get,
            "WORKER_CONCURRENCY",
            DEFAULT_WORKER_CONCURRENCY as u64,
            0..=256,
        )?;
        let max_attempts = parse_within(get, "JOB_MAX_ATTEMPTS", 3, 1..=100)?;
        let backoff_ms = parse_within(get, "JOB_BACKOFF_BASE_MS", 5000, 1..=3_600_000)?;
        let visibility = parse_within(get, "JOB_VISIBILITY_TIMEOUT_SECS", 300, 1..=86_400)?;
        let sweep_after = parse_within(get, "TEMP_SWEEP_AFTER_SECS", 86_400, 1..=30 * 86_400)?;
        let reconcile = parse_within(get, "JOB_RECONCILE_SECS", 30, 1..=86_400)?;
        let grace = parse_within(get, "BLOB_GC_GRACE_SECS", 86_400, 0..=365 * 86_400)?;
        let gc_every = parse_within(get, "BLOB_GC_EVERY_SECS", 600, 1..=86_400)?;
        let version_retention = match get("VERSION_RETENTION") {
            None => None,
            Some(_) => {
                let keep = parse_within(get, "VERSION_RETENTION", 0, 1..=1_000_000)?;
                Some(keep as u32)
            }
        };
        Ok(Self {
            gc: GcSettings {
                grace: Duration::from_secs(grace),
                every: Duration::from_secs(gc_every),
                version_retention,
            },
            concurrency: concurrency as usize,
            max_attempts: max_attempts as u32,
            backoff_base: Duration::from_millis(backoff_ms),
            visibility_timeout: Duration::from_secs(visibility),
            reconcile_every: Duration::from_secs(reconcile),
            temp_sweep_after: Duration::from_secs(sweep_after),
        })
    }
}

/// `var` as a whole number within `range` (`default` when unset).
pub(super) fn parse_within(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
    range: RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let value = parse_u64(get, var, default)?;
    if !range.contains(&value) {
        return Err(invalid(
            var,
            format!("must be between {} and {}", range.start(), range.end()),
        ));
    }
    Ok(value)
}
