//! The dispatcher: sends each endpoint's pending deliveries (inserted by the `webhooks`
//! projector) one at a time, oldest event first, so an endpoint sees events in commit
//! order; at least once, retried with exponential backoff and full jitter; and disables
//! an endpoint after `WEBHOOK_DISABLE_AFTER` failures in a row (docs/webhooks.md).
//!
//! One delivery is one transaction that holds the endpoint's lease — a transaction-level
//! advisory lock on the endpoint id, taken with `pg_try_advisory_xact_lock` so other
//! dispatchers (tasks and processes) skip that endpoint meanwhile. A crash anywhere
//! rolls the attempt's record back and releases the lease with the connection: the
//! delivery is still pending and is sent again (at least once; receivers de-duplicate
//! on `webhook-id`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::RngExt;
use sqlx::{PgConnection, PgPool, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::aggregates::{WebhookCommand, WebhookEndpoint};
use crate::commands;
use crate::config::WebhookSettings;
use crate::feed::read_event;
use crate::ids::TenantId;
use crate::store::{Actor, ChronicleStore, EventLog, EventMetadata};
use crate::webhooks::WebhookSecret;
use crate::webhooks::ssrf::{self, AddressPolicy, check_url};

/// How long an idle dispatcher waits before looking for due deliveries again.
const IDLE: Duration = Duration::from_millis(200);
/// The advisory lock namespace of endpoint leases (any constant no other lock uses).
const LEASE_CLASS: i32 = 0x5748_4b31; // "WHK1"
/// The longest response body text kept in the delivery log.
const MAX_ERROR_LEN: usize = 200;

pub struct Dispatcher {
    /// `chronicle_worker`: every tenant's deliveries; queries name the tenant.
    pub db: PgPool,
    pub events: EventLog,
    pub snapshot_every: u64,
    pub settings: WebhookSettings,
    pub policy: Arc<AddressPolicy>,
    pub client: reqwest::Client,
}

/// What `deliver_head` did.
enum Sent {
    /// Nothing due, or the endpoint's stream says it is disabled or deleted by now.
    Nothing,
    /// One attempt, recorded; `disable`: the reason, when it completed a run of failures.
    Attempt { disable: Option<String> },
}

/// The endpoint's URL and whether it is enabled, from its stream: the projection may lag
/// a change just made (an automatic disable must stop deliveries at once).
const STANDING_SQL: &str = r#"
SELECT
  (SELECT event_type IN ('WebhookEndpointCreated', 'WebhookEndpointEnabled') FROM events
    WHERE tenant_id = $1 AND aggregate_type = 'webhook_endpoint' AND aggregate_id = $2
      AND event_type IN ('WebhookEndpointCreated', 'WebhookEndpointEnabled',
                         'WebhookEndpointDisabled', 'WebhookEndpointDeleted')
    ORDER BY sequence DESC LIMIT 1),
  (SELECT coalesce(payload->'WebhookEndpointUpdated'->>'url', payload->'WebhookEndpointCreated'->>'url')
     FROM events
    WHERE tenant_id = $1 AND aggregate_type = 'webhook_endpoint' AND aggregate_id = $2
      AND event_type IN ('WebhookEndpointCreated', 'WebhookEndpointUpdated')
    ORDER BY sequence DESC LIMIT 1)"#;

/// What one attempt came to.
#[derive(Debug)]
struct Attempt {
    status_code: Option<u16>,
    error: Option<String>,
    latency: Duration,
}

impl Attempt {
    fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

impl Dispatcher {
    pub fn new(
        db: PgPool,
        events: EventLog,
        snapshot_every: u64,
        settings: WebhookSettings,
    ) -> reqwest::Result<Self> {
        let policy = Arc::new(AddressPolicy::new(settings.allow_networks.clone()));
        let client = ssrf::client(policy.clone(), settings.timeout)?;
        Ok(Self {
            db,
            events,
            snapshot_every,
            settings,
            policy,
            client,
        })
    }

    /// Starts `WEBHOOK_CONCURRENCY` dispatcher tasks.
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.settings.concurrency)
            .map(|_| tokio::spawn(self.clone().run(shutdown.clone())))
            .collect()
    }

    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let pause = match self.deliver_next().await {
                Ok(true) => continue,
                Ok(false) => IDLE,
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "webhook dispatch failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// The wait before the attempt after `failures` failures in a row: base × 2^(n−1),
    /// capped, with full jitter (between half and all of it).
    pub fn backoff(&self, failures: u32) -> Duration {
        let ceiling = self
            .settings
            .retry_base
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(31)))
            .min(self.settings.retry_max);
        let ms = ceiling.as_millis().min(u64::MAX as u128) as u64;
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms.max(1)))
    }

    /// Sends one due delivery, if any endpoint has one and is free. True when it did.
    pub async fn deliver_next(&self) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        // The head (oldest pending delivery) of every enabled endpoint, if due: one
        // index probe per endpoint (webhook_deliveries_pending), whatever the backlog.
        let candidates: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT e.tenant_id, e.id
               FROM webhook_endpoints e
              CROSS JOIN LATERAL (
                    SELECT d.next_attempt_at FROM webhook_deliveries d
                     WHERE d.endpoint_id = e.id AND d.status = 'pending'
                     ORDER BY d.transaction_id, d.global_position LIMIT 1) h
              WHERE e.enabled AND h.next_attempt_at <= now()
              ORDER BY h.next_attempt_at LIMIT 32",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (tenant, endpoint) in candidates {
            let leased: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, hashtext($2))")
                    .bind(LEASE_CLASS)
                    .bind(endpoint.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
            if !leased {
                continue;
            }
            // Under the lease, read the head again: another dispatcher may have sent it
            // between the candidate query and the lock.
            match self.deliver_head(&mut tx, tenant, endpoint).await? {
                Sent::Nothing => continue,
                Sent::Attempt { disable } => {
                    // Disabled while the lease is held: no other dispatcher can send to
                    // the endpoint in between.
                    if let Some(reason) = disable {
                        self.disable(tenant, endpoint, reason).await?;
                    }
                    tx.commit().await?;
                    return Ok(true);
                }
            }
        }
        tx.commit().await?;
        Ok(false)
    }

    /// Sends the endpoint's head delivery if still due and the endpoint still enabled,
    /// and records the attempt.
    async fn deliver_head(
        &self,
        tx: &mut PgConnection,
        tenant: Uuid,
        endpoint: Uuid,
    ) -> anyhow::Result<Sent> {
        let (enabled, url): (Option<bool>, Option<String>) = sqlx::query_as(STANDING_SQL)
            .bind(tenant)
            .bind(endpoint.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let (Some(true), Some(url)) = (enabled, url) else {
            return Ok(Sent::Nothing);
        };
        // The head itself, due or not: another dispatcher may have just failed it and
        // pushed it back, and the next pending delivery must then wait behind it, not
        // overtake it.
        let Some(head) = sqlx::query(
            "SELECT d.id, d.global_position, d.failures, s.secret,
                    d.next_attempt_at <= now() AS due
               FROM webhook_deliveries d
               JOIN webhook_secrets s ON s.tenant_id = d.tenant_id AND s.endpoint_id = d.endpoint_id
              WHERE d.tenant_id = $1 AND d.endpoint_id = $2 AND d.status = 'pending'
              ORDER BY d.transaction_id, d.global_position LIMIT 1",
        )
        .bind(tenant)
        .bind(endpoint)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Sent::Nothing);
        };
        if !head.get::<bool, _>("due") {
            return Ok(Sent::Nothing);
        }
        let id: Uuid = head.get("id");
        let position: i64 = head.get("global_position");
        let failures: i32 = head.get("failures");
        let secret = WebhookSecret::parse(head.get("secret"))
            .ok_or_else(|| anyhow::anyhow!("endpoint {endpoint}: stored secret unreadable"))?;
        let body = match read_event(tx, TenantId(tenant), position).await? {
            Some(event) => {
                let event_type = event.event_type.clone();
                let timestamp = crate::store::checkpoint::timestamp_text(event.recorded_at);
                serde_json::json!({
                    "type": event_type,
                    "timestamp": timestamp,
                    "data": event.into_item(None)?,
                })
                .to_string()
            }
            None => anyhow::bail!("delivery {id}: event {position} not found"),
        };
        let attempt = self.send(&url, &secret, id, body).await;
        let failures = if attempt.succeeded() { 0 } else { failures + 1 };
        let next = Utc::now()
            + chrono::Duration::from_std(self.backoff(failures as u32)).unwrap_or_default();
        sqlx::query(
            "UPDATE webhook_deliveries
                SET attempts = attempts + 1, failures = $3, last_attempt_at = now(),
                    last_status_code = $4, last_error = $5, last_latency_ms = $6,
                    status = CASE WHEN $7 THEN 'delivered' ELSE status END,
                    delivered_at = CASE WHEN $7 THEN now() ELSE delivered_at END,
                    next_attempt_at = CASE WHEN $7 THEN next_attempt_at ELSE $8 END
              WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(failures)
        .bind(attempt.status_code.map(i32::from))
        .bind(&attempt.error)
        .bind(attempt.latency.as_millis().min(i32::MAX as u128) as i32)
        .bind(attempt.succeeded())
        .bind(next)
        .execute(&mut *tx)
        .await?;
        if attempt.succeeded() {
            tracing::debug!(endpoint = %endpoint, delivery = %id, position,
                latency_ms = attempt.latency.as_millis() as u64, "webhook delivered");
        } else {
            tracing::warn!(endpoint = %endpoint, delivery = %id, position,
                status = attempt.status_code, error = attempt.error.as_deref(), failures,
                "webhook attempt failed; retried after a pause");
        }
        let disable = (failures as u32 >= self.settings.disable_after).then(|| {
            format!(
                "{failures} deliveries failed in a row (last: {})",
                attempt.error.as_deref().unwrap_or("?")
            )
        });
        Ok(Sent::Attempt { disable })
    }

    /// One POST, signed per the Standard Webhooks specification.
    async fn send(&self, url: &str, secret: &WebhookSecret, id: Uuid, body: String) -> Attempt {
        let started = Instant::now();
        // The allowlist may have changed since the URL was registered: IP literals are
        // checked again (names are checked by the resolver at connect time).
        if let Err(refused) = check_url(&self.policy, url) {
            return Attempt {
                status_code: None,
                error: Some(refused.to_string()),
                latency: started.elapsed(),
            };
        }
        let message_id = format!("msg_{}", id.simple());
        let timestamp = Utc::now().timestamp();
        let signature = secret.sign(&message_id, timestamp, body.as_bytes());
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let latency = started.elapsed();
        match sent {
            Ok(r) if r.status().is_success() => Attempt {
                status_code: Some(r.status().as_u16()),
                error: None,
                latency,
            },
            Ok(r) => Attempt {
                status_code: Some(r.status().as_u16()),
                error: Some(format!("HTTP {}", r.status().as_u16())),
                latency,
            },
            Err(err) => {
                // The error chain names what failed (timeout, refused, SSRF guard).
                let mut text = format!("{err}");
                let mut source = std::error::Error::source(&err);
                while let Some(s) = source {
                    text.push_str(&format!(": {s}"));
                    source = s.source();
                }
                text.truncate(MAX_ERROR_LEN);
                Attempt {
                    status_code: None,
                    error: Some(text),
                    latency,
                }
            }
        }
    }

    /// Disables the endpoint (an event, like an admin's disable): the projector stops
    /// matching it, and the event tells the tenant's admins.
    async fn disable(&self, tenant: Uuid, endpoint: Uuid, reason: String) -> anyhow::Result<()> {
        let store: ChronicleStore<WebhookEndpoint> =
            ChronicleStore::new(self.events.clone(), TenantId(tenant), self.snapshot_every);
        let meta = EventMetadata::new(
            TenantId(tenant),
            Actor::System("webhooks"),
            "webhook-dispatcher",
        );
        let command = WebhookCommand::Disable {
            automatic: true,
            reason: reason.clone(),
        };
        match commands::execute(&store, &endpoint.to_string(), command, &meta, &()).await {
            Ok(_) => {
                tracing::warn!(endpoint = %endpoint, %tenant, reason, "webhook endpoint disabled");
                Ok(())
            }
            Err(commands::CommandError::Domain(_)) => Ok(()), // deleted meanwhile
            Err(err) => Err(anyhow::anyhow!("disabling endpoint {endpoint}: {err}")),
        }
    }
}
