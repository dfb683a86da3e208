//! Who is looking at a console page: [`Viewer`], the signed-in person. It is the API's
//! `TenantContext` (the same credentials layer, the same standing read from the log on
//! every request, so a revoked session or a ban bites on the next page) plus what pages
//! need: the CSRF token for their forms and scripts, and the person's handle.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ConsoleError;
use crate::auth::TenantContext;
use crate::error::AppError;
use crate::state::AppState;

/// A signed-in person. A handler taking it runs only for one; a visitor is sent to the
/// sign-in page. What the person may do is still the policy's business
/// (src/auth/policy.rs), exactly as in the API.
pub struct Viewer {
    pub ctx: TenantContext,
    /// The session's CSRF token (src/auth/browser.rs).
    pub csrf: String,
    /// The person's handle, for the navigation bar.
    pub handle: String,
    /// How many of the person's notifications are unread, for the navigation bar.
    pub unread: i64,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ConsoleError> {
        let htmx = parts.headers.contains_key("hx-request");
        let ctx = match TenantContext::from_request_parts(parts, state).await {
            Ok(ctx) => ctx,
            Err(AppError::Unauthorized(_)) => return Err(ConsoleError::SignIn { htmx }),
            Err(other) => return Err(other.into()),
        };
        if ctx.via_key {
            return Err(
                AppError::Forbidden("the console is for people; API keys use /v1".into()).into(),
            );
        }
        // The handle from the log, not the `users` table, which a person who just signed
        // up may not be in yet (handles never change); the unread count for the
        // navigation from its one-row counter (migration 0056), under the tenant's RLS.
        let mut tx = ctx.begin(&state.db).await?;
        let (handle, unread): (Option<String>, i64) = sqlx::query_as(
            "SELECT (SELECT payload->'UserRegistered'->>'handle' FROM events
                      WHERE tenant_id = $1 AND aggregate_type = 'user' AND aggregate_id = $2
                        AND event_type = 'UserRegistered'),
                    coalesce((SELECT unread FROM notification_unread
                               WHERE tenant_id = $1 AND recipient_id = $3), 0)",
        )
        .bind(ctx.tenant_id.0)
        .bind(ctx.user_id.to_string())
        .bind(ctx.user_id.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(AppError::from)?;
        tx.commit().await.map_err(AppError::from)?;
        Ok(Viewer {
            csrf: state.csrf.for_session(ctx.session_id),
            handle: handle.unwrap_or_else(|| "you".into()),
            unread,
            ctx,
        })
    }
}
