//! Read-your-writes for read replicas (src/replicas.rs): a caller's write marks the user
//! in Redis for `RYW_WINDOW`; the caller's reads meanwhile need a replica as fresh as
//! the primary (`Fresh(true)`). Only with `DATABASE_READ_URL` set; otherwise this layer
//! does nothing.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

use crate::auth::credentials::{Bearer, Credentials};
use crate::error::AppError;
use crate::replicas::RYW_WINDOW;
use crate::state::AppState;

/// Whether this request's reads must be as fresh as the primary (the caller wrote
/// within `RYW_WINDOW`, or that cannot be known because Redis is down).
#[derive(Debug, Clone, Copy, Default)]
pub struct Fresh(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for Fresh {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        Ok(parts.extensions.get::<Fresh>().copied().unwrap_or_default())
    }
}

fn mark_key(prefix: &str, user: Uuid) -> String {
    format!("{prefix}wrote:{user}")
}

pub async fn read_your_writes(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let user = request
        .extensions()
        .get::<Credentials>()
        .and_then(|c| c.0.as_ref().ok())
        // A key is its own principal: its writes mark it as a person's mark them.
        .map(|bearer| match bearer {
            Bearer::Token(claims) => claims.sub,
            Bearer::Key(grant) => grant.key_id,
            Bearer::Browser(grant) => grant.user_id,
        });
    let (true, Some(user)) = (state.reads.enabled(), user) else {
        return next.run(request).await;
    };
    let key = mark_key(&state.config.redis_key_prefix, user);
    let mut redis = state.redis_conn.clone();
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        let fresh = redis::cmd("EXISTS")
            .arg(&key)
            .query_async::<bool>(&mut redis)
            .await
            // Unknown: as fresh as the primary, never staler.
            .unwrap_or(true);
        request.extensions_mut().insert(Fresh(fresh));
        return next.run(request).await;
    }
    let response = next.run(request).await;
    // Marked before the answer leaves: the caller's next read already sees the mark.
    // Every attempted write counts (a failed one may have committed part of its work).
    if let Err(err) = redis::cmd("SET")
        .arg(&key)
        .arg(1)
        .arg("EX")
        .arg(RYW_WINDOW.as_secs())
        .query_async::<()>(&mut redis)
        .await
    {
        tracing::warn!(error = %err, "could not mark a write for read-your-writes");
    }
    response
}
