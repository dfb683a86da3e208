//! How Chronicle behaves while a dependency is down (docs/architecture.md, "Failure
//! behaviour"): how long a request waits for a busy pool's connection before it answers
//! `503`, and how often the live hub checks its Redis subscription.

use std::time::Duration;

use super::{ConfigError, invalid, parse_u64};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutageSettings {
    /// How long an API request waits for a Postgres connection when the pool is busy
    /// (`DB_ACQUIRE_TIMEOUT_MS`, default 5000), then answers `503 service_unavailable`.
    /// An unreachable Postgres is answered sooner: the outage layer (src/api/edge/outage.rs)
    /// sees it within a fraction of a second and refuses at once.
    pub db_acquire_timeout: Duration,
    /// How often the live hub pings its Redis subscription (`LIVE_PING_EVERY_SECS`,
    /// default 15): a connection that died silently (no RST) is noticed this late.
    pub live_ping_every: Duration,
}

impl OutageSettings {
    pub(super) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let acquire_ms = parse_u64(get, "DB_ACQUIRE_TIMEOUT_MS", 5000)?;
        if !(50..=60_000).contains(&acquire_ms) {
            return Err(invalid(
                "DB_ACQUIRE_TIMEOUT_MS",
                "must be between 50 and 60000",
            ));
        }
        let ping_secs = parse_u64(get, "LIVE_PING_EVERY_SECS", 15)?;
        if !(1..=3600).contains(&ping_secs) {
            return Err(invalid(
                "LIVE_PING_EVERY_SECS",
                "must be between 1 and 3600",
            ));
        }
        Ok(Self {
            db_acquire_timeout: Duration::from_millis(acquire_ms),
            live_ping_every: Duration::from_secs(ping_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<OutageSettings, ConfigError> {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OutageSettings::from_lookup(&|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_and_bounds() {
        let d = parse(&[]).unwrap();
        assert_eq!(d.db_acquire_timeout, Duration::from_millis(5000));
        assert_eq!(d.live_ping_every, Duration::from_secs(15));
        assert_eq!(
            parse(&[("DB_ACQUIRE_TIMEOUT_MS", "10")]).unwrap_err().var,
            "DB_ACQUIRE_TIMEOUT_MS"
        );
        assert_eq!(
            parse(&[("LIVE_PING_EVERY_SECS", "0")]).unwrap_err().var,
            "LIVE_PING_EVERY_SECS"
        );
    }
}
