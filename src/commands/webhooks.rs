//! Use cases of webhook endpoints (docs/webhooks.md): create (the secret is made here,
//! stored outside the log, and returned once), change, delete, redeliver. Admins only —
//! the API checks the role before calling.
//!
//! Creating, changing and deleting an endpoint each take two steps (the secret's row and
//! a command, or two commands); each pair runs to its end on a task of its own
//! ([`super::to_the_end`]), so a client hanging up cannot leave one step done alone.

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Committed, execute};
use crate::aggregates::{WebhookCommand, WebhookEndpoint};
use crate::error::AppError;
use crate::ids::TenantId;
use crate::store::{ChronicleStore, EventLog, EventMetadata};
use crate::webhooks::{AddressPolicy, WebhookSecret, ssrf};

/// At most this many event types per endpoint.
pub const MAX_EVENT_TYPES: usize = 64;
/// Longest accepted URL.
pub const MAX_URL_LEN: usize = 2048;

/// What the use cases need: the event log, the API pool (`chronicle_app`) and the
/// address policy URLs are checked against.
pub struct Webhooks<'a> {
    pub db: &'a PgPool,
    pub events: &'a EventLog,
    pub snapshot_every: u64,
    pub policy: &'a AddressPolicy,
}

/// A new endpoint and its secret (shown this once).
pub struct Created {
    pub id: Uuid,
    pub secret: WebhookSecret,
    pub endpoint: WebhookEndpoint,
}

fn refused(err: ssrf::UrlRefused) -> AppError {
    AppError::Validation(format!("url: {err}"))
}

fn check_event_types(types: &[String]) -> Result<(), AppError> {
    if types.is_empty() || types.len() > MAX_EVENT_TYPES {
        return Err(AppError::Validation(format!(
            "event_types: 1 to {MAX_EVENT_TYPES} event types (\"*\" for all)"
        )));
    }
    if types
        .iter()
        .any(|t| t.is_empty() || t.len() > 255 || t.contains(char::is_whitespace))
    {
        return Err(AppError::Validation(
            "event_types: each is an event type name, e.g. FileCreated".into(),
        ));
    }
    Ok(())
}

impl Webhooks<'_> {
    fn store(&self, tenant: TenantId) -> ChronicleStore<WebhookEndpoint> {
        ChronicleStore::new(self.events.clone(), tenant, self.snapshot_every)
    }

    /// The URL as a webhook target: refused when it, or any address its host resolves
    /// to now, is not permitted (the dispatcher checks again at every connection).
    async fn check_url(&self, url: &str) -> Result<String, AppError> {
        if url.len() > MAX_URL_LEN {
            return Err(AppError::Validation(format!(
                "url: at most {MAX_URL_LEN} bytes"
            )));
        }
        let parsed = ssrf::check_url_resolved(self.policy, url)
            .await
            .map_err(refused)?;
        Ok(parsed.to_string())
    }

    pub async fn create(
        &self,
        meta: &EventMetadata,
        url: &str,
        event_types: Vec<String>,
    ) -> Result<Created, AppError> {
        check_event_types(&event_types)?;
        let url = self.check_url(url).await?;
        let id = Uuid::now_v7();
        let secret = WebhookSecret::generate();
        let fingerprint = hex::encode(Sha256::digest(secret.expose().as_bytes()));
        let (db, store, meta) = (self.db.clone(), self.store(meta.tenant_id), meta.clone());
        // To the end: a request dropped between the secret's row and the endpoint's
        // creation would leave a secret no endpoint uses.
        super::to_the_end(async move {
            // The secret first: an endpoint never exists without one. If the command
            // fails, the row is removed again (a crash in between leaves a row no
            // endpoint uses).
            sqlx::query(
                "INSERT INTO webhook_secrets (tenant_id, endpoint_id, secret) VALUES ($1, $2, $3)",
            )
            .bind(meta.tenant_id.0)
            .bind(id)
            .bind(secret.expose())
            .execute(&db)
            .await?;
            let command = WebhookCommand::Create {
                url,
                event_types,
                secret_fingerprint: fingerprint,
            };
            match execute(&store, &id.to_string(), command, &meta, &()).await {
                Ok(done) => Ok(Created {
                    id,
                    secret,
                    endpoint: done.aggregate,
                }),
                Err(err) => {
                    forget_secret(&db, meta.tenant_id, id).await;
                    Err(err.into())
                }
            }
        })
        .await
    }

    /// Changes what is given: URL and event types in one event, then enabled or not.
    pub async fn update(
        &self,
        meta: &EventMetadata,
        id: Uuid,
        url: Option<&str>,
        event_types: Option<Vec<String>>,
        enabled: Option<bool>,
    ) -> Result<WebhookEndpoint, AppError> {
        if let Some(types) = &event_types {
            check_event_types(types)?;
        }
        let url = match url {
            Some(u) => Some(self.check_url(u).await?),
            None => None,
        };
        let (store, meta) = (self.store(meta.tenant_id), meta.clone());
        // To the end: a request dropped between the two commands would change the URL
        // or event types and leave `enabled` as it was.
        super::to_the_end(async move {
            let stream = id.to_string();
            let change = WebhookCommand::Update { url, event_types };
            let mut done: Committed<WebhookEndpoint> =
                execute(&store, &stream, change, &meta, &()).await?;
            if let Some(enabled) = enabled {
                let command = if enabled {
                    WebhookCommand::Enable
                } else {
                    WebhookCommand::Disable {
                        automatic: false,
                        reason: "disabled by an admin".into(),
                    }
                };
                done = execute(&store, &stream, command, &meta, &()).await?;
            }
            Ok(done.aggregate)
        })
        .await
    }

    /// Deletes the endpoint and its secret; its pending deliveries are never sent. To
    /// the end: a request dropped between the two would keep the secret of a deleted
    /// endpoint.
    pub async fn delete(&self, meta: &EventMetadata, id: Uuid) -> Result<(), AppError> {
        let (db, store, meta) = (self.db.clone(), self.store(meta.tenant_id), meta.clone());
        super::to_the_end(async move {
            execute(&store, &id.to_string(), WebhookCommand::Delete, &meta, &()).await?;
            forget_secret(&db, meta.tenant_id, id).await;
            Ok(())
        })
        .await
    }
}

async fn forget_secret(db: &PgPool, tenant: TenantId, id: Uuid) {
    let deleted =
        sqlx::query("DELETE FROM webhook_secrets WHERE tenant_id = $1 AND endpoint_id = $2")
            .bind(tenant.0)
            .bind(id)
            .execute(db)
            .await;
    if let Err(err) = deleted {
        tracing::warn!(error = %err, endpoint = %id, "webhook secret not deleted");
    }
}

/// Sends a delivery again: it becomes pending and due now, and goes out in its place
/// in the endpoint's order (before newer pending deliveries). Operational state, not an
/// event (docs/webhooks.md). `NotFound` unless the tenant's endpoint has that delivery.
pub async fn redeliver(
    db: &PgPool,
    tenant: TenantId,
    endpoint: Uuid,
    delivery: Uuid,
) -> Result<(), AppError> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await?;
    let updated = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), failures = 0
          WHERE tenant_id = $1 AND endpoint_id = $2 AND id = $3",
    )
    .bind(tenant.0)
    .bind(endpoint)
    .bind(delivery)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if updated.rows_affected() == 0 {
        return Err(AppError::NotFound("delivery not found".into()));
    }
    Ok(())
}
