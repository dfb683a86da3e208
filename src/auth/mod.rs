//! Authentication: passwords, tokens, and the `TenantContext` every tenant-scoped
//! handler requires.

pub mod context;
pub mod password;
pub mod tokens;

pub use context::TenantContext;
pub use tokens::{OpaqueToken, TokenKeys};
