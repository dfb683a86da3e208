//! Authentication and authorization: passwords, tokens, the bearer token verified once
//! per request, the `TenantContext` every tenant-scoped handler requires, and the one
//! policy of who may do what (with its role extractors).

pub mod context;
pub mod credentials;
pub mod password;
pub mod policy;
pub mod roles;
pub mod tokens;

pub use context::TenantContext;
pub use credentials::Credentials;
pub use roles::{Admin, AuditorOrAdmin, Writer};
pub use tokens::{OpaqueToken, TokenKeys};
