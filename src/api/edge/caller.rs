//! Who is calling and from where, for every surface (the JSON API and the console):
//!
//! - the `TenantContext` extractor: wires the app state's pool, token keys and standing
//!   memory to `auth::context::authenticate`, which decides who the caller is. Here rather
//!   than in `auth/` so that `auth` does not depend on the state that holds it (the
//!   top-level modules form no cycle, docs/architecture.md "Layout");
//! - the event metadata of a signed-in caller's command (`caller_metadata`) and the
//!   `Origin` of a request without one (sign-up, sign-in).

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::auth::TenantContext;
use crate::auth::context::{authenticate, judged_under};
use crate::cache::standing::{Epoch, PrefetchedEpoch};
use crate::commands::accounts::Origin;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::EventMetadata;

/// The request id the request-id layer put on the request (echoed on the response).
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(super::observe::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Metadata for a command issued by the authenticated caller.
pub(crate) fn caller_metadata(ctx: &TenantContext, headers: &HeaderMap) -> EventMetadata {
    EventMetadata::new(ctx.tenant_id, ctx.actor(), request_id(headers))
}

/// Where a request without a signed-in caller came from, for the session, the event
/// metadata and the per-client budgets.
pub(crate) fn origin(state: &AppState, peer: IpAddr, headers: &HeaderMap) -> Origin {
    Origin {
        ip: peer.to_string(),
        user_agent: super::text::user_agent(headers),
        request_id: request_id(headers),
        client: crate::ratelimit::client_ip(headers, Some(peer), state.config.trust_proxy_headers),
    }
}

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
