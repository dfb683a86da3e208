//! The `TenantContext` extractor: wires the app state's pool and token keys to
//! `auth::context::authenticate`, which decides who the caller is. Here rather than in
//! `auth/` so that `auth` does not depend on the state that holds it (the top-level
//! modules form no cycle, docs/architecture.md "Layout").

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::TenantContext;
use crate::auth::context::{authenticate, session_standing};
use crate::error::AppError;
use crate::state::AppState;

impl FromRequestParts<AppState> for TenantContext {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let db = &state.db;
        let ctx = authenticate(parts, &state.tokens, |claims| async move {
            session_standing(db, claims.tenant, claims.sid, claims.sub).await
        })
        .await?;
        tracing::Span::current().record("tenant_id", tracing::field::display(ctx.tenant_id));
        Ok(ctx)
    }
}
