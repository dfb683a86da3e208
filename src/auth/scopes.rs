//! Scopes: what kinds of action a caller may take, on top of its role. A person (a
//! session) has every scope its role allows; an API key may be narrowed to a few. The
//! policy (`policy.rs`) asks both: a key may do a thing only if its role allows it *and*
//! one of its scopes names it (docs/api-keys.md, "Roles and scopes").

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

    fn bit(self) -> u8 {
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

/// A set of scopes. `Scopes::UNRESTRICTED` (a session, or a key created with a role
/// only) also carries the administration right no scope names: managing users,
/// invitations and jobs stays with admins who were not narrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

const ADMINISTRATION: u8 = 1 << 7;

impl Scopes {
    pub const UNRESTRICTED: Scopes = Scopes(0b1111 | ADMINISTRATION);

    /// Exactly these scopes (a narrowed key): never the administration right.
    pub fn only(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self(scopes.into_iter().fold(0, |bits, s| bits | s.bit()))
    }

    pub fn has(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_unrestricted(self) -> bool {
        self.0 & ADMINISTRATION != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.has(*s))
    }

    /// The scope names of a narrowed set; `None` for an unrestricted one.
    pub fn names(self) -> Option<Vec<String>> {
        (!self.is_unrestricted()).then(|| self.iter().map(|s| s.as_str().to_string()).collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sets_hold_what_they_were_given() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), s);
        }
        assert!(Scope::parse("files:delete").is_none());
        assert!(serde_json::from_str::<Scope>("\"admin\"").is_err());
        let set = Scopes::only([Scope::FilesRead, Scope::FeedRead]);
        assert!(set.has(Scope::FilesRead) && set.has(Scope::FeedRead));
        assert!(!set.has(Scope::FilesWrite) && !set.is_unrestricted());
        assert_eq!(set.names().unwrap(), ["files:read", "feed:read"]);
        assert!(Scopes::UNRESTRICTED.names().is_none());
        assert!(Scope::ALL.iter().all(|s| Scopes::UNRESTRICTED.has(*s)));
    }

    #[test]
    fn roles_bound_the_scopes_they_may_hold() {
        assert!(Scope::FilesWrite.allowed_for(Role::User));
        assert!(!Scope::AuditRead.allowed_for(Role::User));
        assert!(!Scope::FeedRead.allowed_for(Role::User));
        assert!(!Scope::FilesWrite.allowed_for(Role::Auditor));
        assert!(Scope::FeedRead.allowed_for(Role::Auditor));
        assert!(Scope::ALL.iter().all(|s| s.allowed_for(Role::Admin)));
    }
}
