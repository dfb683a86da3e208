//! The per-upload lock: at most one request writes an upload's bytes at a time, across
//! every API instance and the expiry job. `SET key token NX PX lease`; renewed while
//! held by compare-and-`PEXPIRE`, released by compare-and-`DEL` (Lua), so a holder can
//! only ever extend or drop its own lease. A crashed holder stops renewing and its lease
//! lapses after at most `lease`.
//!
//! The holder also keeps its own deadline (`is_held`): it stops writing before the lease
//! could have lapsed in Redis (by the holder's clock, minus a margin), so a stalled
//! holder never writes after a new holder may have started.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;
use uuid::Uuid;

const RENEW: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1]) else return 0 end";
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);

pub struct UploadLock {
    conn: ConnectionManager,
    key: String,
    token: String,
    /// The instant after which this holder must assume the lease lapsed.
    valid_until: Arc<Mutex<Instant>>,
    renewer: JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    Timeout,
}

impl UploadLock {
    pub fn key(key_prefix: &str, tenant: Uuid, upload: Uuid) -> String {
        format!("{key_prefix}upload-lock:{tenant}:{upload}")
    }

    /// Takes the lock, or `None` when someone else holds it.
    pub async fn acquire(
        conn: &ConnectionManager,
        key: String,
        lease: Duration,
    ) -> Result<Option<UploadLock>, LockError> {
        let token = Uuid::new_v4().to_string();
        let mut c = conn.clone();
        let started = Instant::now();
        let set: Option<String> = timed(
            redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(lease.as_millis() as u64)
                .query_async(&mut c),
        )
        .await?;
        if set.is_none() {
            return Ok(None);
        }
        let valid_until = Arc::new(Mutex::new(started + safe(lease)));
        let renewer = tokio::spawn(renew(
            conn.clone(),
            key.clone(),
            token.clone(),
            lease,
            valid_until.clone(),
        ));
        Ok(Some(UploadLock {
            conn: conn.clone(),
            key,
            token,
            valid_until,
            renewer,
        }))
    }

    /// Whether this holder may still write (its lease cannot have lapsed yet).
    pub fn is_held(&self) -> bool {
        Instant::now() < *self.valid_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops the lease if it is still ours; best effort (it lapses on its own anyway).
    pub async fn release(self) {
        self.renewer.abort();
        let mut c = self.conn.clone();
        let released: Result<i64, LockError> = timed(
            redis::Script::new(RELEASE)
                .key(&self.key)
                .arg(&self.token)
                .invoke_async(&mut c),
        )
        .await;
        if let Err(err) = released {
            tracing::warn!(error = %err, "upload lock not released; it lapses with its lease");
        }
    }
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// The part of a lease this holder relies on: its own clock may run behind Redis's.
fn safe(lease: Duration) -> Duration {
    lease.mul_f64(0.8)
}

async fn renew(
    conn: ConnectionManager,
    key: String,
    token: String,
    lease: Duration,
    valid_until: Arc<Mutex<Instant>>,
) {
    loop {
        tokio::time::sleep(lease / 3).await;
        let sent = Instant::now();
        let mut c = conn.clone();
        let renewed: Result<i64, LockError> = timed(
            redis::Script::new(RENEW)
                .key(&key)
                .arg(&token)
                .arg(lease.as_millis() as u64)
                .invoke_async(&mut c),
        )
        .await;
        match renewed {
            Ok(1) => *valid_until.lock().unwrap_or_else(|e| e.into_inner()) = sent + safe(lease),
            Ok(_) => {
                tracing::warn!(key, "upload lock lost: its lease lapsed");
                *valid_until.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                return;
            }
            // Keep the old deadline: writing stops when it passes unless a retry works.
            Err(err) => tracing::warn!(error = %err, "renewing an upload lock failed"),
        }
    }
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, LockError> {
    tokio::time::timeout(REDIS_TIMEOUT, f)
        .await
        .map_err(|_| LockError::Timeout)?
        .map_err(LockError::Redis)
}
