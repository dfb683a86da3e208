//! Cache-aside in Redis for `GET /v1/files/{id}`, with single-flight loads.
//!
//! - **Keys carry the tenant**: `{REDIS_KEY_PREFIX}cache:file:{tenant}:{file}` holds the
//!   JSON body the endpoint returns, with a TTL. The value is the tenant's view of the
//!   file; who may see it is decided per request, on cached values too.
//! - **Invalidation deletes, never rewrites**: the files projector, after its batch
//!   commits, deletes the key of every file the batch touched (`invalidate_files`).
//! - **The race and how it is closed**: a reader that misses, reads Postgres, and writes
//!   its result after the projector's delete would put a stale body back. Each key has a
//!   generation counter (`…:gen`) that the invalidation increments with the delete; a
//!   reader notes the generation *before* reading Postgres and writes only if it is
//!   unchanged (one Lua script, atomic). An invalidation that happens during the read
//!   therefore cancels the write. What remains — an invalidation lost because Redis was
//!   unreachable when the projector ran — is bounded by the TTL (`FILE_CACHE_TTL_SECS`).
//! - **Single-flight**: concurrent misses of one key on this instance share one
//!   database read, which first re-checks Redis (a load that just finished filled it).
//! - **Redis down**: every call has a short deadline and a breaker skips Redis for a
//!   second after a failure; requests are served from Postgres, never failed.

pub mod listing;
mod single_flight;
pub mod standing;

pub use single_flight::SingleFlight;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use uuid::Uuid;

use crate::breaker::Breaker;
use crate::error::AppError;
use crate::ids::TenantId;
use crate::metrics::Metrics;

/// How long a cache call may wait for Redis before the request goes to Postgres. As
/// long as the connection's own response timeout: a busy instance (a burst of a
/// thousand requests on two cores) must not mistake its own queueing for a dead Redis,
/// and the breaker limits a dead Redis to one slow request per second.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Lifetime of a generation counter after its last bump. It only has to outlive the
/// longest database read that could race an invalidation.
const GENERATION_TTL: Duration = Duration::from_secs(3600);
/// How long the projector waits for an invalidation before it moves on.
const INVALIDATION_TIMEOUT: Duration = Duration::from_millis(500);

/// Sets the value only if the generation is still the one read before the load.
const SET_IF_GENERATION: &str = r"
local generation = redis.call('GET', KEYS[2]) or ''
if generation == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// For each (value, generation) key pair: bump the generation, delete the value.
const INVALIDATE: &str = r"
for i = 1, #KEYS, 2 do
  redis.call('INCR', KEYS[i + 1])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
  redis.call('DEL', KEYS[i])
end
return #KEYS / 2
";

/// The cache key of one file's `GET /v1/files/{id}` body.
pub fn file_key(prefix: &str, tenant: Uuid, file: Uuid) -> String {
    format!("{prefix}cache:file:{tenant}:{file}")
}

fn generation_key(value_key: &str) -> String {
    format!("{value_key}:gen")
}

/// Deletes the cached bodies of `files` (tenant, file) and bumps their generations, so
/// loads that started before cannot write their (older) result back. Called by the
/// files projector after a batch commits. Best effort and bounded in time: a projector
/// must not stall while Redis is unreachable; an entry whose deletion is lost expires
/// with its TTL.
pub async fn invalidate_files(redis: &ConnectionManager, prefix: &str, files: &[(Uuid, Uuid)]) {
    if files.is_empty() {
        return;
    }
    let script = redis::Script::new(INVALIDATE);
    let mut invocation = script.prepare_invoke();
    for (tenant, file) in files {
        let key = file_key(prefix, *tenant, *file);
        let generation = generation_key(&key);
        invocation.key(key).key(generation);
    }
    invocation.arg(GENERATION_TTL.as_millis() as u64);
    let mut conn = redis.clone();
    let done = tokio::time::timeout(
        INVALIDATION_TIMEOUT,
        invocation.invoke_async::<i64>(&mut conn),
    )
    .await;
    let error = match done {
        Ok(Ok(_)) => return,
        Ok(Err(err)) => err.to_string(),
        Err(_) => format!("no answer within {INVALIDATION_TIMEOUT:?}"),
    };
    tracing::warn!(
        error,
        files = files.len(),
        "file cache entries not deleted; they expire with FILE_CACHE_TTL_SECS"
    );
}

/// What one load of a file body produced: the JSON body, or `None` for "no such file".
/// Errors are logged by the load and shared as `Err(())`.
type LoadOutcome = Result<Option<Arc<str>>, ()>;

struct Inner {
    redis: ConnectionManager,
    prefix: String,
    ttl: Duration,
    metrics: Arc<Metrics>,
    breaker: Breaker,
    flights: SingleFlight<LoadOutcome>,
}

/// The `GET /v1/files/{id}` cache; cheap to clone (one per app state).
#[derive(Clone)]
pub struct FileCache {
    inner: Arc<Inner>,
}

impl FileCache {
    /// `ttl` zero: no Redis at all, but concurrent loads are still shared.
    pub fn new(
        redis: ConnectionManager,
        prefix: &str,
        ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                redis,
                prefix: prefix.to_string(),
                ttl,
                metrics,
                breaker: Breaker::new("file cache", "serving from Postgres"),
                flights: SingleFlight::default(),
            }),
        }
    }

    /// The cached body of `file`, or the result of `load` (the JSON body, `None` when the
    /// file does not exist), which runs at most once at a time per key on this instance.
    /// Not-found answers are not cached: a file created a moment later must appear.
    pub async fn get_or_load<F, Fut>(
        &self,
        tenant: TenantId,
        file: Uuid,
        load: F,
    ) -> Result<Option<Arc<str>>, AppError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<String>, AppError>> + Send + 'static,
    {
        let key = file_key(&self.inner.prefix, tenant.0, file);
        if let Some((Some(body), _)) = self.inner.lookup(&key).await {
            self.inner.metrics.file_cache_hits.inc();
            return Ok(Some(body.into()));
        }
        self.inner.metrics.file_cache_misses.inc();
        let inner = self.inner.clone();
        let flight_key = key.clone();
        let outcome = self
            .inner
            .flights
            .run(&flight_key, async move { inner.fill(&key, load).await })
            .await;
        match outcome {
            Some(Ok(body)) => Ok(body),
            Some(Err(())) | None => Err(AppError::Internal(anyhow::anyhow!(
                "loading file {file} for the cache failed (logged by the load)"
            ))),
        }
    }
}

impl Inner {
    fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// Runs one Redis call under the deadline and the breaker; `None` when Redis failed
    /// or was skipped (the caller goes to Postgres).
    async fn call<T>(
        &self,
        op: impl Future<Output = redis::RedisResult<T>>,
        what: &'static str,
    ) -> Option<T> {
        if self.breaker.is_open() {
            self.metrics.file_cache_errors.inc();
            return None;
        }
        let error = match tokio::time::timeout(REDIS_TIMEOUT, op).await {
            Ok(Ok(value)) => {
                self.breaker.close();
                return Some(value);
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {REDIS_TIMEOUT:?}"),
        };
        self.metrics.file_cache_errors.inc();
        self.breaker.trip(&format_args!("{what}: {error}"));
        None
    }

    /// The cached body and the key's generation (`""` when it has none); `None` when the
    /// cache is off or Redis did not answer.
    async fn lookup(&self, key: &str) -> Option<(Option<String>, String)> {
        if !self.enabled() {
            return None;
        }
        let mut conn = self.redis.clone();
        let generation = generation_key(key);
        let (body, generation): (Option<String>, Option<String>) = self
            .call(
                redis::cmd("MGET")
                    .arg(key)
                    .arg(&generation)
                    .query_async(&mut conn),
                "lookup",
            )
            .await?;
        Some((body, generation.unwrap_or_default()))
    }

    /// The single-flight body: re-check Redis (a load that finished a moment ago filled
    /// it), else read Postgres and store the result unless an invalidation intervened.
    async fn fill<F, Fut>(&self, key: &str, load: F) -> LoadOutcome
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<String>, AppError>>,
    {
        let seen = self.lookup(key).await;
        if let Some((Some(body), _)) = &seen {
            return Ok(Some(body.as_str().into()));
        }
        self.metrics.file_cache_loads.inc();
        let body = match load().await {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(None),
            Err(err) => {
                tracing::error!(error = %err, key, "file cache: loading from Postgres failed");
                return Err(());
            }
        };
        // Without a generation read before the load, the write could not be checked.
        if let Some((_, generation)) = seen {
            let mut conn = self.redis.clone();
            self.call(
                redis::Script::new(SET_IF_GENERATION)
                    .key(key)
                    .key(generation_key(key))
                    .arg(generation)
                    .arg(&body)
                    .arg(self.ttl.as_millis() as u64)
                    .invoke_async::<i64>(&mut conn),
                "fill",
            )
            .await;
        }
        Ok(Some(body.into()))
    }
}
