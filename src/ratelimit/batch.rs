//! One Redis round trip for the checks of many requests at once.
//!
//! Every request but the exempt ones costs a check: its budget's counter and, for a
//! person, the tenant's standing and listing epochs (src/cache/standing.rs). One script
//! call per request made Redis the largest cost of an authenticated read besides the HTTP
//! stack itself: at ~20,000 reads per second Redis used a tenth of the machine's CPU, most
//! of it the per-call cost of a script and of the socket on both sides, not the few
//! commands inside. So checks are answered in batches, as the event log commits appends
//! (src/store/event_log.rs): one sender task takes every check already waiting (up to
//! [`MAX_CHECKS`]) and answers them with one call of [`SCRIPT`]; checks arriving meanwhile
//! wait for the next call. (Two senders, one call filling while the other was answered,
//! gave smaller batches and no faster reads: docs/benchmarks.md.) A lone check is sent at
//! once; nothing waits for a timer.
//!
//! **Same answers as one call per check.** A budget's `n` checks in one batch are one
//! `INCRBY n`, atomic in the script, and its checks take the counts `c - n + 1 ..= c` in
//! the order they arrived: exactly what `n` single `INCR`s in that order would have given.
//! A check is only ever sent in a batch formed after it was queued, so the epochs it gets
//! are read after its request arrived — the one property the standing cache needs ("a
//! change announced before the request began is seen by it", docs/auth-cache.md). A batch
//! reads each tenant's epochs once for all of its checks.

use std::collections::HashMap;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{CHECK_TIMEOUT, LimiterError};
use crate::breaker::Breaker;
use crate::cache::listing;
use crate::cache::standing::{self, Epoch};

/// Checks answered by one call at most: bounds the time the script holds Redis (two
/// commands per budget, one or two per epoch).
const MAX_CHECKS: usize = 256;

/// `KEYS`: the budgets' counters, then two epochs (standing, listing) per tenant.
/// `ARGV[1]` the number of counters, `ARGV[2]` the epochs' idle TTL, `ARGV[3]` a fresh
/// token (made distinct per key by its index), then per counter its hits and window (ms).
/// Answers a flat array: `count, ttl` per counter, then `pending, token` per epoch.
/// A counter gets its TTL on its first hit; one that somehow lost its TTL is repaired,
/// so a counter can never live forever.
const SCRIPT: &str = r"
local counters = tonumber(ARGV[1])
local out = {}
for i = 1, counters do
  local count = redis.call('INCRBY', KEYS[i], ARGV[2 + 2 * i])
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[3 + 2 * i])
    ttl = tonumber(ARGV[3 + 2 * i])
  end
  out[#out + 1] = count
  out[#out + 1] = ttl
end
for j = counters + 1, #KEYS do
  local pending, token = read_epoch(KEYS[j], ARGV[3] .. ':' .. j, ARGV[2])
  out[#out + 1] = pending
  out[#out + 1] = token
end
return out
";

/// One request's check, as queued.
struct Check {
    /// The budget's full Redis key.
    key: String,
    window_ms: u64,
    /// The tenant whose epochs the request needs (a person's request), if any.
    tenant: Option<Uuid>,
    reply: oneshot::Sender<Result<Answer, LimiterError>>,
}

/// What Redis said for one check.
#[derive(Debug)]
pub(super) struct Answer {
    pub count: u64,
    pub ttl_ms: i64,
    /// The standing and listing epochs, when the check named a tenant.
    pub epochs: Option<(Epoch, Epoch)>,
}

/// The queue of checks and its sender task. Cheap to clone; the task stops when the last
/// clone is dropped.
#[derive(Clone)]
pub(super) struct Batcher {
    checks: mpsc::Sender<Check>,
}

/// The sender task's state.
struct Sender {
    conn: ConnectionManager,
    prefix: Arc<str>,
    script: redis::Script,
    breaker: Arc<Breaker>,
    queue: mpsc::Receiver<Check>,
}

impl Batcher {
    /// Starts the sender task on the current Tokio runtime.
    pub fn start(conn: ConnectionManager, prefix: Arc<str>, breaker: Arc<Breaker>) -> Self {
        let (checks, queue) = mpsc::channel(4096);
        let sender = Sender {
            conn,
            prefix,
            script: redis::Script::new(&format!("{}{SCRIPT}", standing::READ_EPOCH_FN)),
            breaker,
            queue,
        };
        tokio::spawn(sender.run());
        Self { checks }
    }

    /// Counts one hit on `key` (and reads `tenant`'s epochs) in the next batch. Answers
    /// within [`CHECK_TIMEOUT`], as a single call did.
    pub async fn check(
        &self,
        key: String,
        window_ms: u64,
        tenant: Option<Uuid>,
    ) -> Result<Answer, LimiterError> {
        let (reply, answer) = oneshot::channel();
        let queued = async {
            let check = Check {
                key,
                window_ms,
                tenant,
                reply,
            };
            self.checks
                .send(check)
                .await
                .map_err(|_| LimiterError::Stopped)?;
            answer.await.map_err(|_| LimiterError::Stopped)?
        };
        tokio::time::timeout(CHECK_TIMEOUT, queued)
            .await
            .unwrap_or(Err(LimiterError::Timeout(CHECK_TIMEOUT)))
    }
}

impl Sender {
    async fn run(mut self) {
        while let Some(batch) = self.next_batch().await {
            self.answer(batch).await;
        }
    }

    /// Every check waiting now, at least one; `None` once the queue is closed.
    async fn next_batch(&mut self) -> Option<Vec<Check>> {
        let first = self.queue.recv().await?;
        let mut batch = vec![first];
        while batch.len() < MAX_CHECKS {
            match self.queue.try_recv() {
                Ok(check) => batch.push(check),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    async fn answer(&self, batch: Vec<Check>) {
        // Redis failed a moment ago: these checks were queued behind the call that found
        // out, and must not each wait for it again.
        if self.breaker.is_open() {
            return reply_all(batch, &LimiterError::BreakerOpen);
        }
        let plan = Plan::of(&batch);
        match self.call(&plan).await {
            Ok(values) => {
                self.breaker.close();
                match plan.answers(values) {
                    Ok(answers) => {
                        for (check, answer) in batch.into_iter().zip(answers) {
                            let _ = check.reply.send(Ok(answer));
                        }
                    }
                    Err(err) => reply_all(batch, &err),
                }
            }
            Err(err) => {
                self.breaker.trip(&err);
                reply_all(batch, &err);
            }
        }
    }

    async fn call(&self, plan: &Plan) -> Result<Vec<redis::Value>, LimiterError> {
        let mut invocation = self.script.prepare_invoke();
        for counter in &plan.counters {
            invocation.key(counter.key.as_str());
        }
        for tenant in &plan.tenants {
            invocation.key(standing::epoch_key(&self.prefix, *tenant));
            invocation.key(listing::epoch_key(&self.prefix, *tenant));
        }
        let (fresh, idle_ttl) = standing::read_epoch_args();
        invocation.arg(plan.counters.len()).arg(idle_ttl).arg(fresh);
        for counter in &plan.counters {
            invocation.arg(counter.hits).arg(counter.window_ms);
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(CHECK_TIMEOUT, invocation.invoke_async(&mut conn)).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(LimiterError::Timeout(CHECK_TIMEOUT)),
        }
    }
}

fn reply_all(batch: Vec<Check>, err: &LimiterError) {
    for check in batch {
        let _ = check.reply.send(Err(err.clone()));
    }
}

fn parse<T: redis::FromRedisValue>(value: Option<redis::Value>) -> Result<T, LimiterError> {
    let value = value.ok_or_else(|| LimiterError::Answer("too few values".into()))?;
    redis::from_redis_value(value).map_err(|e| LimiterError::Answer(e.to_string()))
}

/// One batch's distinct counters and tenants, and where each check finds its answer.
struct Plan {
    counters: Vec<Counter>,
    tenants: Vec<Uuid>,
    /// Per check: its counter's index, its place among that counter's hits (0-based, in
    /// arrival order), its tenant's index.
    places: Vec<(usize, u64, Option<usize>)>,
}

struct Counter {
    key: String,
    window_ms: u64,
    hits: u64,
}

impl Plan {
    fn of(batch: &[Check]) -> Self {
        let mut counters: Vec<Counter> = Vec::new();
        let mut counter_at: HashMap<&str, usize> = HashMap::new();
        let mut tenants = Vec::new();
        let mut tenant_at: HashMap<Uuid, usize> = HashMap::new();
        let mut places = Vec::with_capacity(batch.len());
        for check in batch {
            let c = *counter_at.entry(check.key.as_str()).or_insert_with(|| {
                counters.push(Counter {
                    key: check.key.clone(),
                    window_ms: check.window_ms,
                    hits: 0,
                });
                counters.len() - 1
            });
            let place = counters[c].hits;
            counters[c].hits += 1;
            let t = check.tenant.map(|tenant| {
                *tenant_at.entry(tenant).or_insert_with(|| {
                    tenants.push(tenant);
                    tenants.len() - 1
                })
            });
            places.push((c, place, t));
        }
        Self {
            counters,
            tenants,
            places,
        }
    }

    /// Each check's answer, in the batch's order, from the script's flat array.
    fn answers(&self, values: Vec<redis::Value>) -> Result<Vec<Answer>, LimiterError> {
        let expected = 2 * self.counters.len() + 4 * self.tenants.len();
        if values.len() != expected {
            return Err(LimiterError::Answer(format!(
                "{} values for {expected}",
                values.len()
            )));
        }
        let mut values = values.into_iter();
        let mut counted = Vec::with_capacity(self.counters.len());
        for _ in &self.counters {
            let count: u64 = parse(values.next())?;
            let ttl_ms: i64 = parse(values.next())?;
            counted.push((count, ttl_ms));
        }
        let mut epochs = Vec::with_capacity(2 * self.tenants.len());
        for _ in 0..2 * self.tenants.len() {
            let pending: i64 = parse(values.next())?;
            let token: String = parse(values.next())?;
            epochs.push(Epoch::from_answer(pending, token));
        }
        Ok(self
            .places
            .iter()
            .map(|&(c, place, t)| {
                let (count, ttl_ms) = counted[c];
                Answer {
                    // The counter's hits of this batch end at `count`; this check's is
                    // the `place`-th of them.
                    count: count - (self.counters[c].hits - 1 - place),
                    ttl_ms,
                    epochs: t.map(|t| (epochs[2 * t].clone(), epochs[2 * t + 1].clone())),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, tenant: Option<Uuid>) -> Check {
        Check {
            key: key.to_string(),
            window_ms: 60_000,
            tenant,
            reply: oneshot::channel().0,
        }
    }

    fn int(n: i64) -> redis::Value {
        redis::Value::Int(n)
    }

    fn text(s: &str) -> redis::Value {
        redis::Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_budgets_hits_in_one_batch_take_consecutive_counts_in_arrival_order() {
        let (t1, t2) = (Uuid::now_v7(), Uuid::now_v7());
        let batch = [
            check("a", Some(t1)),
            check("b", None),
            check("a", Some(t2)),
            check("a", Some(t1)),
        ];
        let plan = Plan::of(&batch);
        assert_eq!(plan.counters.len(), 2);
        assert_eq!(plan.counters[0].hits, 3);
        assert_eq!(plan.counters[1].hits, 1);
        assert_eq!(plan.tenants, [t1, t2]);
        // "a" ends at 7 (so its three hits are 5, 6, 7), "b" at 1; t1's standing epoch is
        // pending, the rest trusted.
        let values = vec![
            int(7),
            int(30_000),
            int(1),
            int(60_000),
            int(1),
            text("s1"),
            int(0),
            text("l1"),
            int(0),
            text("s2"),
            int(0),
            text("l2"),
        ];
        let answers = plan.answers(values).unwrap();
        let counts: Vec<u64> = answers.iter().map(|a| a.count).collect();
        assert_eq!(counts, [5, 1, 6, 7]);
        assert_eq!(answers[0].ttl_ms, 30_000);
        assert_eq!(answers[1].ttl_ms, 60_000);
        let epochs = |a: &Answer| {
            a.epochs
                .clone()
                .map(|(s, l)| (s.token().cloned(), l.token().cloned()))
        };
        assert_eq!(epochs(&answers[0]), Some((None, Some(Arc::from("l1")))));
        assert_eq!(epochs(&answers[1]), None);
        assert_eq!(
            epochs(&answers[2]),
            Some((Some(Arc::from("s2")), Some(Arc::from("l2"))))
        );
        assert_eq!(epochs(&answers[3]), epochs(&answers[0]));
    }

    #[test]
    fn an_answer_of_the_wrong_shape_is_an_error_not_a_guess() {
        let batch = [check("a", None)];
        let plan = Plan::of(&batch);
        assert!(matches!(
            plan.answers(vec![int(1)]),
            Err(LimiterError::Answer(_))
        ));
        assert!(plan.answers(vec![text("x"), int(1)]).is_err());
    }
}
