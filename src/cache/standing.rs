//! Standing epochs: the one fact every instance must agree on before it answers an
//! authenticated request from memory — "has anything changed the standing of anyone in
//! this tenant since I last read the log?" (docs/auth-cache.md has the whole argument).
//!
//! One Redis hash per tenant, `{REDIS_KEY_PREFIX}standing:{tenant}`, with two fields:
//! `token` (a random value, replaced by every change) and `pending` (how many changes
//! are between their announcement and their end). A commit that changes someone's
//! standing (a user event, a session or key revocation: `store::event_log`) runs
//!
//! 1. [`StandingEpochs::begin_change`] **before** its events are appended: `pending += 1`
//!    and a new token, with a deadline ([`PENDING_TTL`]). If Redis cannot record it, the
//!    command is refused and nothing is committed;
//! 2. the append;
//! 3. [`StandingEpochs::end_change`] **after** the append, committed or not (and before
//!    the command's response): `pending -= 1` and a new token.
//!
//! A reader ([`StandingEpochs::read`]) trusts what it remembers only under a token read
//! *before* its own database read, and only while `pending` is 0. Anything else — Redis
//! down or slow, the breaker open, a change pending — is [`Epoch::Untrusted`]: the caller
//! reads the log, as it did before this cache existed, and remembers nothing.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use uuid::Uuid;

/// How long a reader waits for the epoch before it reads the log instead.
const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// How long a writer waits to announce or end a change (each attempt).
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long Redis is skipped by readers after a failed read.
const BREAKER_OPEN_FOR: Duration = Duration::from_secs(1);
/// How long an announced change keeps readers off their memory if its end never comes
/// (the writer crashed, or Redis failed between announcement and end). Far longer than
/// any commit can take: a request times out after 60 s.
pub const PENDING_TTL: Duration = Duration::from_secs(300);
/// Lifetime of an idle tenant's epoch; when it lapses, the next reader starts a new one
/// (a cache miss, nothing worse).
const IDLE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Entries per in-memory cache before it is emptied (a bound, not an LRU: refills are
/// one log read each).
const MAX_ENTRIES: usize = 100_000;

/// The tenant's token, creating it (fresh, no change pending) when there is none. The
/// body of a Lua function of the epoch key, a fresh token and the idle TTL, shared with
/// the rate limiter's script that reads the epoch in the same round trip
/// (`ratelimit::RateLimiter::check_reading_epoch`).
pub const READ_EPOCH_FN: &str = r"
local function read_epoch(key, fresh, idle_ttl)
  local v = redis.call('HMGET', key, 'pending', 'token')
  if not v[2] then
    redis.call('HSET', key, 'token', fresh)
    redis.call('PEXPIRE', key, idle_ttl)
    return tonumber(v[1] or '0'), fresh
  end
  return tonumber(v[1] or '0'), v[2]
end
";

const READ: &str = r"
local pending, token = read_epoch(KEYS[1], ARGV[1], ARGV[2])
return {pending, token}
";

/// A change is announced in every epoch of `KEYS`: one more pending, a new token (the
/// fresh `ARGV[1]` and the key's index: distinct per key), the pending deadline.
const BEGIN: &str = r"
for i, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'pending', 1)
  redis.call('HSET', key, 'token', ARGV[1] .. ':' .. i)
  redis.call('PEXPIRE', key, ARGV[2])
end
return #KEYS
";

/// A change ended in every epoch of `KEYS`: one fewer pending (never below 0: the hash
/// may have lapsed and been recreated meanwhile), a new token; the pending deadline
/// stays while others pend.
const END: &str = r"
for i, key in ipairs(KEYS) do
  local pending = redis.call('HINCRBY', key, 'pending', -1)
  if pending < 0 then
    redis.call('HSET', key, 'pending', 0)
    pending = 0
  end
  redis.call('HSET', key, 'token', ARGV[1] .. ':' .. i)
  if pending > 0 then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    redis.call('PEXPIRE', key, ARGV[3])
  end
end
return #KEYS
";

/// What a reader may rely on for one tenant, read before its database read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Epoch {
    /// No change pending; what was remembered under this token is still the log's answer.
    Trusted(Arc<str>),
    /// Read the log, and remember nothing.
    Untrusted,
}

/// The epochs of a request's tenant, read by the rate limiter in its own round trip before
/// anything of the request read the log or a read table (kept in the request's
/// extensions).
#[derive(Debug, Clone)]
pub struct PrefetchedEpoch {
    pub tenant: Uuid,
    /// The standing epoch.
    pub epoch: Epoch,
    /// The listing epoch (`cache::listing`).
    pub listing: Epoch,
}

/// The namespace of standing epochs (the other one is `cache::listing`'s).
pub const STANDING: &str = "standing:";

/// The Redis key of `tenant`'s standing epoch under `prefix` (`REDIS_KEY_PREFIX`).
pub fn epoch_key(prefix: &str, tenant: Uuid) -> String {
    format!("{prefix}{STANDING}{tenant}")
}

/// The arguments [`READ_EPOCH_FN`] takes after the key: a fresh token, the idle TTL.
pub fn read_epoch_args() -> (String, u64) {
    (
        Uuid::new_v4().simple().to_string(),
        IDLE_TTL.as_millis() as u64,
    )
}

impl Epoch {
    /// The epoch of a `read_epoch` answer: trusted only while no change is pending.
    pub fn from_answer(pending: i64, token: String) -> Self {
        if pending > 0 {
            Epoch::Untrusted
        } else {
            Epoch::Trusted(Arc::from(token))
        }
    }

    pub fn token(&self) -> Option<&Arc<str>> {
        match self {
            Epoch::Trusted(token) => Some(token),
            Epoch::Untrusted => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The epochs of every tenant, shared by all instances through Redis. Cheap to clone.
/// The same protocol serves another kind of remembered answer, the listings
/// (`cache::listing`), in a namespace of its own.
#[derive(Clone)]
pub struct StandingEpochs {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    /// `REDIS_KEY_PREFIX` and the namespace.
    prefix: String,
    read: redis::Script,
    begin: redis::Script,
    end: redis::Script,
    origin: Instant,
    /// Milliseconds since `origin` until which readers skip Redis.
    open_until_ms: AtomicU64,
    warned: AtomicBool,
}

impl StandingEpochs {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self::in_namespace(conn, prefix, STANDING)
    }

    /// Epochs whose keys are `{prefix}{namespace}{tenant}`.
    pub fn in_namespace(conn: ConnectionManager, prefix: &str, namespace: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                conn,
                prefix: format!("{prefix}{namespace}"),
                read: redis::Script::new(&format!("{READ_EPOCH_FN}{READ}")),
                begin: redis::Script::new(BEGIN),
                end: redis::Script::new(END),
                origin: Instant::now(),
                open_until_ms: AtomicU64::new(0),
                warned: AtomicBool::new(false),
            }),
        }
    }

    fn key(&self, tenant: Uuid) -> String {
        format!("{}{tenant}", self.inner.prefix)
    }

    fn now_ms(&self) -> u64 {
        self.inner.origin.elapsed().as_millis() as u64
    }

    /// The tenant's epoch now. Never fails: without an answer it is `Untrusted`.
    pub async fn read(&self, tenant: Uuid) -> Epoch {
        let inner = &self.inner;
        if self.now_ms() < inner.open_until_ms.load(Ordering::Relaxed) {
            return Epoch::Untrusted;
        }
        let mut conn = inner.conn.clone();
        let mut call = inner.read.key(self.key(tenant));
        let (fresh, idle_ttl) = read_epoch_args();
        call.arg(fresh).arg(idle_ttl);
        match tokio::time::timeout(READ_TIMEOUT, call.invoke_async::<(i64, String)>(&mut conn))
            .await
        {
            Ok(Ok((pending, token))) => {
                if inner.warned.swap(false, Ordering::Relaxed) {
                    tracing::info!("standing epochs: redis answers again");
                }
                Epoch::from_answer(pending, token)
            }
            failed => {
                let until = self.now_ms() + BREAKER_OPEN_FOR.as_millis() as u64;
                inner.open_until_ms.store(until, Ordering::Relaxed);
                if !inner.warned.swap(true, Ordering::Relaxed) {
                    let error = match failed {
                        Ok(Err(err)) => err.to_string(),
                        _ => format!("no answer within {READ_TIMEOUT:?}"),
                    };
                    tracing::warn!(%error, "standing epochs unavailable: authenticating from the log");
                }
                Epoch::Untrusted
            }
        }
    }

    /// Announces a change of someone's standing in `tenant`, before it is committed. An
    /// error means readers may not learn of it: the change must not be committed.
    pub async fn begin_change(&self, tenant: Uuid) -> Result<(), EpochError> {
        self.begin_changes(&[tenant]).await
    }

    /// Announces one change in each of `tenants` (one round trip), before it is
    /// committed. An error means readers may not learn of it: it must not be committed.
    pub async fn begin_changes(&self, tenants: &[Uuid]) -> Result<(), EpochError> {
        if tenants.is_empty() {
            return Ok(());
        }
        let mut conn = self.inner.conn.clone();
        let mut call = self.inner.begin.prepare_invoke();
        for tenant in tenants {
            call.key(self.key(*tenant));
        }
        call.arg(Uuid::new_v4().simple().to_string())
            .arg(PENDING_TTL.as_millis() as u64);
        tokio::time::timeout(WRITE_TIMEOUT, call.invoke_async::<i64>(&mut conn))
            .await
            .map_err(|_| EpochError::Timeout(WRITE_TIMEOUT))??;
        Ok(())
    }

    /// Ends a change announced with `begin_change` (whether it committed or not). Tried
    /// three times; if Redis still cannot be reached, the pending mark keeps readers on
    /// the log until it lapses ([`PENDING_TTL`]): slower, never stale.
    pub async fn end_change(&self, tenant: Uuid) {
        self.end_changes(&[tenant]).await
    }

    /// Ends the changes announced with `begin_changes(tenants)`, as `end_change` does.
    pub async fn end_changes(&self, tenants: &[Uuid]) {
        if tenants.is_empty() {
            return;
        }
        for attempt in 0..3u32 {
            let mut conn = self.inner.conn.clone();
            let mut call = self.inner.end.prepare_invoke();
            for tenant in tenants {
                call.key(self.key(*tenant));
            }
            call.arg(Uuid::new_v4().simple().to_string())
                .arg(PENDING_TTL.as_millis() as u64)
                .arg(IDLE_TTL.as_millis() as u64);
            match tokio::time::timeout(WRITE_TIMEOUT, call.invoke_async::<i64>(&mut conn)).await {
                Ok(Ok(_)) => return,
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, attempt, "could not end a standing change")
                }
                Err(_) => tracing::warn!(attempt, "could not end a standing change: timeout"),
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        tracing::error!(
            ?tenants,
            namespace = %self.inner.prefix,
            "a change stays pending in redis; its tenants read the database until it lapses"
        );
    }
}

/// Values remembered per instance, each under the epoch token it was read under. A value
/// is handed out only for the token the caller read this request, and for at most
/// [`MAX_AGE`] (which also bounds how long a value — a user's decrypted name and email
/// among them — stays in memory after it stopped being served: stale entries are swept).
pub struct TokenCache<K, V> {
    state: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    map: HashMap<K, Entry<V>>,
    swept: Instant,
}

struct Entry<V> {
    token: Arc<str>,
    at: Instant,
    value: V,
}

/// How long a remembered value is served at most, whatever the epoch says.
pub const MAX_AGE: Duration = Duration::from_secs(300);

impl<K, V> Default for TokenCache<K, V> {
    fn default() -> Self {
        Self {
            state: Mutex::new(Entries {
                map: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }
}

impl<K: Hash + Eq, V: Clone> TokenCache<K, V> {
    /// The value remembered for `key` under `epoch`, if it is trusted and the same.
    pub fn get(&self, key: &K, epoch: &Epoch) -> Option<V> {
        let token = epoch.token()?;
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.map.get(key) {
            Some(e) if &e.token == token && e.at.elapsed() < MAX_AGE => Some(e.value.clone()),
            _ => None,
        }
    }

    /// Remembers `value`, read from the log after `epoch` was read; an untrusted epoch
    /// remembers nothing.
    pub fn put(&self, key: K, epoch: &Epoch, value: V) {
        let Some(token) = epoch.token() else { return };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.map.len() >= MAX_ENTRIES {
            state.map.clear();
        }
        if state.swept.elapsed() >= MAX_AGE {
            state.map.retain(|_, e| e.at.elapsed() < MAX_AGE);
            state.swept = Instant::now();
        }
        let entry = Entry {
            token: token.clone(),
            at: Instant::now(),
            value,
        };
        state.map.insert(key, entry);
    }

    /// Changes the remembered value in place, if there is one (bookkeeping that is not
    /// standing, such as an API key's last use).
    pub fn update(&self, key: &K, change: impl FnOnce(&mut V)) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = state.map.get_mut(key) {
            change(&mut e.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_handed_out_only_under_the_token_they_were_read_under() {
        let cache = TokenCache::<u8, &str>::default();
        let t1 = Epoch::Trusted(Arc::from("t1"));
        let t2 = Epoch::Trusted(Arc::from("t2"));
        cache.put(1, &t1, "alive");
        assert_eq!(cache.get(&1, &t1), Some("alive"));
        assert_eq!(cache.get(&1, &t2), None, "a new token invalidates");
        assert_eq!(cache.get(&1, &Epoch::Untrusted), None);
        cache.put(2, &Epoch::Untrusted, "alive");
        assert_eq!(cache.get(&2, &t1), None, "nothing is kept under no token");
    }
}
