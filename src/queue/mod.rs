//! The processing queue: a Redis Stream with one consumer group, a sorted set of
//! delayed retries, and a set of the jobs Redis currently knows about.
//!
//! Guarantees and who provides them (docs/architecture.md "Queue"):
//! - jobs come from the event log: the use case whose commit asks for a job enqueues it
//!   right after the commit (src/commands/jobs.rs); a crash before the enqueue, a Redis
//!   that was down then or lost its data, is repaired by the reconciler, which
//!   re-enqueues every unfinished job in Postgres that Redis does not know (`known` set);
//! - at-least-once: an entry stays pending until acknowledged; a worker that died leaves
//!   it idle, and after the visibility timeout another worker claims it (XAUTOCLAIM);
//!   a long job extends its claim;
//! - retries wait in the `delayed` sorted set and are promoted atomically (Lua).

mod dispatch;
mod message;

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use redis::{AsyncCommands, RedisResult, Script};
use uuid::Uuid;

pub use dispatch::Dispatch;
pub use message::JobMessage;

const GROUP: &str = "workers";
const FIELD: &str = "job";

/// A job handed to one worker, until it acknowledges it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub entry_id: String,
    pub job: JobMessage,
}

#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
    stream: String,
    delayed: String,
    known: String,
}

impl Queue {
    pub fn new(conn: ConnectionManager, key_prefix: &str) -> Self {
        Self {
            conn,
            stream: format!("{key_prefix}jobs:ready"),
            delayed: format!("{key_prefix}jobs:delayed"),
            known: format!("{key_prefix}jobs:known"),
        }
    }

    /// The same queue on a connection of its own, for blocking reads: a blocked
    /// XREADGROUP would stall every other command multiplexed on a shared connection.
    pub fn dedicated(&self, redis_url: &str, block: Duration) -> RedisResult<Queue> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(block + Duration::from_secs(5)));
        let conn =
            ConnectionManager::new_lazy_with_config(redis::Client::open(redis_url)?, config)?;
        Ok(Queue {
            conn,
            ..self.clone()
        })
    }

    /// Creates the consumer group (and stream) unless it exists. From id 0, so entries
    /// added before the group existed are delivered too.
    pub async fn ensure_group(&self) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        let created: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Makes the job ready now (and known).
    pub async fn enqueue(&self, job: &JobMessage) -> RedisResult<()> {
        self.enqueue_all(std::slice::from_ref(job)).await
    }

    /// Makes the jobs ready now (and known), in one round trip.
    pub async fn enqueue_all(&self, jobs: &[JobMessage]) -> RedisResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for job in jobs {
            pipe.sadd(&self.known, job.job_id.to_string())
                .ignore()
                .cmd("XADD")
                .arg(&self.stream)
                .arg("*")
                .arg(FIELD)
                .arg(job.to_json())
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await
    }

    /// Acknowledges `delivery` and schedules the job again after `delay`.
    pub async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> RedisResult<()> {
        let due = now_ms() + delay.as_millis() as u64;
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zadd(&self.delayed, delivery.job.to_json(), due)
            .ignore();
        self.remove_entry(&mut pipe, &delivery.entry_id);
        pipe.query_async::<()>(&mut conn).await
    }

    /// Moves due retries to the stream, atomically (a crash never loses or doubles one).
    pub async fn promote_due(&self) -> RedisResult<usize> {
        let script = Script::new(
            r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, job in ipairs(due) do
  redis.call('ZREM', KEYS[1], job)
  redis.call('XADD', KEYS[2], '*', ARGV[2], job)
end
return #due",
        );
        let mut conn = self.conn.clone();
        script
            .key(&self.delayed)
            .key(&self.stream)
            .arg(now_ms())
            .arg(FIELD)
            .invoke_async(&mut conn)
            .await
    }

    /// The next job for `consumer`: with `claim_stale`, first one whose worker went
    /// silent for longer than `visibility`; else a new one, waiting up to `block`.
    /// Looking for stale entries costs a round trip of its own, so a busy consumer does
    /// it now and then (`Claims`), not before every job.
    pub async fn next(
        &self,
        consumer: &str,
        visibility: Duration,
        block: Duration,
        claim_stale: bool,
    ) -> RedisResult<Option<Delivery>> {
        match self
            .next_once(consumer, visibility, block, claim_stale)
            .await
        {
            // The group vanished (Redis restarted empty, or was flushed): recreate it.
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_group().await?;
                self.next_once(consumer, visibility, block, claim_stale)
                    .await
            }
            other => other,
        }
    }

    async fn next_once(
        &self,
        consumer: &str,
        visibility: Duration,
        block: Duration,
        claim_stale: bool,
    ) -> RedisResult<Option<Delivery>> {
        let mut conn = self.conn.clone();
        if claim_stale {
            let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(GROUP)
                .arg(consumer)
                .arg(visibility.as_millis() as u64)
                .arg("0")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await?;
            if let Some(entry) = claimed.claimed.into_iter().next() {
                return Ok(self.parse(entry).await);
            }
        }
        let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        let entry = read.and_then(|r| r.keys.into_iter().next()?.ids.into_iter().next());
        match entry {
            Some(entry) => Ok(self.parse(entry).await),
            None => Ok(None),
        }
    }

    /// An unreadable entry is dropped (acknowledged) rather than redelivered forever.
    async fn parse(&self, entry: redis::streams::StreamId) -> Option<Delivery> {
        let job = entry
            .get::<String>(FIELD)
            .and_then(|raw| JobMessage::from_json(&raw));
        match job {
            Some(job) => Some(Delivery {
                entry_id: entry.id,
                job,
            }),
            None => {
                tracing::error!(entry = %entry.id, "unreadable queue entry dropped");
                let mut conn = self.conn.clone();
                let mut pipe = redis::pipe();
                self.remove_entry(&mut pipe, &entry.id);
                let _: RedisResult<()> = pipe.query_async(&mut conn).await;
                None
            }
        }
    }

    /// Resets the idle time of a delivery still being worked on, so it is not handed to
    /// another worker after the visibility timeout.
    pub async fn extend(&self, consumer: &str, delivery: &Delivery) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(&delivery.entry_id)
            .arg("JUSTID")
            .query_async::<()>(&mut conn)
            .await
    }

    /// Acknowledges a delivery. `finished`: the job needs no further run, so Redis
    /// forgets it; otherwise it stays known (a retry is scheduled).
    pub async fn ack(&self, delivery: &Delivery, finished: bool) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.remove_entry(&mut pipe, &delivery.entry_id);
        if finished {
            pipe.srem(&self.known, delivery.job.job_id.to_string())
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await
    }

    /// Acknowledges an entry and deletes it from the stream (so XLEN is the depth).
    fn remove_entry(&self, pipe: &mut redis::Pipeline, entry_id: &str) {
        pipe.cmd("XACK")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(entry_id)
            .ignore()
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(entry_id)
            .ignore();
    }

    /// Deletes the group's consumers idle for at least `idle` that hold no pending entry;
    /// with `only`, just that one. Each worker process names its consumers anew
    /// (`worker-{instance}-{n}`), and Redis keeps a consumer until it is deleted: without
    /// this, every start of a worker added `WORKER_CONCURRENCY` names for good. Checked
    /// and deleted in one script, so an entry delivered meanwhile is never dropped with
    /// its consumer (deleting a consumer forgets its pending entries). Returns how many.
    pub async fn forget_consumers(&self, idle: Duration, only: Option<&str>) -> RedisResult<u64> {
        let script = Script::new(
            r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local removed = 0
for _, fields in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local c = {}
  for i = 1, #fields, 2 do c[fields[i]] = fields[i + 1] end
  if c['pending'] == 0 and c['idle'] >= tonumber(ARGV[2]) and (ARGV[3] == '' or c['name'] == ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], c['name'])
    removed = removed + 1
  end
end
return removed",
        );
        let mut conn = self.conn.clone();
        let forgotten = script
            .key(&self.stream)
            .arg(GROUP)
            .arg(idle.as_millis() as u64)
            .arg(only.unwrap_or(""))
            .invoke_async(&mut conn)
            .await;
        match forgotten {
            // No group yet (the script answers 0 itself when there is no stream): no
            // consumer either.
            Err(e) if e.code() == Some("NOGROUP") => Ok(0),
            other => other,
        }
    }

    /// Which of `jobs` Redis knows (ready, pending, or waiting for a retry).
    pub async fn known(&self, jobs: &[Uuid]) -> RedisResult<Vec<bool>> {
        if jobs.is_empty() {
            return Ok(vec![]);
        }
        let mut conn = self.conn.clone();
        let ids: Vec<String> = jobs.iter().map(Uuid::to_string).collect();
        redis::cmd("SMISMEMBER")
            .arg(&self.known)
            .arg(ids)
            .query_async(&mut conn)
            .await
    }

    /// (entries ready or being worked on, retries waiting): what workers scale on.
    pub async fn depth(&self) -> RedisResult<(u64, u64)> {
        let mut conn = self.conn.clone();
        let ready: u64 = conn.xlen(&self.stream).await?;
        let delayed: u64 = conn.zcard(&self.delayed).await?;
        Ok((ready, delayed))
    }
}

/// When a consumer next looks for stale entries (XAUTOCLAIM): after an empty read, and
/// otherwise at most every `every`, so an entry whose worker died waits at most that
/// much past its visibility timeout while the queue is busy.
#[derive(Debug)]
pub struct Claims {
    every: Duration,
    last: Option<std::time::Instant>,
}

impl Claims {
    pub fn every(every: Duration) -> Self {
        Self { every, last: None }
    }

    /// Whether this read should look for stale entries first (and, if so, notes it).
    pub fn due(&mut self) -> bool {
        let now = std::time::Instant::now();
        let due = self
            .last
            .is_none_or(|at| now.duration_since(at) >= self.every);
        if due {
            self.last = Some(now);
        }
        due
    }

    /// The last read found nothing: the next one looks for stale entries again.
    pub fn idle(&mut self) {
        self.last = None;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_consumer_looks_for_stale_entries_now_and_then_an_idle_one_every_time() {
        let mut claims = Claims::every(Duration::from_secs(3600));
        assert!(claims.due(), "the first read looks");
        assert!(!claims.due(), "a busy consumer does not look again at once");
        assert!(!claims.due());
        claims.idle();
        assert!(claims.due(), "after an empty read it looks again");
        let mut often = Claims::every(Duration::ZERO);
        assert!(often.due() && often.due());
    }
}
