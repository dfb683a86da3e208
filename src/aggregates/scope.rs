//! The scopes an API key can be narrowed to (src/auth/scopes.rs holds the set and the
//! policy asks it): part of the `ApiKeyCreated` event, so defined beside the aggregates.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::aggregates::Role;

/// One scope a key can be given, by its name on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read files (metadata, content, versions, tags) the role can reach.
    FilesRead,
    /// Upload, rename, tag, delete and restore files the role can reach.
    FilesWrite,
    /// Read the audit log, file histories, the transparency log.
    AuditRead,
    /// Read the tenant-wide event feed.
    FeedRead,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::FilesRead,
        Scope::FilesWrite,
        Scope::AuditRead,
        Scope::FeedRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::FilesRead => "files:read",
            Scope::FilesWrite => "files:write",
            Scope::AuditRead => "audit:read",
            Scope::FeedRead => "feed:read",
        }
    }

    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Whether `role` may hold this scope at all: users read and write their own files;
    /// auditors read files, the audit log and the feed; admins everything.
    pub fn allowed_for(self, role: Role) -> bool {
        match role {
            Role::Admin | Role::SystemWorker => true,
            Role::User => matches!(self, Scope::FilesRead | Scope::FilesWrite),
            Role::Auditor => !matches!(self, Scope::FilesWrite),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Scope::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown scope {name:?} (one of files:read, files:write, audit:read, feed:read)"
            ))
        })
    }
}

impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(Scope::ALL.map(Scope::as_str)))
            .description(Some("what a narrowed API key may do"))
            .into()
    }
}

impl utoipa::ToSchema for Scope {}
