//! The live hub: one Redis pub/sub subscription per API instance, fanned out to the
//! instance's SSE clients through one tokio broadcast channel per (tenant, user).
//!
//! The `notifications` projector publishes every new row after its batch commits, on
//! `{REDIS_KEY_PREFIX}events:{tenant}`; whichever instance ran the projector, every
//! instance's hub receives it (`PSUBSCRIBE {prefix}events:*`), so any instance serves any
//! user. Messages are hints that speed up delivery, never the only path: whenever the hub
//! (re)connects it tells every local client to re-read the table, because anything
//! published while it was away is lost (pub/sub does not buffer).

pub mod message;
pub mod publish;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use message::{EventId, NotificationView, Published, PublishedProgress, UploadProgress};

/// Per-user buffer: a client further behind than this is re-synced from the table.
const CLIENT_BUFFER: usize = 256;
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// What a local SSE client receives.
#[derive(Debug, Clone)]
pub enum Live {
    /// A row just committed for this user.
    Row(Arc<Published>),
    /// Messages may have been lost (the hub reconnected): re-read the table.
    Resync,
    /// One of this user's resumable uploads moved (not stored; nothing to re-read).
    Progress(Arc<PublishedProgress>),
}

type UserKey = (Uuid, Uuid);

/// Cheap to clone; lives in `AppState`.
#[derive(Clone)]
pub struct LiveHub {
    inner: Arc<Inner>,
}

struct Inner {
    users: Mutex<HashMap<UserKey, broadcast::Sender<Live>>>,
    /// Cancelled on server shutdown: SSE streams end so the HTTP server can drain.
    shutdown: CancellationToken,
    /// Whether the Redis subscription is up right now.
    subscribed: AtomicBool,
    /// Subscriptions established (1 + re-subscriptions) and pings answered, for /metrics.
    subscriptions: Counter,
    pings: Counter,
}

/// A client's receiver; dropping it removes the user's channel once unused.
pub struct Subscription {
    rx: Option<broadcast::Receiver<Live>>,
    key: UserKey,
    hub: LiveHub,
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<Live, broadcast::error::RecvError> {
        match self.rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut users = self.hub.lock();
        if users
            .get(&self.key)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            users.remove(&self.key);
        }
    }
}

impl LiveHub {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self::with_counters(shutdown, Counter::default(), Counter::default())
    }

    /// A hub that counts its subscriptions and answered pings in these (/metrics).
    pub fn with_counters(
        shutdown: CancellationToken,
        subscriptions: Counter,
        pings: Counter,
    ) -> Self {
        LiveHub {
            inner: Arc::new(Inner {
                users: Mutex::new(HashMap::new()),
                shutdown,
                subscribed: AtomicBool::new(false),
                subscriptions,
                pings,
            }),
        }
    }

    /// Subscriptions established since start: more than 1 means re-subscriptions.
    pub fn subscriptions(&self) -> u64 {
        self.inner.subscriptions.get()
    }

    /// Pings the subscription answered since start.
    pub fn pings(&self) -> u64 {
        self.inner.pings.get()
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserKey, broadcast::Sender<Live>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.inner.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Live rows of one user of one tenant, from now on.
    pub fn subscribe(&self, tenant: Uuid, user: Uuid) -> Subscription {
        let rx = self
            .lock()
            .entry((tenant, user))
            .or_insert_with(|| broadcast::channel(CLIENT_BUFFER).0)
            .subscribe();
        Subscription {
            rx: Some(rx),
            key: (tenant, user),
            hub: self.clone(),
        }
    }

    /// Whether the shared Redis subscription is established right now.
    pub fn is_subscribed(&self) -> bool {
        self.inner.subscribed.load(Ordering::Relaxed)
    }

    /// Local clients right now (for tests and metrics).
    pub fn clients(&self) -> usize {
        self.lock().values().map(|tx| tx.receiver_count()).sum()
    }

    /// Hands a message from `channel` to the recipient's local clients. The tenant is
    /// taken from the channel and must match the message's.
    fn dispatch(&self, channel_tenant: Uuid, payload: &[u8]) {
        let (key, live) = match serde_json::from_slice::<Published>(payload) {
            Ok(p) => ((p.tenant_id, p.recipient_id), Live::Row(Arc::new(p))),
            Err(err) => match serde_json::from_slice::<PublishedProgress>(payload) {
                Ok(p) => ((p.tenant_id, p.recipient_id), Live::Progress(Arc::new(p))),
                Err(_) => {
                    tracing::warn!(error = %err, "unreadable live message dropped");
                    return;
                }
            },
        };
        if key.0 != channel_tenant {
            tracing::warn!("live message on another tenant's channel dropped");
            return;
        }
        if let Some(tx) = self.lock().get(&key) {
            let _ = tx.send(live);
        }
    }

    fn resync_all(&self) {
        for tx in self.lock().values() {
            let _ = tx.send(Live::Resync);
        }
    }

    /// The hub's one subscription: connects, dispatches, reconnects with backoff until
    /// shutdown. Start it once per instance that serves HTTP. `ping_every`: how often the
    /// connection is checked (`LIVE_PING_EVERY_SECS`).
    pub async fn run(self, client: redis::Client, key_prefix: String, ping_every: Duration) {
        let pattern = format!("{}events:*", glob_escape(&key_prefix));
        let shutdown = self.inner.shutdown.clone();
        let mut failures: u32 = 0;
        while !shutdown.is_cancelled() {
            let outcome = self
                .subscribed(&client, &pattern, &key_prefix, ping_every, &mut failures)
                .await;
            self.inner.subscribed.store(false, Ordering::Relaxed);
            match outcome {
                Ok(()) => break,
                Err(err) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %err, "live events: Redis subscription lost; SSE clients will re-sync when it is back");
                    }
                }
            }
            let pause = Duration::from_millis(250 * 2u64.pow(failures.min(5)));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!("live hub stopped");
    }

    /// One connection's life. Ok on shutdown, Err when the connection is lost.
    async fn subscribed(
        &self,
        client: &redis::Client,
        pattern: &str,
        key_prefix: &str,
        ping_every: Duration,
        failures: &mut u32,
    ) -> anyhow::Result<()> {
        let mut pubsub = tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| anyhow::anyhow!("connect timed out"))??;
        tokio::time::timeout(REDIS_TIMEOUT, pubsub.psubscribe(pattern))
            .await
            .map_err(|_| anyhow::anyhow!("PSUBSCRIBE timed out"))??;
        tracing::info!("live events: subscribed");
        *failures = 0;
        self.inner.subscribed.store(true, Ordering::Relaxed);
        self.inner.subscriptions.inc();
        // Anything published before this point (or while we were away) reached nobody
        // here; clients fill the gap from the table.
        self.resync_all();
        let (mut sink, mut stream) = pubsub.split();
        let channel_prefix = format!("{key_prefix}events:");
        let mut ping = tokio::time::interval(ping_every);
        ping.tick().await;
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return Ok(()),
                msg = stream.next() => {
                    let msg = msg.ok_or_else(|| anyhow::anyhow!("subscription closed"))?;
                    let tenant = msg
                        .get_channel_name()
                        .strip_prefix(&channel_prefix)
                        .and_then(|t| Uuid::parse_str(t).ok());
                    match tenant {
                        Some(tenant) => self.dispatch(tenant, msg.get_payload_bytes()),
                        None => tracing::warn!("live message on an unexpected channel dropped"),
                    }
                }
                _ = ping.tick() => {
                    let reply = tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>())
                        .await
                        .map_err(|_| anyhow::anyhow!("PING timed out"))??;
                    if !is_pong(&reply) {
                        anyhow::bail!("unexpected PING reply {reply:?}");
                    }
                    self.inner.pings.inc();
                }
            }
        }
    }
}

/// Whether `reply` answers a PING. A connection in subscribed mode (RESP2) answers the
/// array `["pong", ""]` instead of the status `PONG`; reading only the latter took every
/// ping for a lost subscription, and the hub re-subscribed (and re-synced every client)
/// at each ping.
fn is_pong(reply: &redis::Value) -> bool {
    use redis::Value;
    let pong = |v: &Value| match v {
        Value::SimpleString(s) => s.eq_ignore_ascii_case("pong"),
        Value::BulkString(b) => b.eq_ignore_ascii_case(b"pong"),
        _ => false,
    };
    match reply {
        Value::Array(items) | Value::Push { data: items, .. } => items.first().is_some_and(pong),
        other => pong(other),
    }
}

/// Escapes Redis glob metacharacters, so a key prefix is matched literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_matched_literally() {
        assert_eq!(glob_escape("app:"), "app:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn a_subscribed_connections_pong_is_a_pong() {
        use redis::Value;
        let subscribed = Value::Array(vec![
            Value::BulkString(b"pong".to_vec()),
            Value::BulkString(vec![]),
        ]);
        assert!(is_pong(&subscribed));
        assert!(is_pong(&Value::SimpleString("PONG".into())));
        assert!(!is_pong(&Value::Nil));
        assert!(!is_pong(&Value::Array(vec![])));
    }

    #[tokio::test]
    async fn a_user_channel_disappears_with_its_last_client() {
        let hub = LiveHub::new(CancellationToken::new());
        let (t, u) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let a = hub.subscribe(t, u);
        let b = hub.subscribe(t, u);
        assert_eq!(hub.clients(), 2);
        drop(a);
        assert_eq!(hub.lock().len(), 1);
        drop(b);
        assert!(hub.lock().is_empty());
    }
}
