//! Read replicas (`DATABASE_READ_URL`; docs/deployment.md, "Read replicas"). Read-only
//! queries of listings and audit pages run on a streaming replica; writes, the event
//! store's loads for commands, projectors, the file cache's fills and authentication
//! stay on the primary.
//!
//! **Read-your-writes (decision).** After a caller's successful write, the API keeps
//! that user's "wrote recently" mark in Redis (src/api/edge/read_routing.rs) for
//! `RYW_WINDOW`. A read by a user with the mark needs a replica that has replayed at
//! least the primary's WAL position *at the time of the read* (one cheap query on the
//! primary): such a replica shows everything the primary would, including projector
//! updates that landed after the write was answered. Within `REPLICA_WAIT_MS` the read
//! waits for one, else it reads the primary. Without the mark, any replica that is up
//! and less than `RYW_WINDOW` behind serves. So a client never sees an older state
//! through a replica than the primary showed it, and no per-client token is needed.
//!
//! A replica that fails a health poll or a query is marked down and skipped until a
//! poll succeeds; the failed read runs again on the primary, so callers see no error.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::config::{ScaleSettings, Secret};
use crate::error::AppError;
use crate::metrics::{Metrics, ReplicaLabels};

/// How long a write keeps its author's reads at least as fresh as the primary; also the
/// most a replica may lag (replay time) to serve anyone.
pub const RYW_WINDOW: Duration = Duration::from_secs(10);
/// How often a read waiting for a replica to catch up checks again.
const WAIT_STEP: Duration = Duration::from_millis(10);

/// A WAL position (`pg_lsn` as a number).
pub type Lsn = u64;

/// `16/B374D848` → its number.
pub fn parse_lsn(text: &str) -> Option<Lsn> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

struct Member {
    /// host:port, for metrics and logs (never the URL: it may hold a password).
    name: String,
    pool: PgPool,
    up: AtomicBool,
    /// The last replay position seen (0: unknown).
    replayed: AtomicU64,
    /// Replay lag in milliseconds at the last poll.
    lag_ms: AtomicU64,
}

struct Inner {
    primary: PgPool,
    members: Vec<Member>,
    next: AtomicUsize,
    wait: Duration,
    check_every: Duration,
    metrics: Arc<Metrics>,
}

/// Where a read goes. Cheap to clone; `none` when no replica is configured.
#[derive(Clone)]
pub struct Replicas {
    inner: Arc<Inner>,
}

impl Replicas {
    /// Opens a lazy pool per replica (a replica that is down at start-up only means
    /// reads go to the primary until it answers), running as `role` like the primary's.
    pub fn open(
        primary: PgPool,
        settings: &ScaleSettings,
        role: &'static str,
        max_connections: u32,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let members = settings
            .read_urls
            .iter()
            .map(|url| member(url, role, max_connections))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                primary,
                members,
                next: AtomicUsize::new(0),
                wait: settings.replica_wait,
                check_every: settings.replica_check_every,
                metrics,
            }),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.inner.members.is_empty()
    }

    pub fn primary(&self) -> &PgPool {
        &self.inner.primary
    }

    /// The primary's current WAL position.
    pub async fn primary_lsn(&self) -> Result<Lsn, sqlx::Error> {
        let text: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&self.inner.primary)
            .await?;
        Ok(parse_lsn(&text).unwrap_or(u64::MAX))
    }

    /// Runs `read` on a replica (one as fresh as the primary now when `fresh`), or on
    /// the primary when none is usable in time; a replica that fails is marked down and
    /// the read runs again on the primary.
    pub async fn read<T, F, Fut>(&self, fresh: bool, read: F) -> Result<T, AppError>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T, AppError>>,
    {
        if let Some(i) = self.choose(fresh).await {
            let member = &self.inner.members[i];
            match read(member.pool.clone()).await {
                Err(AppError::Unavailable(_) | AppError::Internal(_)) => {
                    tracing::warn!(replica = %member.name, "a read failed on a replica; marked down, reading the primary");
                    self.mark(i, false);
                }
                answer => {
                    self.count(&member.name);
                    return answer;
                }
            }
        }
        self.count("primary");
        read(self.inner.primary.clone()).await
    }

    fn count(&self, target: &str) {
        self.inner
            .metrics
            .db_reads
            .get_or_create(&ReplicaLabels {
                replica: target.to_string(),
            })
            .inc();
    }

    /// A replica that is up, not too far behind and, when `fresh`, has replayed the
    /// primary's position of now (waiting up to `REPLICA_WAIT_MS` for one).
    async fn choose(&self, fresh: bool) -> Option<usize> {
        let inner = &self.inner;
        if inner.members.is_empty() {
            return None;
        }
        let start = inner.next.fetch_add(1, Ordering::Relaxed);
        let n = inner.members.len();
        let usable = |i: &usize| {
            let m = &inner.members[*i];
            m.up.load(Ordering::Relaxed)
                && Duration::from_millis(m.lag_ms.load(Ordering::Relaxed)) < RYW_WINDOW
        };
        let candidates: Vec<usize> = (0..n).map(|k| (start + k) % n).filter(usable).collect();
        if !fresh {
            return candidates.first().copied();
        }
        let target = self.primary_lsn().await.ok()?;
        let deadline = Instant::now() + inner.wait;
        loop {
            for &i in &candidates {
                let m = &inner.members[i];
                if m.replayed.load(Ordering::Relaxed) >= target {
                    return Some(i);
                }
                if let Ok(Some(at)) = replay_lsn(&m.pool).await {
                    m.replayed.fetch_max(at, Ordering::Relaxed);
                    if at >= target {
                        return Some(i);
                    }
                }
            }
            if candidates.is_empty() || Instant::now() + WAIT_STEP > deadline {
                return None;
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    fn mark(&self, i: usize, up: bool) {
        let m = &self.inner.members[i];
        m.up.store(up, Ordering::Relaxed);
        self.inner
            .metrics
            .replica_up
            .get_or_create(&ReplicaLabels {
                replica: m.name.clone(),
            })
            .set(i64::from(up));
    }

    /// Polls every replica's replay position and lag until `shutdown`: the metrics
    /// `chronicle_replica_up`, `chronicle_replica_lag_seconds` and
    /// `chronicle_replica_lag_bytes`, and whether reads may go there.
    pub fn spawn_monitor(
        &self,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if !self.enabled() {
            return None;
        }
        let this = self.clone();
        Some(tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                this.poll().await;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(this.inner.check_every) => {}
                }
            }
        }))
    }

    async fn poll(&self) {
        let primary = self.primary_lsn().await.ok();
        for (i, m) in self.inner.members.iter().enumerate() {
            let polled = tokio::time::timeout(self.inner.check_every, status(&m.pool)).await;
            let labels = ReplicaLabels {
                replica: m.name.clone(),
            };
            match polled {
                Ok(Ok((Some(replayed), lag))) => {
                    m.replayed.store(replayed, Ordering::Relaxed);
                    m.lag_ms
                        .store((lag * 1000.0).max(0.0) as u64, Ordering::Relaxed);
                    let metrics = &self.inner.metrics;
                    metrics.replica_lag_seconds.get_or_create(&labels).set(lag);
                    if let Some(p) = primary {
                        metrics
                            .replica_lag_bytes
                            .get_or_create(&labels)
                            .set(p.saturating_sub(replayed) as i64);
                    }
                    if !m.up.load(Ordering::Relaxed) {
                        tracing::info!(replica = %m.name, "replica up; reads go there again");
                    }
                    self.mark(i, true);
                }
                other => {
                    if m.up.load(Ordering::Relaxed) {
                        tracing::warn!(replica = %m.name, outcome = ?other.map(|r| r.map(|_| ())), "replica unusable; reads skip it");
                    }
                    self.mark(i, false);
                }
            }
        }
    }
}

fn member(url: &Secret, role: &'static str, max_connections: u32) -> anyhow::Result<Member> {
    use std::str::FromStr;
    let options = PgConnectOptions::from_str(url.expose())
        .map_err(|_| anyhow::anyhow!("DATABASE_READ_URL holds an invalid Postgres URL"))?
        .application_name("chronicle-read");
    let name = format!("{}:{}", options.get_host(), options.get_port());
    // A URL whose login is the role itself (how a replica is reached through a
    // transaction pooler) needs no `SET ROLE`, which would be session state there.
    let switch_role = options.get_username() != role;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        // A replica that cannot give a connection quickly is not worth waiting for: the
        // primary can serve the read.
        .acquire_timeout(Duration::from_millis(500))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if switch_role {
                    sqlx::query(&format!("SET ROLE {role}"))
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect_lazy_with(options);
    Ok(Member {
        name,
        pool,
        // Unknown until the first poll: reads go to the primary meanwhile.
        up: AtomicBool::new(false),
        replayed: AtomicU64::new(0),
        lag_ms: AtomicU64::new(u64::MAX / 2),
    })
}

/// A standby's replay position (`None` on a server that is not in recovery).
async fn replay_lsn(pool: &PgPool) -> Result<Option<Lsn>, sqlx::Error> {
    let text: Option<String> = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn()::text")
        .fetch_one(pool)
        .await?;
    Ok(text.as_deref().and_then(parse_lsn))
}

/// Replay position and lag in seconds: zero when everything received is replayed (an
/// idle primary sends nothing, which is not lag), else the age of the last replayed
/// transaction.
async fn status(pool: &PgPool) -> Result<(Option<Lsn>, f64), sqlx::Error> {
    let (replayed, lag): (Option<String>, f64) = sqlx::query_as(
        "SELECT pg_last_wal_replay_lsn()::text,
                CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                     ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
                END::float8",
    )
    .fetch_one(pool)
    .await?;
    Ok((replayed.as_deref().and_then(parse_lsn), lag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_as_postgres_prints_them() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert!(parse_lsn("16/B374D848").unwrap() > parse_lsn("15/FFFFFFFF").unwrap());
        assert_eq!(parse_lsn("nonsense"), None);
    }
}
