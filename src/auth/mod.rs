//! Authentication and authorization: passwords, tokens, the bearer token verified once
//! per request (or an API key, `api_keys.rs`), the `TenantContext` every tenant-scoped
//! handler requires, and the one policy of who may do what (roles and scopes, with
//! their extractors).

pub mod api_keys;
pub mod browser;
pub mod context;
pub mod credentials;
pub mod password;
pub mod policy;
pub mod roles;
pub mod scopes;
pub mod standing;
pub mod tokens;

pub use context::TenantContext;
pub use credentials::Credentials;
pub use roles::{Admin, AuditorOrAdmin, FeedReader, FileReader, KeyManager, Writer};
pub use scopes::{Scope, Scopes};
pub use standing::Standings;
pub use tokens::{OpaqueToken, TokenKeys};
