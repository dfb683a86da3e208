//! Scopes: what kinds of action a caller may take, on top of its role. A person (a
//! session) has every scope its role allows; an API key may be narrowed to a few. The
//! policy (`policy.rs`) asks both: a key may do a thing only if its role allows it *and*
//! one of its scopes names it (docs/api-keys.md, "Roles and scopes").

pub use crate::aggregates::scope::Scope;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregates::Role;

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
