//! Appending to the log with group commit. Concurrent commands hand their rows to a few
//! writer tasks; each writer takes every append already waiting (up to a limit) and
//! writes them in one INSERT, so one commit — one fsync — covers many commands.
//! A lone command is written at once: nothing waits for a timer.
//!
//! After a batch commits, a notifier task sends `NOTIFY chronicle_events` (coalesced:
//! at most one in flight) to wake projectors. It is sent outside the appending
//! transaction on purpose: Postgres serializes the commits of notifying transactions.
//!
//! Each command's events stay all-or-nothing: a multi-row INSERT is atomic. If the
//! batch fails on a duplicate key (some command lost an optimistic-concurrency race),
//! its commands are retried one by one, so only the loser sees the conflict.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::idempotency::MarkError;
use crate::cache::standing::StandingEpochs;

/// Writer tasks per log: enough to keep commits pipelined, few enough to batch well.
const WRITERS: usize = 2;
/// Minimum spacing of wake-up notifications.
const NOTIFY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);
/// Upper bound of rows in one INSERT.
const MAX_ROWS: usize = 2000;

/// The rows one command appends to one stream.
#[derive(Debug, Default)]
pub struct StreamAppend {
    pub tenant_id: uuid::Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequences: Vec<i64>,
    pub event_types: Vec<String>,
    pub event_versions: Vec<String>,
    pub payloads: Vec<String>,
    pub metadata: Vec<String>,
    /// When the commit was recorded, as its hashes cover it (`None`: the database's
    /// `now()`, for writers that do not hash it).
    pub recorded_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The idempotency key of the request that caused this append, marked committed in
    /// the same transaction.
    pub idempotency: Option<super::idempotency::IdempotencyMarker>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to the stream first (duplicate sequence).
    #[error("stream was appended to concurrently")]
    Conflict,
    #[error("append failed: {0}")]
    Database(String),
    #[error("the event log is shut down")]
    Closed,
    /// A change of someone's standing could not be announced to the other instances
    /// (Redis): nothing was appended.
    #[error("standing change not announced: {0}")]
    Unannounced(String),
    /// The request's Idempotency-Key was taken over by a retry after its lease lapsed:
    /// nothing was appended (src/store/idempotency.rs).
    #[error("the Idempotency-Key was taken over by another request")]
    KeyTakenOver,
}

struct Job {
    append: StreamAppend,
    reply: oneshot::Sender<Result<(), AppendError>>,
}

/// The shared write side of the event store. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    pool: PgPool,
    jobs: mpsc::Sender<Job>,
    events_appended: Option<Counter>,
    /// Serialises the commands of one stream within this process (src/store/writers.rs).
    writers: Arc<super::StreamWriters>,
    /// What this process last committed to each stream (src/store/remembered.rs).
    remembered: Arc<super::remembered::Remembered>,
    /// Signs every commit (docs/audit.md "Who wrote it"); `None` leaves commits
    /// unsigned, which verify reports wherever signatures are checked.
    signer: Option<Arc<crate::config::EventSigningKey>>,
    /// Where appends that change someone's standing are announced (docs/auth-cache.md);
    /// `None` for logs without authenticated readers (tools, benchmarks).
    standing: Option<StandingEpochs>,
}

/// Whether `append` changes whether, or as what, someone may authenticate: any event of
/// a user (role, ban, erasure, and the profile `/v1/me` shows), a session's revocation,
/// an API key's revocation. (A started session or a new key changes no one's cached
/// standing: nothing is cached for them yet.)
pub fn changes_standing(aggregate_type: &str, event_types: &[String]) -> bool {
    match aggregate_type {
        "user" => true,
        "session" => event_types.iter().any(|t| t == "SessionRevoked"),
        "api_key" => event_types.iter().any(|t| t == "ApiKeyRevoked"),
        _ => false,
    }
}

impl EventLog {
    /// Starts the writer tasks on the current Tokio runtime. They stop when the last
    /// clone of this log is dropped.
    pub fn new(pool: PgPool) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        // Capacity 1 + try_send: appends during an in-flight NOTIFY fold into the next one.
        let (wake_tx, wake_rx) = mpsc::channel::<()>(1);
        for _ in 0..WRITERS {
            tokio::spawn(writer(pool.clone(), rx.clone(), wake_tx.clone()));
        }
        tokio::spawn(notifier(pool.clone(), wake_rx));
        Self {
            pool,
            jobs: tx,
            events_appended: None,
            writers: Arc::default(),
            remembered: Arc::default(),
            signer: None,
            standing: None,
        }
    }

    /// Announce standing changes through `epochs` (the application always does).
    pub fn announcing_to(mut self, epochs: StandingEpochs) -> Self {
        self.standing = Some(epochs);
        self
    }

    /// Announces a change of standing in `tenant` before it is committed
    /// (`StandingEpochs::begin_change`); for writers that commit outside `append`. Every
    /// `Ok` must be followed by [`Self::end_standing_change`], committed or not.
    pub async fn begin_standing_change(&self, tenant: uuid::Uuid) -> Result<(), AppendError> {
        match &self.standing {
            Some(epochs) => epochs
                .begin_change(tenant)
                .await
                .map_err(|e| AppendError::Unannounced(e.to_string())),
            None => Ok(()),
        }
    }

    /// Ends a change announced with [`Self::begin_standing_change`].
    pub async fn end_standing_change(&self, tenant: uuid::Uuid) {
        if let Some(epochs) = &self.standing {
            epochs.end_change(tenant).await;
        }
    }

    /// Sign every commit with `key` (the application always does: `App::start`).
    pub fn signed_by(mut self, key: crate::config::EventSigningKey) -> Self {
        self.signer = Some(Arc::new(key));
        self
    }

    pub fn signer(&self) -> Option<&crate::config::EventSigningKey> {
        self.signer.as_deref()
    }

    /// Count appended events into this counter (`/metrics`).
    pub fn with_counter(mut self, counter: Counter) -> Self {
        self.events_appended = Some(counter);
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The turn locks every store on this log shares: the API and the worker of one
    /// process use one log, so they take turns too.
    pub fn writers(&self) -> &super::StreamWriters {
        &self.writers
    }

    /// The stream states every store on this log remembers (src/store/remembered.rs).
    pub(super) fn remembered(&self) -> &super::remembered::Remembered {
        &self.remembered
    }

    /// Appends one command's events; returns once they are committed — and, for a
    /// change of someone's standing, once every instance will see it on its next request
    /// (announced before the append, ended after it: docs/auth-cache.md).
    ///
    /// The announcement, the append and the end run on a task of their own, which the
    /// caller awaits but does not own: a caller dropped in between (a client hanging up
    /// on a logout or a revocation) would leave the announcement without its end, and
    /// the tenant's every request reading the log for `PENDING_TTL` (5 minutes). (The
    /// end cannot be sent from a drop guard instead: it must come after the commit,
    /// which a dropped caller no longer waits for.)
    pub async fn append(&self, append: StreamAppend) -> Result<(), AppendError> {
        if !changes_standing(&append.aggregate_type, &append.event_types) {
            return self.append_now(append).await;
        }
        let log = self.clone();
        let change = async move {
            let tenant = append.tenant_id;
            log.begin_standing_change(tenant).await?;
            let appended = log.append_now(append).await;
            log.end_standing_change(tenant).await;
            appended
        };
        use tracing::Instrument;
        tokio::spawn(change.instrument(tracing::Span::current()))
            .await
            .map_err(|e| AppendError::Database(format!("a standing change's task failed: {e}")))?
    }

    async fn append_now(&self, append: StreamAppend) -> Result<(), AppendError> {
        let n = append.sequences.len() as u64;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { append, reply })
            .await
            .map_err(|_| AppendError::Closed)?;
        answer.await.map_err(|_| AppendError::Closed)??;
        if let Some(counter) = &self.events_appended {
            counter.inc_by(n);
        }
        Ok(())
    }
}

/// Sends one NOTIFY per wake-up request, at most one per `NOTIFY_INTERVAL` (each is a
/// small commit of its own); ends when every writer has ended.
async fn notifier(pool: PgPool, mut wake: mpsc::Receiver<()>) {
    while wake.recv().await.is_some() {
        if let Err(err) = sqlx::query("SELECT pg_notify('chronicle_events', '')")
            .execute(&pool)
            .await
        {
            // Projectors poll as well; a lost wake-up only delays them.
            tracing::debug!(error = %err, "NOTIFY failed");
        }
        tokio::time::sleep(NOTIFY_INTERVAL).await;
    }
}

async fn writer(pool: PgPool, jobs: Arc<Mutex<mpsc::Receiver<Job>>>, wake: mpsc::Sender<()>) {
    loop {
        let batch = {
            let mut rx = jobs.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut rows = first.append.sequences.len();
            let mut batch = vec![first];
            while rows < MAX_ROWS {
                match rx.try_recv() {
                    Ok(job) => {
                        rows += job.append.sequences.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        let appends: Vec<&StreamAppend> = batch.iter().map(|j| &j.append).collect();
        match write(&pool, &appends).await {
            Ok(()) => {
                let _ = wake.try_send(());
                for job in batch {
                    let _ = job.reply.send(Ok(()));
                }
            }
            // One append's own failure (its stream's conflict, a row the database
            // refuses, its key taken over) fails the whole batch's transaction: each is
            // written again on its own, so only that one fails.
            Err(err) if err.is_one_appends() && batch.len() > 1 => {
                for job in batch {
                    let result = write(&pool, &[&job.append])
                        .await
                        .map_err(WriteError::classify);
                    if result.is_ok() {
                        let _ = wake.try_send(());
                    }
                    let _ = job.reply.send(result);
                }
            }
            Err(err) => {
                let err = err.classify();
                for job in batch {
                    let _ = job.reply.send(Err(match &err {
                        AppendError::Conflict => AppendError::Conflict,
                        AppendError::KeyTakenOver => AppendError::KeyTakenOver,
                        other => AppendError::Database(other.to_string()),
                    }));
                }
            }
        }
    }
}

fn is_conflict(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.code().as_deref() == Some("23505"))
}

pub(super) fn classify(err: sqlx::Error) -> AppendError {
    if is_conflict(&err) {
        AppendError::Conflict
    } else {
        AppendError::Database(err.to_string())
    }
}

/// Why a batch was not written.
enum WriteError {
    Database(sqlx::Error),
    KeyTakenOver,
}

impl From<sqlx::Error> for WriteError {
    fn from(err: sqlx::Error) -> Self {
        WriteError::Database(err)
    }
}

impl From<MarkError> for WriteError {
    fn from(err: MarkError) -> Self {
        match err {
            MarkError::Database(err) => WriteError::Database(err),
            MarkError::TakenOver => WriteError::KeyTakenOver,
        }
    }
}

impl WriteError {
    /// A failure that may belong to one append of the batch, not to all of them: the
    /// database refused a statement (a stream conflict, a constraint or trigger on one
    /// append's rows), or a key was taken over. Not a lost connection or a busy pool,
    /// which writing the appends one by one would only meet again, once per append.
    fn is_one_appends(&self) -> bool {
        match self {
            WriteError::Database(err) => matches!(err, sqlx::Error::Database(_)),
            WriteError::KeyTakenOver => true,
        }
    }

    fn classify(self) -> AppendError {
        match self {
            WriteError::Database(err) => classify(err),
            WriteError::KeyTakenOver => AppendError::KeyTakenOver,
        }
    }
}

/// Writes a batch: one INSERT, plus — only when some append carries an idempotency key —
/// the key update, in the same transaction.
async fn write(pool: &PgPool, appends: &[&StreamAppend]) -> Result<(), WriteError> {
    let markers: Vec<_> = appends
        .iter()
        .filter_map(|a| a.idempotency.as_ref())
        .collect();
    if markers.is_empty() {
        return Ok(insert(pool, appends).await?);
    }
    let mut tx = pool.begin().await?;
    insert(&mut *tx, appends).await?;
    super::idempotency::mark_committed(&mut tx, &markers).await?;
    Ok(tx.commit().await?)
}

/// One INSERT for all rows of `appends`, on a pool or inside a caller's transaction.
pub(super) async fn insert<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    appends: &[&StreamAppend],
) -> Result<(), sqlx::Error> {
    let rows: usize = appends.iter().map(|a| a.sequences.len()).sum();
    let mut tenants = Vec::with_capacity(rows);
    let mut types = Vec::with_capacity(rows);
    let mut ids = Vec::with_capacity(rows);
    let mut sequences = Vec::with_capacity(rows);
    let mut event_types = Vec::with_capacity(rows);
    let mut versions = Vec::with_capacity(rows);
    let mut payloads = Vec::with_capacity(rows);
    let mut metadata = Vec::with_capacity(rows);
    let mut recorded = Vec::with_capacity(rows);
    for a in appends {
        for i in 0..a.sequences.len() {
            tenants.push(a.tenant_id);
            types.push(a.aggregate_type.as_str());
            ids.push(a.aggregate_id.as_str());
            sequences.push(a.sequences[i]);
            event_types.push(a.event_types[i].as_str());
            versions.push(a.event_versions[i].as_str());
            payloads.push(a.payloads[i].as_str());
            metadata.push(a.metadata[i].as_str());
            recorded.push(a.recorded_at);
        }
    }
    sqlx::query(
        r#"
INSERT INTO events (tenant_id, aggregate_type, aggregate_id, sequence, event_type,
                    event_version, payload, metadata, recorded_at)
SELECT u.tenant_id, u.aggregate_type, u.aggregate_id, u.sequence, u.event_type,
       u.event_version, u.payload::json, u.metadata::json, coalesce(u.recorded_at, now())
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
              $7::text[], $8::text[], $9::timestamptz[])
    AS u(tenant_id, aggregate_type, aggregate_id, sequence, event_type, event_version,
         payload, metadata, recorded_at)"#,
    )
    .bind(&tenants)
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .bind(&event_types)
    .bind(&versions)
    .bind(&payloads)
    .bind(&metadata)
    .bind(&recorded)
    .execute(executor)
    .await?;
    Ok(())
}
