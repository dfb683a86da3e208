//! Webhook delivery (`WEBHOOK_*`; docs/webhooks.md).

use std::time::Duration;

use ipnet::IpNet;

use super::jobs::parse_within;
use super::{ConfigError, invalid};

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Networks webhooks may reach although they are loopback, private, link-local …
    /// (`WEBHOOK_ALLOW_NETWORKS`, comma-separated CIDRs; default none).
    pub allow_networks: Vec<IpNet>,
    /// Longest one delivery may take, connection included (`WEBHOOK_TIMEOUT_MS`,
    /// default 10000).
    pub timeout: Duration,
    /// First retry delay; each further one twice as long, full jitter, capped
    /// (`WEBHOOK_RETRY_BASE_MS` default 1000, `WEBHOOK_RETRY_MAX_MS` default 3600000).
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Failed attempts in a row after which an endpoint is disabled and its tenant's
    /// admins notified (`WEBHOOK_DISABLE_AFTER`, default 20: about a day of retries).
    pub disable_after: u32,
    /// Deliveries one worker process sends at once, to different endpoints
    /// (`WEBHOOK_CONCURRENCY`, default 4; 0: this process sends none).
    pub concurrency: usize,
}

impl WebhookSettings {
    pub(super) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let allow_networks = match get("WEBHOOK_ALLOW_NETWORKS") {
            None => vec![],
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<IpNet>().map_err(|_| {
                        invalid(
                            "WEBHOOK_ALLOW_NETWORKS",
                            format!("{s:?} is not a CIDR network"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let timeout = parse_within(get, "WEBHOOK_TIMEOUT_MS", 10_000, 100..=120_000)?;
        let base = parse_within(get, "WEBHOOK_RETRY_BASE_MS", 1000, 1..=3_600_000)?;
        let max = parse_within(get, "WEBHOOK_RETRY_MAX_MS", 3_600_000, 1..=86_400_000)?;
        if max < base {
            return Err(invalid(
                "WEBHOOK_RETRY_MAX_MS",
                "must not be below WEBHOOK_RETRY_BASE_MS",
            ));
        }
        let disable_after = parse_within(get, "WEBHOOK_DISABLE_AFTER", 20, 1..=10_000)?;
        let concurrency = parse_within(get, "WEBHOOK_CONCURRENCY", 4, 0..=256)?;
        Ok(Self {
            allow_networks,
            timeout: Duration::from_millis(timeout),
            retry_base: Duration::from_millis(base),
            retry_max: Duration::from_millis(max),
            disable_after: disable_after as u32,
            concurrency: concurrency as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_bad_values_name_the_variable() {
        let get = |k: &str| match k {
            "WEBHOOK_ALLOW_NETWORKS" => Some("127.0.0.0/8, ::1/128".to_string()),
            _ => None,
        };
        let s = WebhookSettings::from_lookup(&get).unwrap();
        assert_eq!(s.allow_networks.len(), 2);
        assert_eq!(s.disable_after, 20);
        let bad = |k: &str| (k == "WEBHOOK_ALLOW_NETWORKS").then(|| "localhost".to_string());
        assert_eq!(
            WebhookSettings::from_lookup(&bad).unwrap_err().var,
            "WEBHOOK_ALLOW_NETWORKS"
        );
    }
}
