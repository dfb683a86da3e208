//! Listing responses (`GET /v1/files`) and file bodies (`GET /v1/files/{id}`)
//! remembered per instance, under each tenant's *listing epoch*: the protocol of the
//! standing epochs (`cache::standing`) in a namespace of its own,
//! `{REDIS_KEY_PREFIX}listing:{tenant}`. Both answers are read only from the files
//! projector's tables, which is what the epoch covers.
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
//! The key is everything the answer depends on: the tenant, and for a listing what the
//! query reads of the caller (its id, its role, whether it reads every file of the
//! tenant) and the query string as sent (filters, sort, page size and cursor); a file's
//! body is the same for every caller (whether the caller may see it is decided on every
//! answer, `queries::files::file_body`). Why a change is seen on the very
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

/// Everything one remembered answer depends on besides the tenant's files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListingKey {
    pub tenant: Uuid,
    pub answer: Answer,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Answer {
    /// A page of `GET /v1/files`.
    Page {
        /// The caller's id (own files, grants to it).
        viewer: Uuid,
        /// The caller's role (grants to a role).
        role: &'static str,
        /// Whether the caller reads every file of the tenant (admins and auditors).
        reads_every_file: bool,
        /// The query string as sent: it determines every parameter, the cursor included.
        query: String,
    },
    /// The body of `GET /v1/files/{id}`.
    File(Uuid),
}

impl ListingKey {
    /// Bytes the key holds besides its fixed part (the memory's bound).
    fn extra_len(&self) -> usize {
        match &self.answer {
            Answer::Page { query, .. } => query.len(),
            Answer::File(_) => 0,
        }
    }
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
        let Epoch::Trusted(token) = self.epoch(key.tenant, prefetched).await else {
            inner.metrics.listing_cache_misses.inc();
            return load(fresh).await;
        };
        if let Some(body) = self.remembered(&key, &token) {
            inner.metrics.listing_cache_hits.inc();
            return Ok(body);
        }
        inner.metrics.listing_cache_misses.inc();
        let body = load(true).await?;
        self.remember(key, token, body.clone());
        Ok(body)
    }

    /// `tenant`'s listing epoch: `prefetched` (read for this request before any
    /// database read) when there is one, else read now.
    pub async fn epoch(&self, tenant: Uuid, prefetched: Option<Epoch>) -> Epoch {
        match prefetched {
            Some(epoch) => epoch,
            None => self.inner.epochs.read(tenant).await,
        }
    }

    /// The answer remembered for `key` under `token`, if any (and not older than
    /// `MAX_AGE`).
    pub fn remembered(&self, key: &ListingKey, token: &Arc<str>) -> Option<Bytes> {
        let entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.map.get(key) {
            Some(e) if &e.token == token && e.at.elapsed() < MAX_AGE => Some(e.body.clone()),
            _ => None,
        }
    }

    /// Remembers `body` for `key` under `token`. Only for a body read from the tables
    /// after `token` was read as trusted (module comment).
    pub fn remember(&self, key: ListingKey, token: Arc<str>, body: Bytes) {
        let size = body.len() + key.extra_len();
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
                    freed += e.body.len() + k.extra_len();
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
        let extra_len = key.extra_len();
        if let Some(old) = entries.map.insert(key, entry) {
            entries.bytes -= old.body.len() + extra_len;
        }
        entries.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(role: &'static str, query: &str) -> ListingKey {
        ListingKey {
            tenant: Uuid::nil(),
            answer: Answer::Page {
                viewer: Uuid::nil(),
                role,
                reads_every_file: false,
                query: query.into(),
            },
        }
    }

    fn key(query: &str) -> ListingKey {
        page("user", query)
    }

    // A runtime only because the (never connected) Redis handle needs one.
    #[tokio::test]
    async fn answers_are_handed_out_only_for_the_same_key_under_the_same_token() {
        let conn = crate::ratelimit::connection_manager("redis://127.0.0.1:1").unwrap();
        let cache = ListingCache::new(epochs(conn, "t:"), Arc::new(Metrics::new()));
        let (t1, t2): (Arc<str>, Arc<str>) = (Arc::from("t1"), Arc::from("t2"));
        cache.remember(key("limit=20"), t1.clone(), Bytes::from_static(b"[1]"));
        assert_eq!(
            cache.remembered(&key("limit=20"), &t1),
            Some(Bytes::from_static(b"[1]"))
        );
        assert_eq!(
            cache.remembered(&key("limit=20"), &t2),
            None,
            "a new token invalidates"
        );
        assert_eq!(
            cache.remembered(&key("limit=21"), &t1),
            None,
            "another query"
        );
        assert_eq!(
            cache.remembered(&page("admin", "limit=20"), &t1),
            None,
            "another role"
        );
        let file = ListingKey {
            tenant: Uuid::nil(),
            answer: Answer::File(Uuid::nil()),
        };
        assert_eq!(cache.remembered(&file, &t1), None, "a file is not a page");
        cache.remember(key("limit=20"), t2.clone(), Bytes::from_static(b"[22]"));
        let bytes = cache.inner.entries.lock().unwrap().bytes;
        assert_eq!(
            bytes,
            "[22]".len() + "limit=20".len(),
            "a replaced entry is uncounted"
        );
    }
}
