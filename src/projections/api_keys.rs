//! `api_keys`: the read side of the API key aggregate (applied by the accounts
//! projector, with the other account tables), and the listing query. Last use comes
//! from `api_key_usage`, which the API writes (src/auth/api_keys.rs).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::EventRecord;
use crate::aggregates::api_key::ApiKeyEvent;
use crate::ids::TenantId;

pub(super) async fn apply(conn: &mut PgConnection, e: &EventRecord) -> Result<(), sqlx::Error> {
    let id = Uuid::parse_str(&e.aggregate_id).map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
    let event: ApiKeyEvent =
        serde_json::from_str(&e.payload).map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
    match event {
        ApiKeyEvent::ApiKeyCreated {
            name,
            role,
            scopes,
            expires_at,
            created_by,
            prefix,
            ..
        } => {
            let scopes: Option<Vec<String>> =
                scopes.map(|s| s.iter().map(|s| s.as_str().to_string()).collect());
            sqlx::query(
                "INSERT INTO api_keys (tenant_id, id, name, prefix, role, scopes, created_by, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9))",
            )
            .bind(e.tenant_id)
            .bind(id)
            .bind(name)
            .bind(prefix)
            .bind(role.as_str())
            .bind(scopes)
            .bind(created_by.0)
            .bind(e.recorded_at)
            .bind(expires_at.map(|t| t as f64))
            .execute(conn)
            .await?;
        }
        ApiKeyEvent::ApiKeyRevoked => {
            sqlx::query("UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2")
                .bind(e.tenant_id)
                .bind(id)
                .bind(e.recorded_at)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

/// One key as an admin sees it: never its secret or hash.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    /// The key's first 12 characters (`chk_` and 8 of the secret).
    #[schema(example = "chk_Zm9vYmFy")]
    pub prefix: String,
    /// `user`, `auditor` or `admin`.
    #[schema(example = "user")]
    pub role: String,
    /// The scopes it is narrowed to; `null`: every right of its role.
    #[schema(example = json!(["files:read", "files:write"]))]
    pub scopes: Option<Vec<String>>,
    /// The admin who created it.
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Recorded at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The tenant's keys, newest first, revoked ones included (up to 1,000: keys are made
/// by hand).
pub async fn list(
    tx: &mut Transaction<'_, Postgres>,
    tenant: TenantId,
) -> Result<Vec<ApiKeyView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.id, k.name, k.prefix, k.role, k.scopes, k.created_by, k.created_at,
                k.expires_at, k.revoked_at, u.last_used_at
           FROM api_keys k
           LEFT JOIN api_key_usage u ON u.tenant_id = $1 AND u.key_id = k.id
          WHERE k.tenant_id = $1
          ORDER BY k.created_at DESC, k.id DESC LIMIT 1000",
    )
    .bind(tenant.0)
    .fetch_all(&mut **tx)
    .await
}
