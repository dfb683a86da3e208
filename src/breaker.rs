//! Skipping Redis for a moment after it failed. Request paths that use Redis only to
//! help (rate limits, the dispatch of jobs the reconciler would restore anyway) must not
//! wait on a dead or blackholed Redis request after request: each call has a deadline,
//! and after a failure the breaker skips Redis for `OPEN_FOR`, so an outage costs at
//! most one slow request per second and per user of the breaker. It logs once per
//! outage (when it first trips, and when Redis answers again), not once per request.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long Redis is skipped after a failure.
pub const OPEN_FOR: Duration = Duration::from_secs(1);

pub struct Breaker {
    /// Who uses Redis here, and what happens without it: the outage's log lines.
    who: &'static str,
    fallback: &'static str,
    epoch: Instant,
    /// Milliseconds since `epoch` until which Redis is skipped; 0 = closed.
    open_until_ms: AtomicU64,
}

impl Breaker {
    /// `who` names the user ("rate limiter"); `fallback` says what it does without Redis.
    pub fn new(who: &'static str, fallback: &'static str) -> Self {
        Self {
            who,
            fallback,
            epoch: Instant::now(),
            open_until_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether Redis is being skipped.
    pub fn is_open(&self) -> bool {
        self.now_ms() < self.open_until_ms.load(Ordering::Relaxed)
    }

    /// Records a failure: Redis is skipped for `OPEN_FOR`.
    pub fn trip(&self, error: &dyn Display) {
        let until = self.now_ms() + OPEN_FOR.as_millis() as u64;
        let before = self.open_until_ms.swap(until, Ordering::Relaxed);
        if before == 0 {
            tracing::warn!(error = %error, "{} cannot reach Redis; {}", self.who, self.fallback);
        }
    }

    /// Records an answer: Redis is used again.
    pub fn close(&self) {
        if self.open_until_ms.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!("{} reaches Redis again", self.who);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_on_failure_and_closes_on_success() {
        let b = Breaker::new("test", "nothing");
        assert!(!b.is_open());
        b.trip(&"timeout");
        assert!(b.is_open());
        b.close();
        assert!(!b.is_open());
    }
}
