//! The bearer token of a request, verified once. The `verify` layer (outermost of the
//! API's authentication: before rate limiting, which budgets by principal) checks the
//! `Authorization: Bearer` access token — signature, algorithm, expiry, purpose; no I/O
//! — and puts the outcome into the request's extensions. Everything after reads it
//! from there: the rate limiter's budget, the idempotency layer and the `TenantContext`
//! extractor (which adds the session standing, once: `context.rs`), and the event
//! stream (which also takes the token from `?access_token=`, on that route only).

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use super::TokenKeys;
use super::tokens::AccessClaims;
use crate::error::AuthFailure;

/// A request's bearer token after verification: its claims, or why it has none.
#[derive(Debug, Clone)]
pub struct Credentials(pub Result<AccessClaims, AuthFailure>);

impl Credentials {
    /// The `Authorization` header's access token, verified.
    pub fn from_headers(headers: &HeaderMap, keys: &TokenKeys) -> Self {
        Self::from_header(headers.get(AUTHORIZATION), keys)
    }

    /// `Bearer <token>` verified; no header is `missing_token`, another scheme or
    /// non-ASCII text `malformed_token`.
    pub fn from_header(header: Option<&HeaderValue>, keys: &TokenKeys) -> Self {
        let Some(header) = header else {
            return Self(Err(AuthFailure::MissingToken));
        };
        let token = header.to_str().ok().and_then(|v| v.strip_prefix("Bearer "));
        Self(match token {
            Some(token) => keys.verify_access(token.trim()),
            None => Err(AuthFailure::MalformedToken),
        })
    }

    /// What the `verify` layer found in this request; verified here (and kept) only if
    /// the request did not pass the layer, as in a router built without it.
    pub fn of(parts: &mut Parts, keys: &TokenKeys) -> Self {
        if let Some(found) = parts.extensions.get::<Credentials>() {
            return found.clone();
        }
        let found = Self::from_headers(&parts.headers, keys);
        parts.extensions.insert(found.clone());
        found
    }

    /// The verified claims, if the token verified.
    pub fn claims(&self) -> Option<&AccessClaims> {
        self.0.as_ref().ok()
    }
}

/// The layer: verifies the request's bearer token once, for everything after it.
pub async fn verify(State(keys): State<TokenKeys>, mut request: Request, next: Next) -> Response {
    let credentials = Credentials::from_headers(request.headers(), &keys);
    request.extensions_mut().insert(credentials);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregates::Role;
    use uuid::Uuid;

    #[test]
    fn the_header_is_parsed_as_the_extractor_always_did() {
        let keys = TokenKeys::new(&"ab".repeat(32));
        let now = chrono::Utc::now().timestamp();
        let (user, tenant, session) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let token = keys
            .issue_access(user, tenant, Role::User, session, now)
            .unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(
            Credentials::from_headers(&headers, &keys).0.unwrap_err(),
            AuthFailure::MissingToken
        );
        headers.insert(AUTHORIZATION, format!("Basic {token}").parse().unwrap());
        assert_eq!(
            Credentials::from_headers(&headers, &keys).0.unwrap_err(),
            AuthFailure::MalformedToken
        );
        headers.insert(AUTHORIZATION, format!("Bearer  {token} ").parse().unwrap());
        let claims = Credentials::from_headers(&headers, &keys).0.unwrap();
        assert_eq!(
            (claims.sub, claims.tenant, claims.sid),
            (user, tenant, session)
        );
        let other = TokenKeys::new(&"cd".repeat(32));
        assert_eq!(
            Credentials::from_headers(&headers, &other).0.unwrap_err(),
            AuthFailure::BadSignature
        );
    }

    /// The layer verifies, and what comes after reads its outcome instead of verifying
    /// again: `of` answers from the extension even with keys that would refuse the token.
    #[tokio::test]
    async fn the_layer_verifies_once_for_everything_after_it() {
        use axum::Router;
        use axum::body::Body;
        use axum::routing::get;
        use tower::ServiceExt;

        let keys = TokenKeys::new(&"ab".repeat(32));
        let other = TokenKeys::new(&"cd".repeat(32));
        let user = Uuid::now_v7();
        let now = chrono::Utc::now().timestamp();
        let token = keys
            .issue_access(user, Uuid::now_v7(), Role::User, Uuid::now_v7(), now)
            .unwrap();
        let app = Router::new()
            .route(
                "/",
                get(move |request: Request| async move {
                    let (mut parts, _) = request.into_parts();
                    // Keys that would refuse the token: only the layer's result counts.
                    let seen = Credentials::of(&mut parts, &other);
                    seen.claims().map(|c| c.sub.to_string()).unwrap_or_default()
                }),
            )
            .layer(axum::middleware::from_fn_with_state(keys.clone(), verify));
        let request = Request::builder()
            .uri("/")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(body, user.to_string());
    }
}
