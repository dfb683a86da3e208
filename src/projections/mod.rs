//! Projectors turn the event log into read tables. The runtime (checkpoints, leases,
//! catch-up order, rebuilds) is here; each read model is one module.
//! docs/projections.md explains the ordering argument.

pub mod accounts;
pub mod api_keys;
pub mod audit_log;
pub mod blob_refs;
pub mod devices;
pub mod failures;
pub mod files;
pub mod jobs;
pub mod notifications;
mod read_ahead;
pub mod rebuild;
mod record;
pub mod retry;
pub mod runtime;
pub mod shared_reads;
pub mod status;
pub mod storable;
pub mod stream_heads;
pub mod uploads;
pub mod user_agent;
pub mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::PgConnection;

pub use record::{
    Batch, CatchUpPosition, EventRecord, EventRef, NEXT_BATCH_SQL, Unreadable, next_batch,
};

/// A read model built from events.
#[async_trait]
pub trait Projector: Send + Sync {
    /// Stable name: the checkpoint row's key and the CLI's argument.
    fn name(&self) -> &'static str;

    /// The read tables this projector owns; a rebuild replaces exactly these.
    fn tables(&self) -> &'static [&'static str];

    /// Applies a batch of events, in catch-up order, inside the batch's transaction.
    /// Must use unqualified table names (rebuilds redirect them to fresh tables) and be
    /// deterministic: a rebuild must reproduce the live rows exactly.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> Result<(), sqlx::Error>;

    /// A bounded share of work the projector deferred so that no single event holds it
    /// (and every tenant behind it) for long — the notifications projector's "mark all
    /// read" of a large inbox. Runs in the lease's transaction after every batch that
    /// applied events, on every idle poll, and to the end before a rebuild swaps its
    /// tables in. Returns whether it did any work (more may remain: the runtime then
    /// comes back at once). The default has none.
    async fn deferred(&self, _conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        Ok(false)
    }

    /// Runs just before a live batch's transaction commits (never during a rebuild):
    /// announcements that readers must see before they can see the batch's rows (the
    /// files projector's listing epochs, docs/listing-cache.md). An error rolls the
    /// batch back, to be retried like any failed batch.
    async fn before_commit(&self, _events: &[EventRecord]) -> anyhow::Result<()> {
        Ok(())
    }

    /// Runs instead of `after_commit` when the commit failed after `before_commit`
    /// succeeded: whatever `before_commit` started must be ended either way.
    async fn commit_failed(&self, _events: &[EventRecord]) {}

    /// Runs after a live batch's transaction has committed (never during a rebuild):
    /// side effects that must not precede the commit, such as deleting cache entries or
    /// publishing live updates. Best effort: it logs its own failures; the batch stays
    /// applied either way.
    async fn after_commit(&self, _events: &[EventRecord]) {}
}

/// What live projectors need for their after-commit side effects. CLI tools and
/// rebuilds run projectors without it.
#[derive(Clone)]
pub struct Reactions {
    pub redis: redis::aio::ConnectionManager,
    /// `REDIS_KEY_PREFIX`: every key and channel starts with it.
    pub key_prefix: String,
}

/// Every projector Chronicle runs, without side effects (CLI tools, rebuilds).
pub fn all() -> Vec<Arc<dyn Projector>> {
    build(None)
}

fn build(reactions: Option<&Reactions>) -> Vec<Arc<dyn Projector>> {
    vec![
        Arc::new(accounts::AccountsProjector),
        Arc::new(audit_log::AuditLogProjector),
        // Which versions hold which blob: what the blob GC reads (src/worker/gc.rs).
        Arc::new(blob_refs::BlobRefsProjector),
        Arc::new(devices::DevicesProjector::default()),
        Arc::new(match reactions {
            // Deletes the `GET /v1/files/{id}` cache entries of the files a batch touched.
            Some(r) => files::FilesProjector::live(r.clone()),
            None => files::FilesProjector::default(),
        }),
        Arc::new(jobs::JobsProjector),
        Arc::new(match reactions {
            // Publishes new rows on Redis for SSE clients (src/live).
            Some(r) => notifications::NotificationsProjector::live(r.clone()),
            None => notifications::NotificationsProjector::default(),
        }),
        Arc::new(stream_heads::StreamHeadsProjector),
        // Resumable uploads: what the expiry job and the temp sweeper query.
        Arc::new(uploads::UploadsProjector),
        // Webhook endpoints, and one pending delivery per (endpoint, event) for the
        // dispatcher (src/webhooks).
        Arc::new(webhooks::WebhooksProjector),
    ]
}

/// The projectors a running instance uses: `all()` with their after-commit side
/// effects wired to Redis.
pub fn live(reactions: Reactions) -> Vec<Arc<dyn Projector>> {
    build(Some(&reactions))
}

/// Finds a projector by name.
pub fn by_name(name: &str) -> Option<Arc<dyn Projector>> {
    all().into_iter().find(|p| p.name() == name)
}
