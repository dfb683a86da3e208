//! The User aggregate: identity, role and ban state of one user of a tenant.
//! Credentials are not here: the password hash lives in the `credentials` table, never
//! in the immutable log (docs/architecture.md, "Accounts").

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
    Auditor,
    SystemWorker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::SystemWorker => "system_worker",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    Register {
        handle: String,
        name: String,
        email: String,
        role: Role,
    },
    ChangeRole {
        role: Role,
    },
    Ban,
    Unban,
    /// Records an erasure (the key is destroyed by `commands::erase`, not here).
    Erase {
        plaintext_events: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
pub enum UserEvent {
    /// v2: `name` and `email` are stored sealed with the user's data key (src/privacy).
    UserRegistered {
        handle: String,
        name: String,
        email: String,
        role: Role,
    },
    RoleChanged {
        role: Role,
    },
    UserBanned,
    UserUnbanned,
    /// The user's personal data key was destroyed. Holds no personal data itself.
    UserErased {
        /// Events written before personal fields were sealed (v1) that still hold this
        /// user's personal data in clear in the log: redacted on every read, but not
        /// shredded (docs/architecture.md, "Event versioning and erasure").
        plaintext_events: u64,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::UserRegistered { .. } => "UserRegistered",
            UserEvent::RoleChanged { .. } => "RoleChanged",
            UserEvent::UserBanned => "UserBanned",
            UserEvent::UserUnbanned => "UserUnbanned",
            UserEvent::UserErased { .. } => "UserErased",
        }
        .into()
    }
    fn event_version(&self) -> String {
        match self {
            UserEvent::UserRegistered { .. } => "2",
            _ => "1",
        }
        .into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user not found")]
    NotFound,
    #[error("user already exists")]
    AlreadyExists,
    #[error("invalid {field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub exists: bool,
    pub handle: String,
    pub name: String,
    pub email: String,
    pub role: Option<Role>,
    pub banned: bool,
    /// Personal fields read as `[erased]`; older snapshots lack the field.
    #[serde(default)]
    pub erased: bool,
}

/// Handles: 3–32 characters of `a-z`, `0-9`, `_`, `-`, starting with a letter.
pub fn check_handle(handle: &str) -> Result<(), UserError> {
    let invalid = |reason| UserError::Invalid {
        field: "handle",
        reason,
    };
    if !(3..=32).contains(&handle.len()) {
        return Err(invalid("must be 3 to 32 characters"));
    }
    if !handle.starts_with(|c: char| c.is_ascii_lowercase())
        || !handle
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(invalid(
            "lowercase letters, digits, '_' and '-', starting with a letter",
        ));
    }
    Ok(())
}

/// A deliberately small email check: one '@', something on both sides, a dot in the
/// domain, no spaces or control characters. Deliverability is not our business.
pub fn check_email(email: &str) -> Result<(), UserError> {
    let invalid = |reason| UserError::Invalid {
        field: "email",
        reason,
    };
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("must be a valid address"));
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@') =>
        {
            Ok(())
        }
        _ => Err(invalid("must be a valid address")),
    }
}

impl User {
    pub fn decide(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        if !self.exists && !matches!(command, UserCommand::Register { .. }) {
            return Err(UserError::NotFound);
        }
        Ok(match command {
            UserCommand::Register {
                handle,
                name,
                email,
                role,
            } => {
                if self.exists {
                    return Err(UserError::AlreadyExists);
                }
                check_handle(&handle)?;
                check_email(&email)?;
                let name = name.trim().to_string();
                if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
                    return Err(UserError::Invalid {
                        field: "name",
                        reason: "must be 1 to 200 printable bytes",
                    });
                }
                vec![UserEvent::UserRegistered {
                    handle,
                    name,
                    email: email.to_lowercase(),
                    role,
                }]
            }
            UserCommand::ChangeRole { role } if Some(role) == self.role => vec![],
            UserCommand::ChangeRole { role } => vec![UserEvent::RoleChanged { role }],
            UserCommand::Ban if self.banned => vec![],
            UserCommand::Ban => vec![UserEvent::UserBanned],
            UserCommand::Unban if !self.banned => vec![],
            UserCommand::Unban => vec![UserEvent::UserUnbanned],
            // Erasing twice records nothing: the key is already gone.
            UserCommand::Erase { .. } if self.erased => vec![],
            UserCommand::Erase { plaintext_events } => {
                vec![UserEvent::UserErased { plaintext_events }]
            }
        })
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: UserCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), UserError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: UserEvent) {
        match event {
            UserEvent::UserRegistered {
                handle,
                name,
                email,
                role,
            } => {
                *self = User {
                    exists: true,
                    handle,
                    name,
                    email,
                    role: Some(role),
                    banned: false,
                    erased: false,
                };
            }
            UserEvent::RoleChanged { role } => self.role = Some(role),
            UserEvent::UserBanned => self.banned = true,
            UserEvent::UserUnbanned => self.banned = false,
            UserEvent::UserErased { .. } => {
                self.erased = true;
                self.name = super::ERASED.into();
                self.email = super::ERASED.into();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn registered() -> UserEvent {
        UserEvent::UserRegistered {
            handle: "ada".into(),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            role: Role::User,
        }
    }

    #[test]
    fn register_normalises_the_email() {
        TestFramework::<User>::with(())
            .given_no_previous_events()
            .when(UserCommand::Register {
                handle: "ada".into(),
                name: " Ada ".into(),
                email: "Ada@Example.com".into(),
                role: Role::Admin,
            })
            .then_expect_events(vec![UserEvent::UserRegistered {
                handle: "ada".into(),
                name: "Ada".into(),
                email: "ada@example.com".into(),
                role: Role::Admin,
            }]);
    }

    #[test]
    fn bad_handles_and_emails_are_refused() {
        for handle in ["ab", "Ada", "1abc", "a b c", "ab/c"] {
            assert!(check_handle(handle).is_err(), "{handle}");
        }
        for email in ["", "a", "a@b", "@b.c", "a b@c.d", "a@b@c.d"] {
            assert!(check_email(email).is_err(), "{email}");
        }
        assert!(check_email("a.b+c@d.example").is_ok());
    }

    #[test]
    fn banning_twice_is_a_no_op_and_unban_restores() {
        TestFramework::<User>::with(())
            .given(vec![registered(), UserEvent::UserBanned])
            .when(UserCommand::Ban)
            .then_expect_events(vec![]);
        TestFramework::<User>::with(())
            .given(vec![registered(), UserEvent::UserBanned])
            .when(UserCommand::Unban)
            .then_expect_events(vec![UserEvent::UserUnbanned]);
    }

    #[test]
    fn erasure_is_recorded_once_and_blanks_the_personal_fields() {
        TestFramework::<User>::with(())
            .given(vec![registered()])
            .when(UserCommand::Erase {
                plaintext_events: 2,
            })
            .then_expect_events(vec![UserEvent::UserErased {
                plaintext_events: 2,
            }]);
        TestFramework::<User>::with(())
            .given(vec![
                registered(),
                UserEvent::UserErased {
                    plaintext_events: 0,
                },
            ])
            .when(UserCommand::Erase {
                plaintext_events: 0,
            })
            .then_expect_events(vec![]);
        let mut user = User::default();
        user.apply(registered());
        user.apply(UserEvent::UserErased {
            plaintext_events: 0,
        });
        assert!(user.erased);
        assert_eq!(
            (user.name.as_str(), user.email.as_str()),
            ("[erased]", "[erased]")
        );
        assert_eq!(user.handle, "ada");
    }

    #[test]
    fn commands_on_a_missing_user_are_not_found() {
        TestFramework::<User>::with(())
            .given_no_previous_events()
            .when(UserCommand::Ban)
            .then_expect_error(UserError::NotFound);
    }
}
