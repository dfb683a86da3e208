//! Metadata carried by every event: who, on whose behalf, and why.

use std::collections::HashMap;
use uuid::Uuid;

use crate::ids::{TenantId, UserId};

/// Who caused an event. Stored as text: a user id, or `system:<component>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    /// An API key acting as itself (`key:<key id>`): the log names the key, not a person.
    ApiKey(uuid::Uuid),
    /// The background worker (`system:worker`).
    Worker,
    /// Another internal component, e.g. `system:bench`, `system:cli`.
    System(&'static str),
}

impl Actor {
    pub fn as_text(&self) -> String {
        match self {
            Actor::User(id) => id.to_string(),
            Actor::ApiKey(id) => format!("key:{id}"),
            Actor::Worker => "system:worker".into(),
            Actor::System(component) => format!("system:{component}"),
        }
    }
}

/// The typed form of what `EventStore::commit` receives as a string map.
#[derive(Debug, Clone)]
pub struct EventMetadata {
    pub tenant_id: TenantId,
    pub actor: Actor,
    pub request_id: String,
    /// Ties together everything one user action caused (API request → worker steps).
    pub correlation_id: String,
    /// The message (request or event) that directly caused this command.
    pub causation_id: String,
}

impl EventMetadata {
    /// Metadata for a command that starts a new chain of causes.
    pub fn new(tenant_id: TenantId, actor: Actor, request_id: impl Into<String>) -> Self {
        let request_id = request_id.into();
        Self {
            tenant_id,
            actor,
            correlation_id: request_id.clone(),
            causation_id: request_id.clone(),
            request_id,
        }
    }

    /// Metadata for internal work without an HTTP request (CLI, benchmarks, worker).
    pub fn system(tenant_id: TenantId, actor: Actor) -> Self {
        Self::new(tenant_id, actor, Uuid::now_v7().to_string())
    }

    pub fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            (keys::TENANT_ID.into(), self.tenant_id.to_string()),
            (keys::ACTOR.into(), self.actor.as_text()),
            (keys::REQUEST_ID.into(), self.request_id.clone()),
            (keys::CORRELATION_ID.into(), self.correlation_id.clone()),
            (keys::CAUSATION_ID.into(), self.causation_id.clone()),
        ])
    }
}

/// Metadata keys, as stored in `events.metadata`.
pub mod keys {
    pub const TENANT_ID: &str = "tenant_id";
    pub const ACTOR: &str = "actor";
    pub const REQUEST_ID: &str = "request_id";
    pub const CORRELATION_ID: &str = "correlation_id";
    pub const CAUSATION_ID: &str = "causation_id";
    pub const PREV_HASH: &str = "prev_hash";
    pub const HASH: &str = "hash";
    /// `"2"` on events hashed with version 2 (docs/audit.md); absent on version 1.
    pub const HASH_VERSION: &str = "hash_version";
    /// The id of the key that signed the commit, on the last event of each commit.
    pub const SIGNATURE_KEY: &str = "signature_key";
    /// Base64 Ed25519 signature of the event's hash (32 raw bytes) by that key.
    pub const SIGNATURE: &str = "signature";
}
