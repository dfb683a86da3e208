//! Rate limiting shared by every API instance: the counters live in Redis, so N instances
//! behind a load balancer enforce one budget, not N budgets.
//!
//! **Fixed window, one atomic script.** `INCR` the key and give it a TTL of one window when
//! it has none; the checks of concurrent requests share one script call (`batch`). Why not
//! a sliding window: a fixed window costs one key and one counter step per check, its
//! reset time is simply the key's TTL (exactly what `RateLimit-Reset` and `Retry-After`
//! need), and the window is timed by Redis itself, so clock skew between instances cannot
//! matter. Its known weakness, a burst of up to 2× the limit straddling a
//! window boundary, is acceptable for abuse protection (10 logins/min becomes at worst 20).
//! The window starts at a client's first request rather than on the wall clock, so clients
//! do not all reset at once.
//!
//! **A dead Redis fails fast.** Every check has a short deadline; after a failure a breaker
//! skips Redis for a second, so a blackholed Redis costs one slow request per second,
//! not one per request. What the caller does without an answer (serve or refuse) is a
//! policy decision made by the HTTP layer (`api::ratelimit`).

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::breaker::Breaker;
use crate::cache::standing::Epoch;

mod batch;

/// How long a check may wait for Redis before the request goes on without an answer.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(250);

/// The outcome of one check; the numbers feed the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    /// Requests left in the current window (0 once refused).
    pub remaining: u64,
    /// Until the window resets (and a refused client may retry).
    pub reset_after: Duration,
}

impl Decision {
    /// `reset_after` rounded up to whole seconds, at least 1: headers carry seconds and
    /// "retry in 0 s" would invite a client to hammer the API.
    pub fn reset_secs(&self) -> u64 {
        self.reset_after.as_millis().div_ceil(1000).max(1) as u64
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LimiterError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A recent failure opened the breaker; Redis was not asked.
    #[error("redis recently failed; not retried yet")]
    BreakerOpen,
    /// Redis answered something other than the script's array.
    #[error("redis gave an unexpected answer: {0}")]
    Answer(String),
    /// The batcher's tasks are gone (the runtime is shutting down).
    #[error("the rate limiter has stopped")]
    Stopped,
}

/// Opens a Redis connection manager without connecting: the process starts (and readiness
/// reports Redis as down) even when Redis is unreachable; it connects on first use and
/// reconnects by itself. Works for `redis://` and `rediss://` alike.
///
/// No connection retries inside the manager: every command issued while it reconnects
/// waits for that reconnection, so retries with backoff turned a refused connection
/// (Redis stopped: an answer within a millisecond) into a wait of 300–600 ms for each
/// request that touches Redis, on top of one another when a request touches it twice.
/// Every user of this connection has its own fallback and breaker (rate limits, epochs,
/// caches, queue dispatch with the reconciler behind it), so failing at once is right;
/// the next command after a failure connects again.
pub fn connection_manager(url: &str) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(0);
    ConnectionManager::new_lazy_with_config(client, config)
}

/// A reusable, instance-shared limiter. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    prefix: Arc<str>,
    batcher: batch::Batcher,
    breaker: Arc<Breaker>,
}

impl RateLimiter {
    /// `prefix` (`REDIS_KEY_PREFIX`) namespaces every key, so deployments and tests sharing
    /// one Redis do not share budgets. Starts the batcher's tasks on the current Tokio
    /// runtime (src/ratelimit/batch.rs).
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        let prefix: Arc<str> = Arc::from(prefix);
        let breaker = Arc::new(Breaker::new(
            "rate limiter",
            "applying the fallback policy (docs/architecture.md, Edge)",
        ));
        Self {
            batcher: batch::Batcher::start(conn, prefix.clone(), breaker.clone()),
            prefix,
            breaker,
        }
    }

    /// Counts one request against `key` (e.g. `ip:203.0.113.7` or
    /// `login:account:ada@example.com`) and says whether it fits in `limit` per `window`.
    pub async fn check(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> Result<Decision, LimiterError> {
        let answer = self.ask(key, window, None).await?;
        Ok(decision(answer.count, answer.ttl_ms, limit))
    }

    /// [`Self::check`], and the standing and listing epochs of `tenant` read in the same
    /// round trip (an authenticated request needs the first, a listing the second:
    /// src/auth/standing.rs, src/cache/listing.rs).
    pub async fn check_reading_epoch(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
        tenant: uuid::Uuid,
    ) -> Result<(Decision, Epoch, Epoch), LimiterError> {
        let answer = self.ask(key, window, Some(tenant)).await?;
        let (epoch, listing) = answer
            .epochs
            .ok_or_else(|| LimiterError::Answer("no epochs".into()))?;
        Ok((decision(answer.count, answer.ttl_ms, limit), epoch, listing))
    }

    async fn ask(
        &self,
        key: &str,
        window: Duration,
        tenant: Option<uuid::Uuid>,
    ) -> Result<batch::Answer, LimiterError> {
        if self.breaker.is_open() {
            return Err(LimiterError::BreakerOpen);
        }
        let redis_key = format!("{}ratelimit:{key}", self.prefix);
        let window_ms = window.as_millis().max(1) as u64;
        self.batcher.check(redis_key, window_ms, tenant).await
    }
}

fn decision(count: u64, ttl_ms: i64, limit: u64) -> Decision {
    Decision {
        allowed: count <= limit,
        limit,
        remaining: limit.saturating_sub(count),
        reset_after: Duration::from_millis(ttl_ms.max(0) as u64),
    }
}

/// The client's address. `X-Forwarded-For` is honoured only behind a trusted proxy, and
/// then only its **last** entry: that is the one our proxy appended; everything to its left
/// came from the client and can be forged.
pub fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, trust_proxy: bool) -> Option<IpAddr> {
    if trust_proxy {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
            .next_back();
        if forwarded.is_some() {
            return forwarded;
        }
    }
    peer
}

/// The budget a client counts against. An IPv6 client usually controls a whole /64, so
/// per-address keys would let it rotate addresses for a fresh budget each time.
pub fn bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const PEER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));

    #[test]
    fn forwarded_for_is_ignored_unless_the_proxy_is_trusted() {
        let h = headers(&["203.0.113.7"]);
        assert_eq!(client_ip(&h, PEER, false), PEER);
        assert_eq!(
            client_ip(&h, PEER, true),
            Some("203.0.113.7".parse().unwrap())
        );
    }

    #[test]
    fn the_last_forwarded_entry_wins_because_the_client_writes_the_others() {
        let h = headers(&["1.1.1.1, 2.2.2.2", "198.51.100.9"]);
        assert_eq!(
            client_ip(&h, PEER, true),
            Some("198.51.100.9".parse().unwrap())
        );
        let h = headers(&["spoofed, 198.51.100.9 "]);
        assert_eq!(
            client_ip(&h, PEER, true),
            Some("198.51.100.9".parse().unwrap())
        );
        // Garbage only: fall back to the socket peer.
        assert_eq!(client_ip(&headers(&["nonsense"]), PEER, true), PEER);
        assert_eq!(client_ip(&HeaderMap::new(), PEER, true), PEER);
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        let a = bucket("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = bucket("2001:db8:1:2:bbbb::2".parse().unwrap());
        let c = bucket("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(bucket("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
    }

    #[test]
    fn reset_is_whole_seconds_rounded_up_and_never_zero() {
        let d = |ms| Decision {
            allowed: true,
            limit: 1,
            remaining: 0,
            reset_after: Duration::from_millis(ms),
        };
        assert_eq!(d(0).reset_secs(), 1);
        assert_eq!(d(1).reset_secs(), 1);
        assert_eq!(d(1000).reset_secs(), 1);
        assert_eq!(d(1001).reset_secs(), 2);
        assert_eq!(d(59_999).reset_secs(), 60);
    }
}

#[cfg(test)]
mod connection_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::connection_manager;

    /// A server that accepts and hangs up at once stands for a Redis that is going away.
    /// One command must cost one connection attempt, not a series with backoff that every
    /// command issued meanwhile waits for (the outage test measured 550 ms per request).
    #[tokio::test]
    async fn a_failing_connection_is_tried_once_per_command_not_retried_with_backoff() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        let mut conn = connection_manager(&format!("redis://127.0.0.1:{port}")).unwrap();
        let mut attempts_after = Vec::new();
        for _ in 0..3 {
            let answer: redis::RedisResult<String> =
                redis::cmd("PING").query_async(&mut conn).await;
            assert!(answer.is_err(), "a server that hangs up cannot answer PING");
            // Give a retry with backoff (100 ms and up) the time to show itself.
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            attempts_after.push(accepted.load(Ordering::SeqCst));
        }
        // The first command's attempt, and the reconnection its failure starts; then one
        // attempt per command. (With two retries it read 5, 8, …: each command waited for three.)
        assert_eq!(attempts_after, [2, 3, 4]);
    }
}
