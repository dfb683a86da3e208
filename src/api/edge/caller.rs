//! The `TenantContext` extractor: wires the app state's pool, token keys and standing
//! memory to `auth::context::authenticate`, which decides who the caller is. Here rather than in
//! `auth/` so that `auth` does not depend on the state that holds it (the top-level
//! modules form no cycle, docs/architecture.md "Layout").

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::TenantContext;
use crate::auth::context::{authenticate, judged_under};
use crate::cache::standing::{Epoch, PrefetchedEpoch};
use crate::error::AppError;
use crate::state::AppState;

impl FromRequestParts<AppState> for TenantContext {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let (db, standings) = (&state.db, &state.standings);
        let prefetched = parts.extensions.get::<PrefetchedEpoch>().cloned();
        let ctx = authenticate(parts, &state.tokens, |claims| async move {
            standings
                .session(db, claims.tenant, claims.sid, claims.sub, prefetched)
                .await
        })
        .await?;
        tracing::Span::current().record("tenant_id", tracing::field::display(ctx.tenant_id));
        Ok(ctx)
    }
}

/// The standing epoch the request's caller was judged under (after a `TenantContext`
/// extractor of the same handler): what the handler may remember its own log reads
/// under (src/auth/standing.rs).
pub struct JudgedUnder(pub Epoch);

impl<S: Send + Sync> FromRequestParts<S> for JudgedUnder {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(judged_under(parts)))
    }
}
