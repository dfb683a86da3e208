//! What the webhook API reads: endpoints (the `webhooks` projector's table) and their
//! delivery log, under the caller's tenant (RLS).

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: Uuid,
    pub url: String,
    /// Event types delivered (`*`: all).
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// Why it was disabled last (after a run of failures, or by an admin).
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Also the `webhook-id` header, as `msg_<id without dashes>`.
    pub id: Uuid,
    /// The event's global position (`FeedItem.position`).
    pub position: i64,
    pub event_type: String,
    /// `pending` (not yet delivered, or redelivery asked) or `delivered`.
    pub status: String,
    pub attempts: i32,
    /// Failed attempts in a row (0 once delivered).
    pub failures: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The receiver's HTTP status of the last attempt, if it answered.
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

const ENDPOINT_COLUMNS: &str =
    "id, url, event_types, enabled, disabled_reason, created_at, updated_at";

pub async fn endpoints(
    conn: &mut sqlx::PgConnection,
    tenant: Uuid,
) -> Result<Vec<EndpointView>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id"
    ))
    .bind(tenant)
    .fetch_all(conn)
    .await
}

pub async fn endpoint(
    conn: &mut sqlx::PgConnection,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<EndpointView>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The endpoint's deliveries, newest event first; `before`: only events before this
/// global position (paging).
pub async fn deliveries(
    conn: &mut sqlx::PgConnection,
    tenant: Uuid,
    endpoint: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, global_position AS position, event_type, status, attempts, failures,
                next_attempt_at, last_attempt_at, last_status_code, last_error,
                last_latency_ms, created_at, delivered_at
           FROM webhook_deliveries
          WHERE tenant_id = $1 AND endpoint_id = $2 AND ($3::bigint IS NULL OR global_position < $3)
          ORDER BY global_position DESC LIMIT $4",
    )
    .bind(tenant)
    .bind(endpoint)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}
