//! The bearer credential of a request, verified once. The `verify` layer (outermost of
//! the API's authentication: before rate limiting, which budgets by principal) checks
//! the `Authorization: Bearer` value and puts the outcome into the request's extensions.
//! Two kinds, told apart by the `chk_` prefix:
//! - an access token (JWT): signature, algorithm, expiry, purpose — no I/O; whether its
//!   session is alive is looked up later, once (`context.rs`);
//! - an API key (`chk_…`, `api_keys.rs`): its whole standing (secret, revocation,
//!   expiry, creator) is read from the log here, in one query, since nothing about a
//!   key can be checked without it.
//!
//! - without an `Authorization` header, the web console's session cookie
//!   (`browser.rs`): its standing is read from the log here, like a key's, and whether
//!   the request carries the session's CSRF token (`X-CSRF-Token`) is noted with it.
//!
//! Everything after reads the outcome from there: the rate limiter's budget, the
//! idempotency layer and the `TenantContext` extractor, and the event stream (which
//! also takes the token from `?access_token=`, on that route only).

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;

use super::OpaqueToken;
use super::TokenKeys;
use super::api_keys::{self, KeyGrant, PresentedKey};
use super::browser::{self, BrowserGrant, CsrfKey};
use super::tokens::AccessClaims;
use crate::error::{AppError, AuthFailure};

/// What a verified bearer value is.
#[derive(Debug, Clone)]
pub enum Bearer {
    /// An access token whose signature and expiry verified (its session not yet looked at).
    Token(AccessClaims),
    /// An API key in good standing.
    Key(KeyGrant),
    /// The web console's session cookie, in good standing (`browser.rs`).
    Browser(BrowserGrant),
}

/// A request's bearer value after verification: who it is, or why it is nobody.
#[derive(Debug, Clone)]
pub struct Credentials(pub Result<Bearer, AuthFailure>);

/// What the layer needs to verify both kinds.
#[derive(Clone)]
pub struct Verifier {
    pub tokens: TokenKeys,
    pub db: PgPool,
    /// API keys' standing, remembered under their tenant's epoch (`standing.rs`).
    pub standings: Option<super::Standings>,
    /// Checks the CSRF token of cookie-authenticated requests.
    pub csrf: CsrfKey,
}

/// Static files never need a caller: their requests skip the cookie's lookup.
const STATIC_PREFIX: &str = "/assets/";

/// The `Bearer` value of the header; no header is `missing_token`, another scheme or
/// non-ASCII text `malformed_token`.
fn bearer_value(header: Option<&HeaderValue>) -> Result<&str, AuthFailure> {
    let header = header.ok_or(AuthFailure::MissingToken)?;
    header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(AuthFailure::MalformedToken)
}

impl Credentials {
    /// The `Authorization` header verified without I/O: access tokens only. An API key
    /// needs the log ([`Credentials::verify`]); here it is `api_key_invalid`.
    pub fn from_headers(headers: &HeaderMap, keys: &TokenKeys) -> Self {
        Self::from_header(headers.get(AUTHORIZATION), keys)
    }

    /// See [`Credentials::from_headers`].
    pub fn from_header(header: Option<&HeaderValue>, keys: &TokenKeys) -> Self {
        Self(bearer_value(header).and_then(|value| {
            if PresentedKey::looks_like_key(value) {
                Err(AuthFailure::ApiKeyInvalid)
            } else {
                keys.verify_access(value).map(Bearer::Token)
            }
        }))
    }

    /// The header verified, API keys included (their standing read from the log).
    pub async fn verify(
        header: Option<&HeaderValue>,
        verifier: &Verifier,
    ) -> Result<Self, sqlx::Error> {
        let value = match bearer_value(header) {
            Ok(value) if PresentedKey::looks_like_key(value) => value,
            _ => return Ok(Self::from_header(header, &verifier.tokens)),
        };
        let Some(key) = PresentedKey::parse(value) else {
            return Ok(Self(Err(AuthFailure::ApiKeyInvalid)));
        };
        let now = chrono::Utc::now().timestamp();
        let standing = match &verifier.standings {
            Some(standings) => standings.key(&verifier.db, &key, now).await?,
            None => api_keys::standing(&verifier.db, &key, now).await?,
        };
        if let Ok(grant) = standing
            && grant.needs_touch(now)
        {
            if let Some(standings) = &verifier.standings {
                standings.key_touched(&grant, now);
            }
            // Off the request path: the answer does not wait for the bookkeeping.
            let db = verifier.db.clone();
            tokio::spawn(async move {
                if let Err(err) = api_keys::touch(&db, &grant).await {
                    tracing::debug!(error = %err, "could not record the API key's last use");
                }
            });
        }
        Ok(Self(standing.map(Bearer::Key)))
    }

    /// The console's session cookie verified against the log, with whether the request
    /// carries the session's CSRF token in its `X-CSRF-Token` header. `None` without a
    /// cookie.
    pub async fn from_cookie(
        headers: &HeaderMap,
        verifier: &Verifier,
    ) -> Result<Option<Self>, sqlx::Error> {
        let Some(value) = browser::cookie(headers, browser::SESSION_COOKIE) else {
            return Ok(None);
        };
        let Some(token) = OpaqueToken::parse(&value) else {
            return Ok(Some(Self(Err(AuthFailure::SessionRevoked))));
        };
        let now = chrono::Utc::now().timestamp();
        let standing = browser::standing(&verifier.db, &token, now).await?;
        Ok(Some(Self(standing.map(|mut grant| {
            grant.csrf_proven = headers
                .get(browser::CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| verifier.csrf.verify_session(grant.session_id, t));
            Bearer::Browser(grant)
        }))))
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

    /// The verified access token's claims, if the bearer is one.
    pub fn claims(&self) -> Option<&AccessClaims> {
        match &self.0 {
            Ok(Bearer::Token(claims)) => Some(claims),
            _ => None,
        }
    }

    /// The verified bearer, if any.
    pub fn bearer(&self) -> Option<&Bearer> {
        self.0.as_ref().ok()
    }
}

/// The layer: verifies the request's bearer value once, for everything after it. A
/// database that cannot answer for a key fails the request (503), as it would later.
pub async fn verify(
    State(verifier): State<Verifier>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = request.headers().get(AUTHORIZATION).cloned();
    let by_cookie = header.is_none()
        && !request.uri().path().starts_with(STATIC_PREFIX)
        && browser::has_session_cookie(request.headers());
    let credentials = if by_cookie {
        Credentials::from_cookie(request.headers(), &verifier)
            .await
            .map(|found| found.expect("the cookie is there"))
    } else {
        Credentials::verify(header.as_ref(), &verifier).await
    };
    let credentials = match credentials {
        Ok(credentials) => credentials,
        Err(err) => return AppError::from(err).into_response(),
    };
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
        let claims = Credentials::from_headers(&headers, &keys);
        let claims = claims.claims().unwrap();
        assert_eq!(
            (claims.sub, claims.tenant, claims.sid),
            (user, tenant, session)
        );
        let other = TokenKeys::new(&"cd".repeat(32));
        assert_eq!(
            Credentials::from_headers(&headers, &other).0.unwrap_err(),
            AuthFailure::BadSignature
        );
        // A key cannot be verified without the log: never taken for a JWT.
        let key = PresentedKey::generate(uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        headers.insert(
            AUTHORIZATION,
            format!("Bearer {}", key.expose()).parse().unwrap(),
        );
        assert_eq!(
            Credentials::from_headers(&headers, &keys).0.unwrap_err(),
            AuthFailure::ApiKeyInvalid
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
            .layer(axum::middleware::from_fn_with_state(
                Verifier {
                    tokens: keys.clone(),
                    db: sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap(),
                    standings: None,
                    csrf: CsrfKey::new("secret"),
                },
                verify,
            ));
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
