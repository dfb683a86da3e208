//! Role- and scope-bound routes say so in the handler's signature: a handler that takes
//! `Admin` runs for admins only, one that takes `AuditorOrAdmin` for readers of history
//! (`audit:read`), `Writer` for roles that create content (`files:write`), `FileReader`
//! for callers that read files (`files:read`), `FeedReader` for readers of the
//! tenant-wide feed (`feed:read`: auditors and admins), `KeyManager` for admins signed in
//! as people (API key management). Each is a `TenantContext` (the verified, live caller)
//! that also passed its rule in `policy.rs`; anyone else gets `403 forbidden` in the one
//! error shape, after the same `401`s as any authenticated route.

use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{TenantContext, policy};
use crate::error::AppError;

fn role_refused() -> AppError {
    AppError::Forbidden("your role (or your API key's scopes) does not allow this action".into())
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $rule:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name(pub TenantContext);

        impl Deref for $name {
            type Target = TenantContext;
            fn deref(&self) -> &TenantContext {
                &self.0
            }
        }

        // Generic over the state: whatever state `TenantContext` is extracted from
        // (src/api/edge/caller.rs), so this module needs no app state of its own.
        impl<S> FromRequestParts<S> for $name
        where
            S: Send + Sync,
            TenantContext: FromRequestParts<S, Rejection = AppError>,
        {
            type Rejection = AppError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
                let caller = TenantContext::from_request_parts(parts, state).await?;
                if $rule(&caller) {
                    Ok(Self(caller))
                } else {
                    Err(role_refused())
                }
            }
        }
    };
}

role_extractor!(
    /// An admin of the tenant (`policy::administers`).
    Admin,
    policy::administers
);
role_extractor!(
    /// An auditor or admin: a reader of history (`policy::reads_history`).
    AuditorOrAdmin,
    policy::reads_history
);
role_extractor!(
    /// A user or admin: a role that creates content (`policy::writes`).
    Writer,
    policy::writes
);
role_extractor!(
    /// A caller that reads files (`policy::reads_files`: the `files:read` scope).
    FileReader,
    policy::reads_files
);
role_extractor!(
    /// A reader of the tenant-wide event feed (`policy::reads_feed`: an auditor or admin
    /// with the `feed:read` scope, which people always have).
    FeedReader,
    policy::reads_feed
);
role_extractor!(
    /// An admin signed in as a person: creates, lists and revokes API keys
    /// (`policy::manages_keys`).
    KeyManager,
    policy::manages_keys
);
