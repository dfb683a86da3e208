//! Listing responses (`GET /v1/files`) remembered per instance, under each tenant's
//! *listing epoch*: the protocol of the standing epochs (`cache::standing`) in a
//! namespace of its own, `{REDIS_KEY_PREFIX}listing:{tenant}`.
//!
//! - **Writer**: the files projector, the only writer of the tables a listing reads. A
//!   live batch announces a change in every tenant it touches *before* its transaction
//!   commits (`pending += 1`, new token; if Redis cannot record it, the batch is rolled
//!   back and retried) and ends it after the commit, or after a failed commit
//!   (`projections::files`).
//! - **Reader**: the request reads the tenant's listing epoch before any database read
//!   (the rate limiter's script returns it with the standing epoch: no extra round
//!   trip). It answers from memory only for the same key remembered under the same
//!   trusted token; on a miss it reads the **primary** (a replica could be older than
//!   the epoch) and remembers the body under the token it read first. An untrusted
//!   epoch (a change pending, Redis slow or down) reads as before and remembers nothing.
//!
//! The key is everything the answer depends on: the tenant, what the query reads of the
//! caller (its id, its role, whether it reads every file of the tenant), and the query
//! string as sent (filters, sort, page size and cursor). Why a change is seen on the very
//! next request on every instance: docs/listing-cache.md.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::ConnectionManager;
use uuid::Uuid;

use super::standing::{Epoch, StandingEpochs};
use crate::error::AppError;
use crate::metrics::Metrics;

/// The namespace of listing epochs under `REDIS_KEY_PREFIX`.
pub const NAMESPACE: &str = "listing:";

/// How long a remembered listing is served at most, whatever the epoch says: bounds what
/// a change committed without announcement (a rebuild, a CLI catch-up: no Redis) can
/// leave stale. A miss costs one database read, so this can be short.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// Bounds of the memory (a bound, not an LRU: when reached, everything is dropped and
/// refilled, one database read per key).
const MAX_ENTRIES: usize = 20_000;
const MAX_BYTES: usize = 64 << 20;

/// The Redis key of `tenant`'s listing epoch under `prefix` (`REDIS_KEY_PREFIX`).
pub fn epoch_key(prefix: &str, tenant: Uuid) -> String {
    format!("{prefix}{NAMESPACE}{tenant}")
}

/// The listing epochs, for the files projector's announcements and for readers whose
/// epoch the rate limiter did not read (API keys).
pub fn epochs(conn: ConnectionManager, prefix: &str) -> StandingEpochs {
    StandingEpochs::in_namespace(conn, prefix, NAMESPACE)
}

/// Everything one listing answer depends on besides the tenant's files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListingKey {
    pub tenant: Uuid,
    /// The caller's id (own files, grants to it).
    pub viewer: Uuid,
    /// The caller's role (grants to a role).
    pub role: &'static str,
    /// Whether the caller reads every file of the tenant (admins and auditors).
    pub reads_every_file: bool,
    /// The query string as sent: it determines every parameter, the cursor included.
    pub query: String,
}

struct Entry {
    token: Arc<str>,
    at: Instant,
    body: Bytes,
}

#[derive(Default)]
struct Entries {
    map: HashMap<ListingKey, Entry>,
    bytes: usize,
    swept: Option<Instant>,
}

/// The per-instance memory of listing answers. Cheap to clone.
#[derive(Clone)]
pub struct ListingCache {
    inner: Arc<Inner>,
}

struct Inner {
    epochs: StandingEpochs,
    entries: Mutex<Entries>,
    metrics: Arc<Metrics>,
}

impl ListingCache {
    pub fn new(epochs: StandingEpochs, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                epochs,
                entries: Mutex::new(Entries::default()),
                metrics,
            }),
        }
    }

    /// The answer for `key`: remembered under the tenant's current listing epoch, or
    /// `load(fresh)`'s JSON body. `prefetched`: the tenant's epoch, read for this request
    /// before any database read (else it is read here). `fresh`: whether the caller's
    /// reads must be as fresh as the primary; a load remembered for others always is.
    pub async fn serve<F, Fut>(
        &self,
        key: ListingKey,
        prefetched: Option<Epoch>,
        fresh: bool,
        load: F,
    ) -> Result<Bytes, AppError>
    where
        F: FnOnce(bool) -> Fut,
        Fut: Future<Output = Result<Bytes, AppError>>,
    {
        let inner = &self.inner;
        let epoch = match prefetched {
            Some(epoch) => epoch,
            None => inner.epochs.read(key.tenant).await,
        };
        let Epoch::Trusted(token) = epoch else {
            inner.metrics.listing_cache_misses.inc();
            return load(fresh).await;
        };
        if let Some(body) = self.get(&key, &token) {
            inner.metrics.listing_cache_hits.inc();
            return Ok(body);
        }
        inner.metrics.listing_cache_misses.inc();
        let body = load(true).await?;
        self.put(key, token, body.clone());
        Ok(body)
    }

    fn get(&self, key: &ListingKey, token: &Arc<str>) -> Option<Bytes> {
        let entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.map.get(key) {
            Some(e) if &e.token == token && e.at.elapsed() < MAX_AGE => Some(e.body.clone()),
            _ => None,
        }
    }

    fn put(&self, key: ListingKey, token: Arc<str>, body: Bytes) {
        let size = body.len() + key.query.len();
        let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entries = &mut *entries;
        if entries.map.len() >= MAX_ENTRIES || entries.bytes + size > MAX_BYTES {
            entries.map.clear();
            entries.bytes = 0;
        }
        if entries.swept.is_none_or(|at| at.elapsed() >= MAX_AGE) {
            let mut freed = 0;
            entries.map.retain(|k, e| {
                let keep = e.at.elapsed() < MAX_AGE;
                if !keep {
                    freed += e.body.len() + k.query.len();
                }
                keep
            });
            entries.bytes -= freed;
            entries.swept = Some(Instant::now());
        }
        let entry = Entry {
            token,
            at: Instant::now(),
            body,
        };
        let query_len = key.query.len();
        if let Some(old) = entries.map.insert(key, entry) {
            entries.bytes -= old.body.len() + query_len;
        }
        entries.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(query: &str) -> ListingKey {
        ListingKey {
            tenant: Uuid::nil(),
            viewer: Uuid::nil(),
            role: "user",
            reads_every_file: false,
            query: query.into(),
        }
    }

    // A runtime only because the (never connected) Redis handle needs one.
    #[tokio::test]
    async fn answers_are_handed_out_only_for_the_same_key_under_the_same_token() {
        let conn = crate::ratelimit::connection_manager("redis://127.0.0.1:1").unwrap();
        let cache = ListingCache::new(epochs(conn, "t:"), Arc::new(Metrics::new()));
        let (t1, t2): (Arc<str>, Arc<str>) = (Arc::from("t1"), Arc::from("t2"));
        cache.put(key("limit=20"), t1.clone(), Bytes::from_static(b"[1]"));
        assert_eq!(
            cache.get(&key("limit=20"), &t1),
            Some(Bytes::from_static(b"[1]"))
        );
        assert_eq!(
            cache.get(&key("limit=20"), &t2),
            None,
            "a new token invalidates"
        );
        assert_eq!(cache.get(&key("limit=21"), &t1), None, "another query");
        let mut admin = key("limit=20");
        admin.role = "admin";
        assert_eq!(cache.get(&admin, &t1), None, "another role");
        cache.put(key("limit=20"), t2.clone(), Bytes::from_static(b"[22]"));
        let bytes = cache.inner.entries.lock().unwrap().bytes;
        assert_eq!(
            bytes,
            "[22]".len() + "limit=20".len(),
            "a replaced entry is uncounted"
        );
    }
}
