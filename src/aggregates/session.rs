//! The Session aggregate: one login and its chain of refresh tokens (the "family").
//! Only SHA-256 hashes of refresh secrets are ever stored. Presenting a secret that was
//! already rotated away means it was stolen or replayed: the whole session is revoked.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::UserId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    Start {
        user_id: UserId,
        user_agent: String,
        ip: String,
        refresh_hash: String,
        refresh_expires_at: i64,
    },
    /// Rotate: `presented_hash` must be the current, unexpired one; `next_hash` replaces it.
    Refresh {
        presented_hash: String,
        next_hash: String,
        now: i64,
        next_expires_at: i64,
    },
    Revoke {
        reason: RevokeReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    Logout,
    /// Revoked from another device (`DELETE /v1/sessions/{id}`).
    Revoked,
    RefreshTokenReuse,
    /// The user was erased (`POST /v1/users/{id}/erase`).
    UserErased,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
pub enum SessionEvent {
    /// v2: `user_agent` and `ip` are stored sealed with the user's data key.
    SessionStarted {
        user_id: UserId,
        user_agent: String,
        ip: String,
        refresh_hash: String,
        refresh_expires_at: i64,
    },
    SessionRefreshed {
        refresh_hash: String,
        refresh_expires_at: i64,
    },
    SessionRevoked {
        reason: RevokeReason,
    },
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> String {
        match self {
            SessionEvent::SessionStarted { .. } => "SessionStarted",
            SessionEvent::SessionRefreshed { .. } => "SessionRefreshed",
            SessionEvent::SessionRevoked { .. } => "SessionRevoked",
        }
        .into()
    }
    fn event_version(&self) -> String {
        match self {
            SessionEvent::SessionStarted { .. } => "2",
            _ => "1",
        }
        .into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session not found")]
    NotFound,
    #[error("session already exists")]
    AlreadyExists,
    #[error("session revoked")]
    Revoked,
    #[error("refresh token invalid")]
    InvalidRefreshToken,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub exists: bool,
    pub user_id: Option<UserId>,
    pub current_hash: String,
    /// Unix time after which the current refresh token is refused.
    pub current_expires_at: i64,
    /// Hashes rotated away; presenting one of them is reuse.
    pub used_hashes: Vec<String>,
    pub revoked: Option<RevokeReason>,
}

impl Session {
    pub fn decide(&self, command: SessionCommand) -> Result<Vec<SessionEvent>, SessionError> {
        if let SessionCommand::Start {
            user_id,
            user_agent,
            ip,
            refresh_hash,
            refresh_expires_at,
        } = command
        {
            if self.exists {
                return Err(SessionError::AlreadyExists);
            }
            return Ok(vec![SessionEvent::SessionStarted {
                user_id,
                user_agent,
                ip,
                refresh_hash,
                refresh_expires_at,
            }]);
        }
        if !self.exists {
            return Err(SessionError::NotFound);
        }
        match command {
            SessionCommand::Start { .. } => unreachable!("handled above"),
            SessionCommand::Refresh { .. } if self.revoked.is_some() => Err(SessionError::Revoked),
            SessionCommand::Refresh {
                presented_hash,
                next_hash,
                now,
                next_expires_at,
            } => {
                if presented_hash == self.current_hash {
                    if now > self.current_expires_at {
                        return Err(SessionError::InvalidRefreshToken);
                    }
                    Ok(vec![SessionEvent::SessionRefreshed {
                        refresh_hash: next_hash,
                        refresh_expires_at: next_expires_at,
                    }])
                } else if self.used_hashes.contains(&presented_hash) {
                    // Not an error: the revocation must be recorded. The caller sees it
                    // in the committed events and answers 401 refresh_token_reused.
                    Ok(vec![SessionEvent::SessionRevoked {
                        reason: RevokeReason::RefreshTokenReuse,
                    }])
                } else {
                    Err(SessionError::InvalidRefreshToken)
                }
            }
            SessionCommand::Revoke { .. } if self.revoked.is_some() => Ok(vec![]),
            SessionCommand::Revoke { reason } => Ok(vec![SessionEvent::SessionRevoked { reason }]),
        }
    }
}

impl Aggregate for Session {
    const TYPE: &'static str = "session";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SessionCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SessionError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::SessionStarted {
                user_id,
                refresh_hash,
                refresh_expires_at,
                ..
            } => {
                self.exists = true;
                self.user_id = Some(user_id);
                self.current_hash = refresh_hash;
                self.current_expires_at = refresh_expires_at;
            }
            SessionEvent::SessionRefreshed {
                refresh_hash,
                refresh_expires_at,
            } => {
                let old = std::mem::replace(&mut self.current_hash, refresh_hash);
                self.used_hashes.push(old);
                self.current_expires_at = refresh_expires_at;
            }
            SessionEvent::SessionRevoked { reason } => self.revoked = Some(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn started() -> SessionEvent {
        SessionEvent::SessionStarted {
            user_id: UserId(uuid::Uuid::nil()),
            user_agent: "ua".into(),
            ip: "127.0.0.1".into(),
            refresh_hash: "h1".into(),
            refresh_expires_at: 1000,
        }
    }

    fn refresh(presented: &str, now: i64) -> SessionCommand {
        SessionCommand::Refresh {
            presented_hash: presented.into(),
            next_hash: "h2".into(),
            now,
            next_expires_at: 2000,
        }
    }

    #[test]
    fn rotation_replaces_the_current_hash() {
        TestFramework::<Session>::with(())
            .given(vec![started()])
            .when(refresh("h1", 10))
            .then_expect_events(vec![SessionEvent::SessionRefreshed {
                refresh_hash: "h2".into(),
                refresh_expires_at: 2000,
            }]);
    }

    #[test]
    fn a_rotated_token_revokes_the_session() {
        TestFramework::<Session>::with(())
            .given(vec![
                started(),
                SessionEvent::SessionRefreshed {
                    refresh_hash: "h2".into(),
                    refresh_expires_at: 2000,
                },
            ])
            .when(refresh("h1", 10))
            .then_expect_events(vec![SessionEvent::SessionRevoked {
                reason: RevokeReason::RefreshTokenReuse,
            }]);
    }

    #[test]
    fn an_unknown_token_is_invalid_and_a_revoked_session_refuses_refresh() {
        TestFramework::<Session>::with(())
            .given(vec![started()])
            .when(refresh("zz", 10))
            .then_expect_error(SessionError::InvalidRefreshToken);
        TestFramework::<Session>::with(())
            .given(vec![started()])
            .when(refresh("h1", 1001))
            .then_expect_error(SessionError::InvalidRefreshToken);
        TestFramework::<Session>::with(())
            .given(vec![
                started(),
                SessionEvent::SessionRevoked {
                    reason: RevokeReason::Logout,
                },
            ])
            .when(refresh("h1", 10))
            .then_expect_error(SessionError::Revoked);
    }
}
