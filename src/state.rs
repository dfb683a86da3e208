//! What every request handler can reach. Built once in `app::build`; no globals.

use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::TokenKeys;
use crate::auth::browser::CsrfKey;
use crate::cache::FileCache;
use crate::config::Config;
use crate::live::LiveHub;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::storage::Storage;
use crate::store::EventLog;

/// Cloned for every request (axum's `State` extractor and each middleware take their
/// own copy), so it is one shared pointer: a clone is one reference count, not one per
/// field (the pools, Redis connections and caches inside each hold several).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The shared parts themselves.
pub struct Services {
    pub config: Arc<Config>,
    /// Runs as `chronicle_app`: read tables under RLS, event appends.
    pub db: PgPool,
    /// Where read-only queries go: a streaming replica or `db` (src/replicas.rs).
    pub reads: crate::replicas::Replicas,
    /// The event store's shared write side (group commit), on `db`.
    pub events: EventLog,
    pub redis: redis::Client,
    /// Shared, self-reconnecting connection for request-path Redis work (rate limits…).
    /// Opened lazily, so the API starts and serves while Redis is down.
    pub redis_conn: redis::aio::ConnectionManager,
    /// The processing queue, on `redis_conn`, as use cases put the jobs their commits
    /// ask for on it (src/commands/jobs.rs, src/queue/dispatch.rs).
    pub dispatch: crate::queue::Dispatch,
    /// Instance-shared rate limits (src/ratelimit.rs), on `redis_conn`.
    pub limiter: RateLimiter,
    pub metrics: Arc<Metrics>,
    /// JWT signing/verification keys from `JWT_SECRET`.
    pub tokens: TokenKeys,
    /// Temporary uploads and final blobs (local or S3).
    pub storage: Storage,
    /// Live events for SSE clients (src/live); its token ends streams on shutdown.
    pub live: LiveHub,
    /// Cache-aside for `GET /v1/files/{id}` (src/cache), on `redis_conn`.
    pub file_cache: FileCache,
    /// `GET /v1/files` answers remembered per instance under each tenant's listing epoch
    /// (src/cache/listing.rs, docs/listing-cache.md).
    pub listings: crate::cache::listing::ListingCache,
    /// Good standing remembered per instance under each tenant's standing epoch
    /// (src/auth/standing.rs, docs/auth-cache.md).
    pub standings: crate::auth::Standings,
    /// CSRF tokens of browser sessions (src/auth/browser.rs), derived from `JWT_SECRET`.
    pub csrf: CsrfKey,
}

impl Services {
    /// What the credentials layer verifies bearer values with (tokens and API keys).
    pub fn verifier(&self) -> crate::auth::credentials::Verifier {
        crate::auth::credentials::Verifier {
            tokens: self.tokens.clone(),
            db: self.db.clone(),
            standings: Some(self.standings.clone()),
            csrf: self.csrf.clone(),
        }
    }
}
