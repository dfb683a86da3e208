//! The ApiKey aggregate: one service account's key (docs/api-keys.md). Its stream id is
//! the key id. Only the SHA-256 of the secret is ever recorded; the secret itself is
//! shown once, in the answer that creates it.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::aggregates::Role;
use crate::aggregates::scope::Scope;
use crate::ids::UserId;

/// Longest key name, in bytes.
pub const MAX_NAME_LEN: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyCommand {
    Create {
        name: String,
        role: Role,
        /// `None`: every right of the role; `Some`: only these (each allowed to the role).
        scopes: Option<Vec<Scope>>,
        /// Unix seconds after which the key is refused; `None`: until revoked.
        expires_at: Option<i64>,
        created_by: UserId,
        secret_hash: String,
        prefix: String,
        now: i64,
    },
    Revoke,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
pub enum ApiKeyEvent {
    ApiKeyCreated {
        name: String,
        role: Role,
        scopes: Option<Vec<Scope>>,
        expires_at: Option<i64>,
        /// The admin who created it: the key stops working when they are banned, erased
        /// or no longer an admin (checked on every request, `auth::api_keys`).
        created_by: UserId,
        /// Hex SHA-256 of the secret part of the key.
        secret_hash: String,
        /// The key's first characters, to recognise it in a list.
        prefix: String,
    },
    ApiKeyRevoked,
}

impl DomainEvent for ApiKeyEvent {
    fn event_type(&self) -> String {
        match self {
            ApiKeyEvent::ApiKeyCreated { .. } => "ApiKeyCreated",
            ApiKeyEvent::ApiKeyRevoked => "ApiKeyRevoked",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("API key not found")]
    NotFound,
    #[error("API key already exists")]
    AlreadyExists,
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub exists: bool,
    pub name: String,
    pub role: Option<Role>,
    pub scopes: Option<Vec<Scope>>,
    pub expires_at: Option<i64>,
    pub created_by: Option<UserId>,
    pub revoked: bool,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ApiKeyError {
    ApiKeyError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// 1–100 bytes, not blank, no control characters.
pub fn check_name(name: &str) -> Result<String, ApiKeyError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} printable bytes"),
        ));
    }
    Ok(trimmed.to_string())
}

/// A narrowed set must name at least one scope, each once, each allowed to the role.
fn check_scopes(role: Role, scopes: Option<Vec<Scope>>) -> Result<Option<Vec<Scope>>, ApiKeyError> {
    let Some(mut scopes) = scopes else {
        return Ok(None);
    };
    if scopes.is_empty() {
        return Err(invalid(
            "scopes",
            "must name at least one scope (or be omitted)",
        ));
    }
    scopes.sort();
    scopes.dedup();
    if let Some(refused) = scopes.iter().find(|s| !s.allowed_for(role)) {
        return Err(invalid(
            "scopes",
            format!("{refused} is beyond the rights of role {}", role.as_str()),
        ));
    }
    Ok(Some(scopes))
}

impl ApiKey {
    pub fn decide(&self, command: ApiKeyCommand) -> Result<Vec<ApiKeyEvent>, ApiKeyError> {
        match command {
            ApiKeyCommand::Create {
                name,
                role,
                scopes,
                expires_at,
                created_by,
                secret_hash,
                prefix,
                now,
            } => {
                if self.exists {
                    return Err(ApiKeyError::AlreadyExists);
                }
                let name = check_name(&name)?;
                if role == Role::SystemWorker {
                    return Err(invalid("role", "must be user, auditor or admin"));
                }
                let scopes = check_scopes(role, scopes)?;
                if expires_at.is_some_and(|at| at <= now) {
                    return Err(invalid("expires_at", "must be in the future"));
                }
                Ok(vec![ApiKeyEvent::ApiKeyCreated {
                    name,
                    role,
                    scopes,
                    expires_at,
                    created_by,
                    secret_hash,
                    prefix,
                }])
            }
            ApiKeyCommand::Revoke if !self.exists => Err(ApiKeyError::NotFound),
            // Revoking twice records nothing: the key is already dead.
            ApiKeyCommand::Revoke if self.revoked => Ok(vec![]),
            ApiKeyCommand::Revoke => Ok(vec![ApiKeyEvent::ApiKeyRevoked]),
        }
    }
}

impl Aggregate for ApiKey {
    const TYPE: &'static str = "api_key";
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type Error = ApiKeyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ApiKeyCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ApiKeyError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: ApiKeyEvent) {
        match event {
            ApiKeyEvent::ApiKeyCreated {
                name,
                role,
                scopes,
                expires_at,
                created_by,
                ..
            } => {
                *self = ApiKey {
                    exists: true,
                    name,
                    role: Some(role),
                    scopes,
                    expires_at,
                    created_by: Some(created_by),
                    revoked: false,
                };
            }
            ApiKeyEvent::ApiKeyRevoked => self.revoked = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn create(role: Role, scopes: Option<Vec<Scope>>, expires_at: Option<i64>) -> ApiKeyCommand {
        ApiKeyCommand::Create {
            name: " ci ".into(),
            role,
            scopes,
            expires_at,
            created_by: UserId(uuid::Uuid::nil()),
            secret_hash: "ab".repeat(32),
            prefix: "chk_abcdefgh".into(),
            now: 1000,
        }
    }

    fn created() -> ApiKeyEvent {
        ApiKeyEvent::ApiKeyCreated {
            name: "ci".into(),
            role: Role::User,
            scopes: None,
            expires_at: None,
            created_by: UserId(uuid::Uuid::nil()),
            secret_hash: "ab".repeat(32),
            prefix: "chk_abcdefgh".into(),
        }
    }

    #[test]
    fn a_key_is_created_with_sorted_scopes_and_a_trimmed_name() {
        let scopes = vec![Scope::FilesWrite, Scope::FilesRead, Scope::FilesWrite];
        TestFramework::<ApiKey>::with(())
            .given_no_previous_events()
            .when(create(Role::User, Some(scopes), Some(2000)))
            .then_expect_events(vec![ApiKeyEvent::ApiKeyCreated {
                name: "ci".into(),
                role: Role::User,
                scopes: Some(vec![Scope::FilesRead, Scope::FilesWrite]),
                expires_at: Some(2000),
                created_by: UserId(uuid::Uuid::nil()),
                secret_hash: "ab".repeat(32),
                prefix: "chk_abcdefgh".into(),
            }]);
    }

    #[test]
    fn bad_input_is_refused() {
        let refused = |command, field: &str| {
            let err = ApiKey::default().decide(command).unwrap_err();
            assert!(
                matches!(&err, ApiKeyError::Invalid { field: f, .. } if *f == field),
                "{err:?}"
            );
        };
        refused(
            create(Role::User, Some(vec![Scope::AuditRead]), None),
            "scopes",
        );
        refused(
            create(Role::Auditor, Some(vec![Scope::FilesWrite]), None),
            "scopes",
        );
        refused(create(Role::User, Some(vec![]), None), "scopes");
        refused(create(Role::User, None, Some(1000)), "expires_at");
        refused(create(Role::SystemWorker, None, None), "role");
        let mut blank = create(Role::User, None, None);
        if let ApiKeyCommand::Create { name, .. } = &mut blank {
            *name = "  ".into();
        }
        refused(blank, "name");
    }

    #[test]
    fn revoking_is_recorded_once_and_needs_a_key() {
        TestFramework::<ApiKey>::with(())
            .given(vec![created()])
            .when(ApiKeyCommand::Revoke)
            .then_expect_events(vec![ApiKeyEvent::ApiKeyRevoked]);
        TestFramework::<ApiKey>::with(())
            .given(vec![created(), ApiKeyEvent::ApiKeyRevoked])
            .when(ApiKeyCommand::Revoke)
            .then_expect_events(vec![]);
        TestFramework::<ApiKey>::with(())
            .given_no_previous_events()
            .when(ApiKeyCommand::Revoke)
            .then_expect_error(ApiKeyError::NotFound);
        TestFramework::<ApiKey>::with(())
            .given(vec![created()])
            .when(create(Role::User, None, None))
            .then_expect_error(ApiKeyError::AlreadyExists);
    }
}
