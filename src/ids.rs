//! Identifier newtypes. Parse, don't validate: once a `TenantId` exists it is a valid
//! UUID, and functions that need a tenant say so in their signature.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered (v7) id: B-tree friendly, unlike random v4 (docs/design.md, Conventions).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn parse(s: &str) -> Option<Self> {
                Uuid::parse_str(s).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Lowercase hyphenated: the form hashed into the event chain.
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A tenant: the unit of isolation for every row, key, blob and job.
    TenantId
);
uuid_id!(
    /// A user of a tenant.
    UserId
);
uuid_id!(
    /// A logical file (its stream id in the event store).
    FileId
);

/// A version's stable id: derived from its file and number (UUID v5), so it needs no
/// storage of its own and is the same in every read model and job.
pub fn version_id(file: FileId, version_number: u32) -> Uuid {
    Uuid::new_v5(&file.0, format!("version/{version_number}").as_bytes())
}
