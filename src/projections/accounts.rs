//! `tenants`, `users`, `sessions` and `api_keys`: the read side of the account aggregates.
//! Low volume, so one statement per event keeps it plain.

use async_trait::async_trait;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{EventRecord, Projector};
use crate::aggregates::{SessionEvent, TenantEvent, UserEvent};
use crate::privacy::ERASED;

pub struct AccountsProjector;

fn decode<T: serde::de::DeserializeOwned>(e: &EventRecord) -> Result<T, sqlx::Error> {
    serde_json::from_str(&e.payload).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

fn stream_uuid(e: &EventRecord) -> Result<Uuid, sqlx::Error> {
    Uuid::parse_str(&e.aggregate_id).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

#[async_trait]
impl Projector for AccountsProjector {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["tenants", "users", "sessions", "api_keys"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> Result<(), sqlx::Error> {
        for e in events {
            match e.aggregate_type.as_str() {
                "tenant" => apply_tenant(conn, e).await?,
                "user" => apply_user(conn, e).await?,
                "session" => apply_session(conn, e).await?,
                "api_key" => super::api_keys::apply(conn, e).await?,
                _ => {}
            }
        }
        Ok(())
    }
}

async fn apply_tenant(conn: &mut PgConnection, e: &EventRecord) -> Result<(), sqlx::Error> {
    match decode::<TenantEvent>(e)? {
        TenantEvent::TenantCreated { name, created_by } => {
            sqlx::query("INSERT INTO tenants (tenant_id, name, created_by, created_at) VALUES ($1, $2, $3, $4)")
                .bind(e.tenant_id)
                .bind(name)
                .bind(created_by.0)
                .bind(e.recorded_at)
                .execute(conn)
                .await?;
        }
        // Invitations are answered from the tenant's stream; no read table needs them yet.
        TenantEvent::InvitationCreated { .. } | TenantEvent::InvitationAccepted { .. } => {}
    }
    Ok(())
}

async fn apply_user(conn: &mut PgConnection, e: &EventRecord) -> Result<(), sqlx::Error> {
    let id = stream_uuid(e)?;
    let update = |sql: &'static str| {
        sqlx::query(sql)
            .bind(e.tenant_id)
            .bind(id)
            .bind(e.recorded_at)
    };
    match decode::<UserEvent>(e)? {
        UserEvent::UserRegistered {
            handle,
            name,
            email,
            role,
        } => {
            sqlx::query(
                "INSERT INTO users (tenant_id, id, handle, name, email, role, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            )
            .bind(e.tenant_id)
            .bind(id)
            .bind(handle)
            .bind(name)
            .bind(email)
            .bind(role.as_str())
            .bind(e.recorded_at)
            .execute(conn)
            .await?;
        }
        UserEvent::RoleChanged { role } => {
            update("UPDATE users SET role = $4, updated_at = $3 WHERE tenant_id = $1 AND id = $2")
                .bind(role.as_str())
                .execute(conn)
                .await?;
        }
        UserEvent::UserBanned => {
            update("UPDATE users SET is_banned = true, updated_at = $3 WHERE tenant_id = $1 AND id = $2")
                .execute(conn)
                .await?;
        }
        UserEvent::UserUnbanned => {
            update("UPDATE users SET is_banned = false, updated_at = $3 WHERE tenant_id = $1 AND id = $2")
                .execute(conn)
                .await?;
        }
        // The same values a rebuild reads from the shredded events.
        UserEvent::UserErased { .. } => {
            update("UPDATE users SET name = $4, email = $4, updated_at = $3 WHERE tenant_id = $1 AND id = $2")
                .bind(ERASED)
                .execute(&mut *conn)
                .await?;
            sqlx::query("UPDATE sessions SET user_agent = $3, ip_address = $3 WHERE tenant_id = $1 AND user_id = $2")
                .bind(e.tenant_id)
                .bind(id)
                .bind(ERASED)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

async fn apply_session(conn: &mut PgConnection, e: &EventRecord) -> Result<(), sqlx::Error> {
    let id = stream_uuid(e)?;
    match decode::<SessionEvent>(e)? {
        SessionEvent::SessionStarted {
            user_id,
            user_agent,
            ip,
            ..
        } => {
            sqlx::query(
                "INSERT INTO sessions (tenant_id, id, user_id, user_agent, ip_address, created_at, last_seen_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(e.tenant_id)
            .bind(id)
            .bind(user_id.0)
            .bind(user_agent)
            .bind(ip)
            .bind(e.recorded_at)
            .execute(conn)
            .await?;
        }
        SessionEvent::SessionRefreshed { .. } => {
            sqlx::query("UPDATE sessions SET last_seen_at = $3 WHERE tenant_id = $1 AND id = $2")
                .bind(e.tenant_id)
                .bind(id)
                .bind(e.recorded_at)
                .execute(conn)
                .await?;
        }
        SessionEvent::SessionRevoked { reason } => {
            let reason = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            sqlx::query("UPDATE sessions SET revoked_at = $3, revoke_reason = $4 WHERE tenant_id = $1 AND id = $2")
                .bind(e.tenant_id)
                .bind(id)
                .bind(e.recorded_at)
                .bind(reason)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}
