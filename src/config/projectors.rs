//! Settings of the projector runtime: how an event a projector cannot apply is retried
//! before it is parked (docs/projections.md, "Failures and parking").

use std::time::Duration;

use super::ConfigError;
use super::jobs::parse_within;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorRetry {
    /// Failed applications of one event before it is parked and the projector moves past
    /// it (`PROJECTOR_MAX_ATTEMPTS`, default 5; 1 parks at the first failure).
    pub max_attempts: u32,
    /// Delay before the first retry; each further one doubles, up to `max_delay`, with
    /// jitter (`PROJECTOR_RETRY_BASE_MS`, default 1000: ~1 s, 2 s, 4 s, 8 s, then parked).
    pub base_delay: Duration,
    /// The longest delay between two attempts (`PROJECTOR_RETRY_MAX_MS`, default 60000).
    pub max_delay: Duration,
}

impl Default for ProjectorRetry {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl ProjectorRetry {
    pub(super) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let max_attempts = parse_within(get, "PROJECTOR_MAX_ATTEMPTS", 5, 1..=100)?;
        let base_ms = parse_within(get, "PROJECTOR_RETRY_BASE_MS", 1000, 1..=3_600_000)?;
        let max_ms = parse_within(get, "PROJECTOR_RETRY_MAX_MS", 60_000, 1..=86_400_000)?;
        Ok(Self {
            max_attempts: max_attempts as u32,
            base_delay: Duration::from_millis(base_ms),
            max_delay: Duration::from_millis(max_ms.max(base_ms)),
        })
    }

    /// The pause after the `attempts`-th failure: base × 2^(attempts−1), capped, then
    /// "equal jitter" (a random point in its upper half) so instances and projectors
    /// failing together do not retry in lockstep.
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = full / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_and_bounds() {
        let empty = ProjectorRetry::from_lookup(&|_| None).unwrap();
        assert_eq!(empty, ProjectorRetry::default());
        let vars = HashMap::from([
            ("PROJECTOR_MAX_ATTEMPTS", "2"),
            ("PROJECTOR_RETRY_BASE_MS", "50"),
        ]);
        let set = ProjectorRetry::from_lookup(&|k| vars.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(set.max_attempts, 2);
        assert_eq!(set.base_delay, Duration::from_millis(50));
        let zero = HashMap::from([("PROJECTOR_MAX_ATTEMPTS", "0")]);
        assert!(ProjectorRetry::from_lookup(&|k| zero.get(k).map(|v| v.to_string())).is_err());
    }

    #[test]
    fn delays_double_within_jitter_and_stay_bounded() {
        let r = ProjectorRetry::default();
        for attempts in 1..=4u32 {
            let full = Duration::from_secs(1 << (attempts - 1));
            let d = r.delay(attempts);
            assert!(d >= full / 2 && d <= full, "{attempts}: {d:?}");
        }
        assert!(r.delay(40) <= Duration::from_secs(60));
    }
}
