//! `webhook_endpoints` from webhook_endpoint events, and the delivery outbox
//! `webhook_deliveries`: for every event, one pending delivery per endpoint of its
//! tenant that is enabled and subscribed to its type *at that point of the log*. Being a
//! projector, it reads the log in catch-up order with the no-skip rule and inserts in
//! the batch's transaction with the checkpoint: every committed event becomes exactly
//! one delivery per matching endpoint (docs/webhooks.md).
//!
//! `webhook_deliveries` is not one of `tables()`: a rebuild must not reset what was
//! delivered. Its ids are derived from (endpoint, event), so a replay's inserts are
//! no-ops (`ON CONFLICT DO NOTHING`), while the endpoints it matches against are the
//! replayed ones (the rebuild's copy of `webhook_endpoints`).

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{EventRecord, Projector};
use crate::aggregates::WebhookEvent;

pub struct WebhooksProjector;

/// The delivery id of `event` for `endpoint`: stable, so redelivery and replays name the
/// same delivery (it is the `webhook-id` receivers de-duplicate on).
pub fn delivery_id(endpoint: Uuid, global_position: i64) -> Uuid {
    Uuid::new_v5(&endpoint, &global_position.to_be_bytes())
}

fn decode(e: &EventRecord) -> Result<WebhookEvent, sqlx::Error> {
    serde_json::from_str(&e.payload).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

#[async_trait]
impl Projector for WebhooksProjector {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["webhook_endpoints"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> Result<(), sqlx::Error> {
        // Only tenants with endpoints (or getting one in this batch) can need deliveries.
        let tenants: Vec<Uuid> = events
            .iter()
            .map(|e| e.tenant_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut with_endpoints: HashSet<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT tenant_id FROM webhook_endpoints WHERE tenant_id = ANY($1)",
        )
        .bind(&tenants)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        for e in events {
            if e.aggregate_type == "webhook_endpoint" {
                let id = Uuid::parse_str(&e.aggregate_id)
                    .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
                apply_endpoint(conn, e, id, decode(e)?).await?;
                with_endpoints.insert(e.tenant_id);
            }
            if with_endpoints.contains(&e.tenant_id) {
                enqueue(conn, e).await?;
            }
        }
        Ok(())
    }
}

async fn apply_endpoint(
    conn: &mut PgConnection,
    e: &EventRecord,
    id: Uuid,
    event: WebhookEvent,
) -> Result<(), sqlx::Error> {
    let at = e.recorded_at;
    let q = match event {
        WebhookEvent::WebhookEndpointCreated {
            url, event_types, ..
        } => sqlx::query(
            "INSERT INTO webhook_endpoints (tenant_id, id, url, event_types, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, true, $5, $5)",
        )
        .bind(e.tenant_id)
        .bind(id)
        .bind(url)
        .bind(event_types)
        .bind(at),
        WebhookEvent::WebhookEndpointUpdated { url, event_types } => sqlx::query(
            "UPDATE webhook_endpoints SET url = $3, event_types = $4, updated_at = $5
              WHERE tenant_id = $1 AND id = $2",
        )
        .bind(e.tenant_id)
        .bind(id)
        .bind(url)
        .bind(event_types)
        .bind(at),
        WebhookEvent::WebhookEndpointEnabled => sqlx::query(
            "UPDATE webhook_endpoints SET enabled = true, disabled_reason = NULL, updated_at = $3
              WHERE tenant_id = $1 AND id = $2",
        )
        .bind(e.tenant_id)
        .bind(id)
        .bind(at),
        WebhookEvent::WebhookEndpointDisabled { reason, .. } => sqlx::query(
            "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $3, updated_at = $4
              WHERE tenant_id = $1 AND id = $2",
        )
        .bind(e.tenant_id)
        .bind(id)
        .bind(reason)
        .bind(at),
        WebhookEvent::WebhookEndpointDeleted => {
            sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
                .bind(e.tenant_id)
                .bind(id)
        }
    };
    q.execute(conn).await?;
    Ok(())
}

/// One pending delivery of `e` per enabled endpoint of its tenant subscribed to its type.
async fn enqueue(conn: &mut PgConnection, e: &EventRecord) -> Result<(), sqlx::Error> {
    let endpoints: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM webhook_endpoints
          WHERE tenant_id = $1 AND enabled AND ($2 = ANY(event_types) OR '*' = ANY(event_types))",
    )
    .bind(e.tenant_id)
    .bind(&e.event_type)
    .fetch_all(&mut *conn)
    .await?;
    if endpoints.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = endpoints
        .iter()
        .map(|id| delivery_id(*id, e.position.global_position))
        .collect();
    sqlx::query(
        "INSERT INTO webhook_deliveries
             (tenant_id, id, endpoint_id, transaction_id, global_position, event_type, status,
              next_attempt_at, created_at)
         SELECT $1, d.id, d.endpoint_id, $4::text::xid8, $5, $6, 'pending', $7, $7
           FROM unnest($2::uuid[], $3::uuid[]) AS d(id, endpoint_id)
         ON CONFLICT DO NOTHING",
    )
    .bind(e.tenant_id)
    .bind(ids)
    .bind(endpoints)
    .bind(e.position.transaction_id.to_string())
    .bind(e.position.global_position)
    .bind(&e.event_type)
    .bind(e.recorded_at)
    .execute(conn)
    .await?;
    Ok(())
}
