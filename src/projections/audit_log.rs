//! `audit_logs`: one row per event — who (actor), did what (action), to what (target),
//! when, with the event's payload as details. Keyed by the event's global position, so
//! replays and rebuilds produce the same rows.

use async_trait::async_trait;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{EventRecord, Projector};
use crate::privacy::ERASED;
use crate::privacy::fields::{PERSONAL_EVENTS, Subject};
use crate::store::metadata::keys;

pub struct AuditLogProjector;

/// `user` for user ids, `api_key` for `key:<id>`, `worker` for `system:worker`,
/// `system` for other components.
pub fn actor_type(actor: &str) -> &'static str {
    match actor {
        "system:worker" => "worker",
        a if a.starts_with("key:") => "api_key",
        a if a.starts_with("system:") => "system",
        _ => "user",
    }
}

/// `file` + `FileCreated` → `file.created`; `file` + `Renamed` → `file.renamed`.
pub fn action(aggregate_type: &str, event_type: &str) -> String {
    let mut snake = String::with_capacity(event_type.len() + 4);
    for (i, c) in event_type.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    let verb = snake
        .strip_prefix(aggregate_type)
        .and_then(|rest| rest.strip_prefix('_'))
        .unwrap_or(&snake);
    format!("{aggregate_type}.{verb}")
}

#[async_trait]
impl Projector for AuditLogProjector {
    fn name(&self) -> &'static str {
        "audit_logs"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_logs"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> Result<(), sqlx::Error> {
        let n = events.len();
        let mut ids = Vec::with_capacity(n);
        let mut tenants = Vec::with_capacity(n);
        let mut actors = Vec::with_capacity(n);
        let mut actor_users: Vec<Option<Uuid>> = Vec::with_capacity(n);
        let mut actor_types = Vec::with_capacity(n);
        let mut actions = Vec::with_capacity(n);
        let mut target_types = Vec::with_capacity(n);
        let mut target_ids = Vec::with_capacity(n);
        let mut sequences = Vec::with_capacity(n);
        let mut details = Vec::with_capacity(n);
        let mut request_ids: Vec<Option<String>> = Vec::with_capacity(n);
        let mut correlation_ids: Vec<Option<String>> = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        for e in events {
            let actor = e.meta(keys::ACTOR).unwrap_or("system:unknown").to_string();
            let kind = actor_type(&actor);
            actor_users.push(
                (kind == "user")
                    .then(|| Uuid::parse_str(&actor).ok())
                    .flatten(),
            );
            actor_types.push(kind);
            actors.push(actor);
            ids.push(e.position.global_position);
            tenants.push(e.tenant_id);
            actions.push(action(&e.aggregate_type, &e.event_type));
            target_types.push(e.aggregate_type.as_str());
            target_ids.push(e.aggregate_id.as_str());
            sequences.push(e.sequence);
            details.push(e.payload.as_str());
            request_ids.push(e.meta(keys::REQUEST_ID).map(str::to_string));
            correlation_ids.push(e.meta(keys::CORRELATION_ID).map(str::to_string));
            times.push(e.recorded_at);
        }
        sqlx::query(
            r#"
INSERT INTO audit_logs (id, tenant_id, actor, actor_user_id, actor_type, action, target_type,
                        target_id, sequence, details, request_id, correlation_id, created_at)
SELECT u.id, u.tenant_id, u.actor, u.actor_user_id, u.actor_type, u.action, u.target_type,
       u.target_id, u.sequence, u.details::jsonb, u.request_id, u.correlation_id, u.created_at
  FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[],
              $7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[], $12::text[],
              $13::timestamptz[])
    AS u(id, tenant_id, actor, actor_user_id, actor_type, action, target_type, target_id,
         sequence, details, request_id, correlation_id, created_at)
"#,
        )
        .bind(&ids)
        .bind(&tenants)
        .bind(&actors)
        .bind(&actor_users)
        .bind(&actor_types)
        .bind(&actions)
        .bind(&target_types)
        .bind(&target_ids)
        .bind(&sequences)
        .bind(&details)
        .bind(&request_ids)
        .bind(&correlation_ids)
        .bind(&times)
        .execute(&mut *conn)
        .await?;
        for e in events.iter().filter(|e| e.event_type == "UserErased") {
            redact(conn, e.tenant_id, &e.aggregate_id).await?;
        }
        Ok(())
    }
}

/// Replaces an erased user's personal fields in earlier rows' details by `[erased]` —
/// what a rebuild reads from the shredded events. Erasure is rare; these statements
/// scan the tenant's rows of the action.
async fn redact(conn: &mut PgConnection, tenant: Uuid, user: &str) -> Result<(), sqlx::Error> {
    for (aggregate_type, event_type, personal) in PERSONAL_EVENTS {
        let whose = match personal.subject {
            Subject::Stream => "target_id = $3".to_string(),
            Subject::Field(name) => format!("details->'{event_type}'->>'{name}' = $3"),
        };
        for field in personal.fields {
            sqlx::query(&format!(
                "UPDATE audit_logs SET details = jsonb_set(details, ARRAY['{event_type}', '{field}'], to_jsonb($4::text))
                  WHERE tenant_id = $1 AND target_type = '{aggregate_type}' AND action = $2 AND {whose}"
            ))
            .bind(tenant)
            .bind(action(aggregate_type, event_type))
            .bind(user)
            .bind(ERASED)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_as_the_domain_says_them() {
        assert_eq!(action("file", "FileCreated"), "file.created");
        assert_eq!(action("file", "Renamed"), "file.renamed");
        assert_eq!(action("file", "VersionCompleted"), "file.version_completed");
        assert_eq!(action("user", "PasswordChanged"), "user.password_changed");
    }

    #[test]
    fn actor_types() {
        assert_eq!(actor_type("system:worker"), "worker");
        assert_eq!(actor_type("system:cli"), "system");
        assert_eq!(
            actor_type("key:0190f5a0-0000-7000-8000-000000000000"),
            "api_key"
        );
        assert_eq!(actor_type("0190f5a0-0000-7000-8000-000000000000"), "user");
    }
}
