//! The Tenant aggregate: the unit of isolation. Its stream id is the tenant id.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::aggregates::Role;
use crate::ids::UserId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantCommand {
    Create {
        name: String,
        created_by: UserId,
    },
    Invite {
        invitation_id: uuid::Uuid,
        token_hash: String,
        role: Role,
        expires_at: i64,
        invited_by: UserId,
    },
    /// Redeem an invitation; `token_hash` must match and it must be unused and unexpired.
    AcceptInvitation {
        invitation_id: uuid::Uuid,
        token_hash: String,
        user_id: UserId,
        now: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
pub enum TenantEvent {
    TenantCreated {
        name: String,
        created_by: UserId,
    },
    InvitationCreated {
        invitation_id: uuid::Uuid,
        token_hash: String,
        role: Role,
        expires_at: i64,
        invited_by: UserId,
    },
    InvitationAccepted {
        invitation_id: uuid::Uuid,
        user_id: UserId,
    },
}

impl DomainEvent for TenantEvent {
    fn event_type(&self) -> String {
        match self {
            TenantEvent::TenantCreated { .. } => "TenantCreated".into(),
            TenantEvent::InvitationCreated { .. } => "InvitationCreated".into(),
            TenantEvent::InvitationAccepted { .. } => "InvitationAccepted".into(),
        }
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("tenant already exists")]
    AlreadyExists,
    #[error("invalid tenant name: {0}")]
    InvalidName(&'static str),
    #[error("tenant not found")]
    NotFound,
    /// Unknown, used, expired or wrong-secret invitation: one error, no hints.
    #[error("invitation is invalid or expired")]
    InvalidInvitation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub id: uuid::Uuid,
    pub token_hash: String,
    pub role: Role,
    pub expires_at: i64,
    pub accepted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub exists: bool,
    pub name: String,
    pub invitations: Vec<Invitation>,
}

impl Tenant {
    pub fn decide(&self, command: TenantCommand) -> Result<Vec<TenantEvent>, TenantError> {
        match command {
            TenantCommand::Create { name, created_by } => {
                if self.exists {
                    return Err(TenantError::AlreadyExists);
                }
                let name = name.trim().to_string();
                if name.is_empty() || name.len() > 200 {
                    return Err(TenantError::InvalidName("must be 1 to 200 bytes"));
                }
                if name.chars().any(char::is_control) {
                    return Err(TenantError::InvalidName(
                        "must not contain control characters",
                    ));
                }
                Ok(vec![TenantEvent::TenantCreated { name, created_by }])
            }
            _ if !self.exists => Err(TenantError::NotFound),
            TenantCommand::Invite {
                invitation_id,
                token_hash,
                role,
                expires_at,
                invited_by,
            } => Ok(vec![TenantEvent::InvitationCreated {
                invitation_id,
                token_hash,
                role,
                expires_at,
                invited_by,
            }]),
            TenantCommand::AcceptInvitation {
                invitation_id,
                token_hash,
                user_id,
                now,
            } => {
                let valid = self.invitations.iter().any(|i| {
                    i.id == invitation_id
                        && i.token_hash == token_hash
                        && !i.accepted
                        && now <= i.expires_at
                });
                if !valid {
                    return Err(TenantError::InvalidInvitation);
                }
                Ok(vec![TenantEvent::InvitationAccepted {
                    invitation_id,
                    user_id,
                }])
            }
        }
    }

    /// The role an invitation grants.
    pub fn invitation_role(&self, invitation_id: uuid::Uuid) -> Option<Role> {
        self.invitations
            .iter()
            .find(|i| i.id == invitation_id)
            .map(|i| i.role)
    }
}

impl Aggregate for Tenant {
    const TYPE: &'static str = "tenant";
    type Command = TenantCommand;
    type Event = TenantEvent;
    type Error = TenantError;
    type Services = ();

    async fn handle(
        &mut self,
        command: TenantCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), TenantError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: TenantEvent) {
        match event {
            TenantEvent::TenantCreated { name, .. } => {
                self.exists = true;
                self.name = name;
            }
            TenantEvent::InvitationCreated {
                invitation_id,
                token_hash,
                role,
                expires_at,
                ..
            } => {
                self.invitations.push(Invitation {
                    id: invitation_id,
                    token_hash,
                    role,
                    expires_at,
                    accepted: false,
                });
            }
            TenantEvent::InvitationAccepted { invitation_id, .. } => {
                if let Some(i) = self.invitations.iter_mut().find(|i| i.id == invitation_id) {
                    i.accepted = true;
                }
            }
        }
    }
}
