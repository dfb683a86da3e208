//! Prometheus metrics, owned by the app state (no global registry).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `ready` (in the stream, incl. being worked on) or `delayed` (waiting to retry).
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    /// `host:port` of a replica, or `primary` (for `db_reads`).
    pub replica: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectorLabels {
    pub projector: String,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_latency: Family<RouteLabels, Histogram>,
    pub events_appended: Counter,
    pub projection_lag_events: Family<ProjectorLabels, Gauge>,
    /// Jobs in the Redis queue, read at scrape: what workers are scaled on.
    pub queue_depth: Family<QueueLabels, Gauge>,
    pub projection_lag_seconds: Family<ProjectorLabels, Gauge<f64, AtomicU64>>,
    /// Events a projector moved past because it cannot apply them (read at scrape):
    /// its read tables lack them until `retry-parked` or a rebuild. Alert on > 0.
    pub projector_parked_events: Family<ProjectorLabels, Gauge>,
    /// Events a projector is retrying with backoff (0 or 1 each; read at scrape).
    pub projector_failing_events: Family<ProjectorLabels, Gauge>,
    /// `GET /v1/files/{id}` cache (src/cache): hits, misses, and the database loads the
    /// misses caused (fewer than misses: concurrent misses share one load).
    pub file_cache_hits: Counter,
    pub listing_cache_hits: Counter,
    pub listing_cache_misses: Counter,
    /// `GET /v1/files/{id}` answered from this instance's memory (src/cache/listing.rs).
    pub file_memory_hits: Counter,
    pub file_cache_misses: Counter,
    pub file_cache_loads: Counter,
    /// Redis failed or was skipped (breaker open); the request was served from Postgres.
    pub file_cache_errors: Counter,
    /// The live hub's Redis subscriptions (1 + re-subscriptions) and answered pings.
    pub live_subscriptions: Counter,
    pub live_pings: Counter,
    /// Request body bytes this API instance received (all routes): what direct-to-S3
    /// uploads keep off the API's network.
    pub http_request_body_bytes: Counter,
    /// Read-only queries routed by src/replicas.rs, by where they ran.
    pub db_reads: Family<ReplicaLabels, Counter>,
    /// 1 while a replica serves reads, 0 while it is skipped.
    pub replica_up: Family<ReplicaLabels, Gauge>,
    /// Replay lag: age of the last replayed transaction while WAL waits to be replayed.
    pub replica_lag_seconds: Family<ReplicaLabels, Gauge<f64, AtomicU64>>,
    /// WAL bytes the replica has not replayed yet (primary position − replay position).
    pub replica_lag_bytes: Family<ReplicaLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chronicle");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let events_appended = Counter::default();
        let projection_lag_events = Family::<ProjectorLabels, Gauge>::default();
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Processing jobs in the queue (ready or delayed for a retry)",
            queue_depth.clone(),
        );
        let projection_lag_seconds = Family::<ProjectorLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http_latency.clone(),
        );
        registry.register(
            "events_appended",
            "Events appended by this process",
            events_appended.clone(),
        );
        registry.register(
            "projection_lag_events",
            "Committed events a projector has not applied",
            projection_lag_events.clone(),
        );
        registry.register(
            "projection_lag_seconds",
            "Age of the oldest event a projector has not applied",
            projection_lag_seconds.clone(),
        );
        let projector_parked_events = Family::<ProjectorLabels, Gauge>::default();
        registry.register(
            "projector_parked_events",
            "Events a projector could not apply and moved past (parked)",
            projector_parked_events.clone(),
        );
        let projector_failing_events = Family::<ProjectorLabels, Gauge>::default();
        registry.register(
            "projector_failing_events",
            "Events a projector is retrying before parking them",
            projector_failing_events.clone(),
        );
        let file_cache_hits = Counter::default();
        let file_cache_misses = Counter::default();
        let file_cache_loads = Counter::default();
        let file_cache_errors = Counter::default();
        registry.register(
            "file_cache_hits",
            "GET /v1/files/{id} answered from the Redis cache",
            file_cache_hits.clone(),
        );
        registry.register(
            "file_cache_misses",
            "GET /v1/files/{id} not found in the Redis cache",
            file_cache_misses.clone(),
        );
        registry.register(
            "file_cache_loads",
            "Database reads made to fill the file cache (single-flight)",
            file_cache_loads.clone(),
        );
        registry.register(
            "file_cache_errors",
            "File cache Redis calls that failed or were skipped",
            file_cache_errors.clone(),
        );
        let listing_cache_hits = Counter::default();
        let listing_cache_misses = Counter::default();
        registry.register(
            "listing_cache_hits",
            "GET /v1/files answered from this instance's memory",
            listing_cache_hits.clone(),
        );
        registry.register(
            "listing_cache_misses",
            "GET /v1/files answered from the database",
            listing_cache_misses.clone(),
        );
        let file_memory_hits = Counter::default();
        registry.register(
            "file_memory_hits",
            "GET /v1/files/{id} answered from this instance's memory",
            file_memory_hits.clone(),
        );
        let live_subscriptions = Counter::default();
        let live_pings = Counter::default();
        registry.register(
            "live_subscriptions",
            "Redis subscriptions the live hub established (more than 1: re-subscriptions)",
            live_subscriptions.clone(),
        );
        registry.register(
            "live_pings",
            "Pings the live hub's Redis subscription answered",
            live_pings.clone(),
        );
        let http_request_body_bytes = Counter::default();
        registry.register(
            "http_request_body_bytes",
            "Request body bytes received by this API instance",
            http_request_body_bytes.clone(),
        );
        let db_reads = Family::<ReplicaLabels, Counter>::default();
        registry.register(
            "db_reads",
            "Routed read-only queries by where they ran (a replica's host:port, or primary)",
            db_reads.clone(),
        );
        let replica_up = Family::<ReplicaLabels, Gauge>::default();
        registry.register(
            "replica_up",
            "1 while a read replica serves reads, 0 while it is skipped",
            replica_up.clone(),
        );
        let replica_lag_seconds = Family::<ReplicaLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "replica_lag_seconds",
            "Read replica replay lag in seconds",
            replica_lag_seconds.clone(),
        );
        let replica_lag_bytes = Family::<ReplicaLabels, Gauge>::default();
        registry.register(
            "replica_lag_bytes",
            "WAL bytes a read replica has not replayed",
            replica_lag_bytes.clone(),
        );
        Self {
            registry,
            db_reads,
            replica_up,
            replica_lag_seconds,
            replica_lag_bytes,
            http_request_body_bytes,
            http_requests,
            http_latency,
            events_appended,
            projection_lag_events,
            queue_depth,
            projection_lag_seconds,
            projector_parked_events,
            projector_failing_events,
            file_cache_hits,
            listing_cache_hits,
            listing_cache_misses,
            file_memory_hits,
            file_cache_misses,
            file_cache_loads,
            file_cache_errors,
            live_subscriptions,
            live_pings,
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
