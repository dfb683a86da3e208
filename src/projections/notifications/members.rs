//! Tenant-level notifications: who a tenant's admins are (the projector's own copy in
//! `notification_members`, from user events), and the rows a webhook endpoint disabled
//! after a run of failures gives each of them (docs/webhooks.md, "Auto-disable").
//!
//! Events are taken in catch-up order, so a disable reaches the admins as of its own
//! position in the log: someone promoted later is not told, someone demoted, banned or
//! erased earlier is not told either.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{EventRecord, NewRow};
use crate::live::message::WEBHOOK_DISABLED_KIND;

/// A member as the notifications projector knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Member {
    role: String,
    banned: bool,
}

/// The members of the tenants an event batch touches; `None` is an erased user.
#[derive(Default)]
pub(super) struct Members {
    known: BTreeMap<(Uuid, Uuid), Option<Member>>,
    changed: BTreeSet<(Uuid, Uuid)>,
}

/// The id of the row a tenant-level event gives one recipient: a UUIDv8 from SHA-256 over
/// a domain tag, the tenant, the event's global position and the recipient (one event,
/// several rows). Stable across rebuilds.
pub fn tenant_notification_id(tenant_id: Uuid, global_position: i64, recipient: Uuid) -> Uuid {
    let mut hasher = Sha256::new();
    hasher.update(b"chronicle:tenant-notification\0");
    hasher.update(tenant_id.as_bytes());
    hasher.update(global_position.to_be_bytes());
    hasher.update(recipient.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Whether the batch has anything for this module: user events or webhook disables.
fn relevant(e: &EventRecord) -> bool {
    e.aggregate_type == "user"
        || (e.aggregate_type == "webhook_endpoint" && e.event_type == "WebhookEndpointDisabled")
}

impl Members {
    /// Every member of every tenant with a relevant event in `events`.
    pub(super) async fn load(
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> Result<Self, sqlx::Error> {
        let tenants: BTreeSet<Uuid> = events
            .iter()
            .filter(|e| relevant(e))
            .map(|e| e.tenant_id)
            .collect();
        let mut members = Members::default();
        if tenants.is_empty() {
            return Ok(members);
        }
        let rows = sqlx::query(
            "SELECT tenant_id, user_id, role, banned FROM notification_members
              WHERE tenant_id = ANY($1)",
        )
        .bind(tenants.into_iter().collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
        for row in rows {
            members.known.insert(
                (row.get("tenant_id"), row.get("user_id")),
                Some(Member {
                    role: row.get("role"),
                    banned: row.get("banned"),
                }),
            );
        }
        Ok(members)
    }

    /// Applies the batch's user events and returns the rows of its webhook disables, in
    /// catch-up order.
    pub(super) fn apply(&mut self, events: &[EventRecord]) -> Result<Vec<NewRow>, sqlx::Error> {
        let mut rows = Vec::new();
        for e in events.iter().filter(|e| relevant(e)) {
            let payload: Value = serde_json::from_str(&e.payload)
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
            if e.aggregate_type == "webhook_endpoint" {
                let disabled = &payload["WebhookEndpointDisabled"];
                // An admin's own disable is theirs to know; only the dispatcher's tells.
                if disabled["automatic"].as_bool() == Some(true) {
                    rows.extend(self.disabled_rows(e, disabled["reason"].as_str()));
                }
                continue;
            }
            let Ok(user) = Uuid::parse_str(&e.aggregate_id) else {
                continue;
            };
            let key = (e.tenant_id, user);
            let current = self.known.get(&key).cloned().flatten();
            let next = match e.event_type.as_str() {
                "UserRegistered" | "RoleChanged" => {
                    let Some(role) = payload[e.event_type.as_str()]["role"].as_str() else {
                        continue;
                    };
                    Some(Member {
                        role: role.to_string(),
                        banned: current.as_ref().is_some_and(|m| m.banned),
                    })
                }
                "UserBanned" | "UserUnbanned" => current.clone().map(|m| Member {
                    banned: e.event_type == "UserBanned",
                    ..m
                }),
                "UserErased" => None,
                _ => continue,
            };
            if self.known.get(&key) != Some(&next) {
                self.known.insert(key, next);
                self.changed.insert(key);
            }
        }
        Ok(rows)
    }

    /// One row per admin of the tenant in good standing at this point of the log.
    fn disabled_rows(&self, e: &EventRecord, reason: Option<&str>) -> Vec<NewRow> {
        let admins = self
            .known
            .range((e.tenant_id, Uuid::nil())..=(e.tenant_id, Uuid::max()))
            .filter(|(_, m)| m.as_ref().is_some_and(|m| m.role == "admin" && !m.banned))
            .map(|((_, user), _)| *user);
        admins
            .map(|admin| NewRow {
                id: tenant_notification_id(e.tenant_id, e.position.global_position, admin),
                tenant_id: e.tenant_id,
                recipient_id: admin,
                position: e.position,
                kind: WEBHOOK_DISABLED_KIND,
                file_id: None,
                file_name: None,
                version_number: None,
                status: None,
                details: json!({ "endpoint_id": e.aggregate_id, "reason": reason }),
                created_at: e.recorded_at,
            })
            .collect()
    }

    /// Writes the members that changed (erased ones are deleted).
    pub(super) async fn save(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.changed.is_empty() {
            return Ok(());
        }
        let (mut tenants, mut users, mut roles, mut banned) = (vec![], vec![], vec![], vec![]);
        let (mut gone_tenants, mut gone_users) = (vec![], vec![]);
        for key in &self.changed {
            match &self.known[key] {
                Some(m) => {
                    tenants.push(key.0);
                    users.push(key.1);
                    roles.push(m.role.clone());
                    banned.push(m.banned);
                }
                None => {
                    gone_tenants.push(key.0);
                    gone_users.push(key.1);
                }
            }
        }
        sqlx::query(
            "INSERT INTO notification_members (tenant_id, user_id, role, banned)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bool[])
             ON CONFLICT (tenant_id, user_id) DO UPDATE
                SET role = EXCLUDED.role, banned = EXCLUDED.banned",
        )
        .bind(tenants)
        .bind(users)
        .bind(roles)
        .bind(banned)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "DELETE FROM notification_members m
              USING unnest($1::uuid[], $2::uuid[]) AS g(t, u)
              WHERE m.tenant_id = g.t AND m.user_id = g.u",
        )
        .bind(gone_tenants)
        .bind(gone_users)
        .execute(conn)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::projections::record::CatchUpPosition;

    fn event(tenant: Uuid, kind: &str, id: &str, event_type: &str, payload: Value) -> EventRecord {
        EventRecord {
            tenant_id: tenant,
            aggregate_type: kind.into(),
            aggregate_id: id.into(),
            event_type: event_type.into(),
            payload: payload.to_string(),
            sequence: 1,
            event_version: "1".into(),
            metadata: serde_json::Map::new(),
            position: CatchUpPosition::default(),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn a_disable_tells_the_admins_in_good_standing_at_its_position() {
        let tenant = Uuid::from_u128(1);
        let (ada, bob, cy) = (
            Uuid::from_u128(10),
            Uuid::from_u128(11),
            Uuid::from_u128(12),
        );
        let user = |id: Uuid, t: &str, p: Value| event(tenant, "user", &id.to_string(), t, p);
        let disabled = |automatic: bool| {
            event(
                tenant,
                "webhook_endpoint",
                "e1",
                "WebhookEndpointDisabled",
                json!({"WebhookEndpointDisabled": {"automatic": automatic, "reason": "20 failed"}}),
            )
        };
        let mut members = Members::default();
        let rows = members
            .apply(&[
                user(
                    ada,
                    "UserRegistered",
                    json!({"UserRegistered": {"role": "admin"}}),
                ),
                user(
                    bob,
                    "UserRegistered",
                    json!({"UserRegistered": {"role": "admin"}}),
                ),
                user(
                    cy,
                    "UserRegistered",
                    json!({"UserRegistered": {"role": "user"}}),
                ),
                user(bob, "UserBanned", json!("UserBanned")),
                disabled(false),
                disabled(true),
                user(cy, "RoleChanged", json!({"RoleChanged": {"role": "admin"}})),
            ])
            .unwrap();
        let told: Vec<Uuid> = rows.iter().map(|r| r.recipient_id).collect();
        assert_eq!(
            told,
            vec![ada],
            "bob is banned, cy not yet an admin, a manual disable tells no one"
        );
        assert_eq!(rows[0].details["reason"], "20 failed");
        assert_ne!(
            tenant_notification_id(tenant, 5, ada),
            tenant_notification_id(tenant, 5, cy)
        );
    }
}
