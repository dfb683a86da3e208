//! A small circuit breaker (docs/design.md, "Conventions"): after `threshold` consecutive
//! failures calls fail fast for `cooldown`; then one trial call goes through (half-open),
//! and its outcome closes the circuit or opens it for another cooldown. A dead clamd thus
//! costs workers nothing but a quick retry-later instead of a connect timeout per job.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
}

/// Permission for one call. Report its outcome with `succeeded`/`failed`; dropping it
/// without either (the call was cancelled, or failed for reasons not the dependency's)
/// leaves the counts alone and frees the half-open trial slot.
#[must_use]
pub struct Attempt<'a> {
    breaker: &'a CircuitBreaker,
    trial: bool,
    reported: bool,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(BreakerState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // The state stays consistent under any panic (plain field writes): recover it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(wait)` while the circuit is open (or a half-open trial is running).
    pub fn try_acquire(&self) -> Result<Attempt<'_>, Duration> {
        let mut state = self.lock();
        let trial = match state.open_until {
            None => false,
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    return Err(until - now);
                }
                if state.trial_in_flight {
                    return Err(Duration::ZERO);
                }
                state.trial_in_flight = true;
                true
            }
        };
        Ok(Attempt {
            breaker: self,
            trial,
            reported: false,
        })
    }

    /// Whether calls are currently refused.
    pub fn is_open(&self) -> bool {
        let state = self.lock();
        match state.open_until {
            None => false,
            Some(until) => Instant::now() < until || state.trial_in_flight,
        }
    }
}

impl Attempt<'_> {
    pub fn succeeded(mut self) {
        self.reported = true;
        let mut state = self.breaker.lock();
        *state = BreakerState::default();
    }

    pub fn failed(mut self) {
        self.reported = true;
        let breaker = self.breaker;
        let mut state = breaker.lock();
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if self.trial {
            state.trial_in_flight = false;
        }
        if self.trial || state.consecutive_failures >= breaker.threshold {
            state.open_until = Some(Instant::now() + breaker.cooldown);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.trial && !self.reported {
            self.breaker.lock().trial_in_flight = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_consecutive_failures_only() {
        let b = CircuitBreaker::new(3, Duration::from_secs(60));
        b.try_acquire().unwrap().failed();
        b.try_acquire().unwrap().failed();
        b.try_acquire().unwrap().succeeded(); // resets the count
        b.try_acquire().unwrap().failed();
        b.try_acquire().unwrap().failed();
        assert!(!b.is_open());
        b.try_acquire().unwrap().failed();
        assert!(b.is_open());
        let wait = b.try_acquire().err().expect("open circuit refuses");
        assert!(wait > Duration::from_secs(50), "{wait:?}");
    }

    #[test]
    fn half_open_lets_one_trial_through_and_its_outcome_decides() {
        let b = CircuitBreaker::new(1, Duration::from_millis(20));
        b.try_acquire().unwrap().failed();
        assert!(b.try_acquire().is_err());
        std::thread::sleep(Duration::from_millis(30));

        let trial = b.try_acquire().expect("cooldown over: one trial");
        assert!(b.try_acquire().is_err(), "only one trial at a time");
        trial.failed();
        assert!(
            b.try_acquire().is_err(),
            "a failed trial reopens the circuit"
        );

        std::thread::sleep(Duration::from_millis(30));
        b.try_acquire().unwrap().succeeded();
        assert!(!b.is_open());
        b.try_acquire().unwrap().succeeded();
    }

    #[test]
    fn an_abandoned_trial_frees_the_slot() {
        let b = CircuitBreaker::new(1, Duration::from_millis(10));
        b.try_acquire().unwrap().failed();
        std::thread::sleep(Duration::from_millis(20));
        drop(b.try_acquire().unwrap());
        assert!(b.try_acquire().is_ok(), "the next caller may try");
    }
}
