//! The worker: takes jobs from the Redis queue and runs the processing pipeline
//! (pipeline.rs); promotes due retries; reconciles Postgres's unfinished jobs with what
//! Redis knows (reconcile.rs). Runs in `serve` and `worker` modes, `WORKER_CONCURRENCY`
//! jobs at a time. Shutdown lets each job in flight finish.

mod expire;
mod gc;
mod inspect;
mod pipeline;
mod reconcile;
mod sweep;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::aggregates::file::File;
use crate::config::{JobSettings, TusSettings};
use crate::ids::TenantId;
use crate::media::MediaLimits;
use crate::queue::{Claims, Delivery, Queue};
use crate::scan::Scanner;
use crate::storage::Storage;
use crate::store::{ChronicleStore, EventLog};

pub use gc::GcReport;
pub use pipeline::{DEDUP_LOOKUP_SQL, Outcome};

/// Why a job did not finish.
#[derive(Debug)]
pub enum JobError {
    /// Worth another attempt (scanner down, storage or database error …).
    Retry(String),
    /// The job no longer applies (the version settled differently): acknowledged.
    Drop(String),
    /// The bytes can never pass (a direct upload whose object does not match the
    /// client's declared SHA-256 or size): the version fails now, no retries.
    Reject(String),
}

pub struct Worker {
    /// `chronicle_worker`: sees every tenant, so queries filter by tenant explicitly.
    pub db: PgPool,
    pub events: EventLog,
    pub snapshot_every: u64,
    pub storage: Storage,
    pub scanner: Arc<dyn Scanner>,
    pub queue: Queue,
    /// For each consumer's own blocking connection.
    pub redis_url: String,
    pub settings: JobSettings,
    pub media: MediaLimits,
    /// Image optimisations at once, one per core ([`crate::config::cores`]): each decodes a whole
    /// picture (up to `MediaLimits::max_pixels` × 8 bytes) on a blocking thread, so they
    /// are bounded by the cores, not by `WORKER_CONCURRENCY`, which mostly counts jobs
    /// waiting for flushes.
    pub optimising: Arc<tokio::sync::Semaphore>,
    /// Upload locks (src/uploads/lock.rs) for the expiry job, and their key prefix.
    pub redis: redis::aio::ConnectionManager,
    pub key_prefix: String,
    /// Expiry of resumable uploads (src/worker/expire.rs).
    pub uploads: TusSettings,
}

/// How long a consumer blocks on an empty queue before checking for shutdown.
const BLOCK: Duration = Duration::from_secs(1);
/// How often a busy consumer looks for entries whose worker went silent (an idle one
/// looks before every read): one round trip per job less than looking every time.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// A consumer idle this long with nothing pending is most likely a name of a worker that
/// died. It may be a live one on a quiet queue (Redis before 7.2 counts idle time from
/// the last read that delivered an entry); forgetting it is harmless, as it holds
/// nothing and Redis makes it again when it next delivers it an entry.
const FORGET_IDLE_CONSUMERS: Duration = Duration::from_secs(3600);
/// How long a stopping consumer tries to forget its name.
const FORGET_WITHIN: Duration = Duration::from_secs(1);
/// How often due retries are moved to the ready stream.
const PROMOTE_EVERY: Duration = Duration::from_millis(250);

impl Worker {
    fn store(&self, tenant: TenantId) -> ChronicleStore<File> {
        ChronicleStore::new(self.events.clone(), tenant, self.snapshot_every)
    }

    /// The wait before retry `attempt` (1-based): base × 5^(attempt-1), full jitter —
    /// ~5 s, 25 s, 125 s by default.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .settings
            .backoff_base
            .saturating_mul(5u32.saturating_pow(attempt.saturating_sub(1)));
        let ms = ceiling.as_millis().min(u64::MAX as u128) as u64;
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms.max(1)))
    }

    /// Starts the consumers, the retry promoter and the reconciler.
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        let instance = uuid::Uuid::now_v7();
        let mut tasks = Vec::new();
        if self.settings.concurrency == 0 {
            tracing::info!("WORKER_CONCURRENCY=0: this process takes no jobs");
            return tasks;
        }
        for i in 0..self.settings.concurrency {
            let consumer = format!("worker-{instance}-{i}");
            tasks.push(tokio::spawn(
                self.clone().consume(consumer, shutdown.clone()),
            ));
        }
        tasks.push(tokio::spawn(self.clone().promote(shutdown.clone())));
        tasks.push(tokio::spawn(self.clone().sweep_loop(shutdown.clone())));
        tasks.push(tokio::spawn(self.clone().gc_loop(shutdown.clone())));
        tasks.push(tokio::spawn(self.clone().expire_loop(shutdown.clone())));
        tasks.push(tokio::spawn(self.reconcile_loop(shutdown)));
        tasks
    }

    async fn consume(self: Arc<Self>, consumer: String, shutdown: CancellationToken) {
        let queue = match self.queue.dedicated(&self.redis_url, BLOCK) {
            Ok(q) => q,
            Err(err) => {
                tracing::error!(error = %err, "queue connection cannot be set up; consumer stopped");
                return;
            }
        };
        if let Err(err) = queue.ensure_group().await {
            tracing::warn!(error = %err, "queue group not created yet; retrying");
        }
        let mut claims = Claims::every(CLAIM_EVERY);
        while !shutdown.is_cancelled() {
            let claim_stale = claims.due();
            match queue
                .next(
                    &consumer,
                    self.settings.visibility_timeout,
                    BLOCK,
                    claim_stale,
                )
                .await
            {
                Ok(Some(delivery)) => {
                    // Instrumented, not entered: a span guard held across awaits would
                    // attach other tasks' logs to this job.
                    let job = &delivery.job;
                    // The consumer names the process (`worker-{instance}-{n}`): whose job it was.
                    let span = tracing::info_span!("job", job = %job.job_id, tenant = %job.tenant_id, file = %job.file_id, version = job.version_number, consumer = %consumer);
                    self.handle(&consumer, delivery.clone())
                        .instrument(span)
                        .await
                }
                Ok(None) => claims.idle(),
                Err(err) => {
                    tracing::warn!(error = %err, "queue unavailable");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        // This name is not used again: forget it, unless a job it read is still pending
        // (that one waits for the visibility timeout, and the name for the reconciler's
        // sweep of idle consumers). Bounded: a dead Redis must not hold up the shutdown.
        let forget = queue.forget_consumers(Duration::ZERO, Some(&consumer));
        match tokio::time::timeout(FORGET_WITHIN, forget).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "consumer not forgotten; the reconciler will")
            }
            Err(_) => tracing::debug!("consumer not forgotten in time; the reconciler will"),
        }
    }

    /// Runs one delivery to its end, extending the claim meanwhile; always acknowledges
    /// or reschedules (a failure to do so only means a redelivery).
    async fn handle(&self, consumer: &str, delivery: Delivery) {
        let job = delivery.job.clone();
        let keep_alive = {
            let queue = self.queue.clone();
            let delivery = delivery.clone();
            let consumer = consumer.to_string();
            let every = self.settings.visibility_timeout / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(err) = queue.extend(&consumer, &delivery).await {
                        tracing::warn!(error = %err, "could not extend a job's claim");
                    }
                }
            })
        };
        let result = self.run_job(&job).await;
        keep_alive.abort();
        let acked = match result {
            Ok(Outcome::Finished) => {
                tracing::info!("job finished");
                self.queue.ack(&delivery, true).await
            }
            Ok(Outcome::AlreadySettled) => {
                tracing::info!("job already settled; acknowledged");
                self.queue.ack(&delivery, true).await
            }
            Ok(Outcome::DeadLettered) => {
                tracing::warn!("job dead-lettered");
                self.queue.ack(&delivery, true).await
            }
            Ok(Outcome::RetryLater { attempt }) => {
                self.queue
                    .retry_later(&delivery, self.backoff(attempt))
                    .await
            }
            Err(JobError::Drop(reason)) | Err(JobError::Reject(reason)) => {
                tracing::warn!(reason, "job dropped");
                self.queue.ack(&delivery, true).await
            }
            // Recording the failure itself failed (database down): leave the delivery
            // pending; it comes back after the visibility timeout.
            Err(JobError::Retry(reason)) => {
                tracing::error!(reason, "job failed and its failure could not be recorded");
                Ok(())
            }
        };
        if let Err(err) = acked {
            tracing::warn!(error = %err, "acknowledging a job failed; it will be redelivered");
        }
    }

    async fn promote(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(err) = self.queue.promote_due().await {
                tracing::debug!(error = %err, "promoting due retries failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(PROMOTE_EVERY) => {}
            }
        }
    }

    async fn sweep_loop(self: Arc<Self>, shutdown: CancellationToken) {
        // A quarter of the age limit, at most hourly: an orphan lives at most 1.25× it.
        let every = (self.settings.temp_sweep_after / 4).min(Duration::from_secs(3600));
        while !shutdown.is_cancelled() {
            match self.sweep_temp().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(objects = n, "removed orphaned temporary uploads"),
                Err(err) => tracing::warn!(error = %err, "sweeping temporary uploads failed"),
            }
            match self.sweep_webhook_secrets().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(secrets = n, "removed webhook secrets no endpoint uses"),
                Err(err) => tracing::warn!(error = %err, "sweeping webhook secrets failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    async fn reconcile_loop(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.reconcile().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(jobs = n, "re-enqueued jobs the queue had lost"),
                Err(err) => tracing::warn!(error = %err, "reconciling jobs failed"),
            }
            // Names left by workers that died without forgetting them.
            match self
                .queue
                .forget_consumers(FORGET_IDLE_CONSUMERS, None)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(consumers = n, "forgot idle queue consumers"),
                Err(err) => tracing::debug!(error = %err, "forgetting idle consumers failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.settings.reconcile_every) => {}
            }
        }
    }
}
