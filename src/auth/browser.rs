//! Browser sessions: how the web console (src/console) signs a person in with a cookie
//! instead of an `Authorization` header, and the CSRF tokens that make a cookie safe.
//!
//! **The session is an ordinary session.** Signing in through the console runs the same
//! login use case as `POST /v1/auth/login` (a `SessionStarted` event, visible under
//! Devices, revocable from any device). The cookie holds that session's refresh token,
//! `<tenant>.<session>.<secret>`, which the console never rotates: only its SHA-256 is in
//! the log, and every request compares it (constant time) with the session's current
//! hash, so revoking the session, banning the user or demoting them bites on the very
//! next request, exactly as for a bearer token. The cookie is `HttpOnly; Secure;
//! SameSite=Strict; Path=/` and lives as long as the refresh token (7 days from sign-in).
//!
//! **CSRF.** A cookie is sent by the browser whoever wrote the page, so every request
//! that changes state and is authenticated by the cookie must also carry a token that
//! only our own pages know: HMAC-SHA256 (RustCrypto `hmac`) over the session id, keyed
//! by 32 bytes that HKDF-SHA256 derives from `JWT_SECRET` (a key of its own; no new
//! secret to configure). The token arrives as the `X-CSRF-Token` header (htmx, the tus
//! client, `fetch`) or as the `csrf_token` form field (plain forms; the console checks
//! those itself, src/console/csrf.rs). The sign-in and sign-up forms have no session yet:
//! their token is bound to a random pre-session cookie instead, so a foreign page cannot
//! sign a victim into the attacker's account either.

use axum::http::{HeaderMap, HeaderValue, Method, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::OpaqueToken;
use super::context::session_standing;
use crate::aggregates::Role;
use crate::error::AuthFailure;

/// The session cookie: the session's refresh token.
pub const SESSION_COOKIE: &str = "chronicle_session";
/// A random nonce the sign-in and sign-up forms' CSRF tokens are bound to.
pub const PRESESSION_COOKIE: &str = "chronicle_presession";
/// Where scripts send the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Where plain forms send it.
pub const CSRF_FIELD: &str = "csrf_token";

const HKDF_SALT: &[u8] = b"chronicle console";
const HKDF_INFO: &[u8] = b"csrf token v1";

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// A `Set-Cookie` value with the attributes every console cookie has; `max_age` 0
/// deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={max_age}"
    ))
    .expect("cookie values are ASCII")
}

/// Whether the request has the session cookie at all (well-formed or not).
pub fn has_session_cookie(headers: &HeaderMap) -> bool {
    cookie(headers, SESSION_COOKIE).is_some()
}

/// Whether `method` may change state (and so needs a CSRF token with a cookie).
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A signed-in browser: the person and session the cookie stands for, as the log has
/// them right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrowserGrant {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
    /// Unix time the cookie (the refresh token) expires.
    pub expires_at: i64,
    /// Whether this request proved it comes from our pages (a valid CSRF token). Only
    /// then may it change state.
    pub csrf_proven: bool,
}

/// The cookie's standing, read from the log: the session's current refresh hash must
/// be the cookie's and unexpired, then the same checks as for a bearer token (session
/// alive and started by its user, user not banned or erased, current role). Any
/// failure is `session_revoked`: the cookie no longer signs anyone in.
pub async fn standing(
    pool: &PgPool,
    token: &OpaqueToken,
    now: i64,
) -> Result<Result<BrowserGrant, AuthFailure>, sqlx::Error> {
    let row: Option<(Option<String>, Option<String>, Option<i64>)> = sqlx::query_as(
        r#"
SELECT
  (SELECT payload->'SessionStarted'->>'user_id' FROM events
    WHERE tenant_id = $1 AND aggregate_type = 'session' AND aggregate_id = $2
      AND event_type = 'SessionStarted'),
  latest.hash, latest.expires_at
FROM (SELECT coalesce(payload->'SessionRefreshed', payload->'SessionStarted')->>'refresh_hash' AS hash,
             (coalesce(payload->'SessionRefreshed', payload->'SessionStarted')->>'refresh_expires_at')::bigint AS expires_at
        FROM events
       WHERE tenant_id = $1 AND aggregate_type = 'session' AND aggregate_id = $2
         AND event_type IN ('SessionStarted', 'SessionRefreshed')
       ORDER BY sequence DESC LIMIT 1) AS latest"#,
    )
    .bind(token.tenant_id)
    .bind(token.id.to_string())
    .fetch_optional(pool)
    .await?;
    let Some((Some(user), Some(hash), Some(expires_at))) = row else {
        return Ok(Err(AuthFailure::SessionRevoked));
    };
    let matches: bool = hash.as_bytes().ct_eq(token.hash().as_bytes()).into();
    let Ok(user) = user.parse::<Uuid>() else {
        return Ok(Err(AuthFailure::SessionRevoked));
    };
    if !matches || now > expires_at {
        return Ok(Err(AuthFailure::SessionRevoked));
    }
    let role = session_standing(pool, token.tenant_id, token.id, user).await?;
    Ok(role.map(|role| BrowserGrant {
        tenant_id: token.tenant_id,
        user_id: user,
        session_id: token.id,
        role,
        expires_at,
        csrf_proven: false,
    }))
}

/// The key CSRF tokens are made with, derived from the configured `JWT_SECRET`.
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    pub fn new(secret: &str) -> Self {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(HKDF_SALT), secret.as_bytes())
            .expand(HKDF_INFO, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self(key)
    }

    fn mac(&self, purpose: &[u8], subject: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(purpose);
        mac.update(b"\0");
        mac.update(subject);
        mac
    }

    /// The token of a signed-in session.
    pub fn for_session(&self, session: Uuid) -> String {
        let tag = self.mac(b"session", session.as_bytes()).finalize();
        URL_SAFE_NO_PAD.encode(tag.into_bytes())
    }

    /// Whether `token` is the session's (constant time).
    pub fn verify_session(&self, session: Uuid, token: &str) -> bool {
        Self::verify(self.mac(b"session", session.as_bytes()), token)
    }

    /// The token of the sign-in and sign-up forms, bound to the pre-session nonce.
    pub fn for_presession(&self, nonce: &str) -> String {
        let tag = self.mac(b"presession", nonce.as_bytes()).finalize();
        URL_SAFE_NO_PAD.encode(tag.into_bytes())
    }

    pub fn verify_presession(&self, nonce: &str, token: &str) -> bool {
        Self::verify(self.mac(b"presession", nonce.as_bytes()), token)
    }

    fn verify(mac: Hmac<Sha256>, token: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(token.trim())
            .is_ok_and(|tag| mac.verify_slice(&tag).is_ok())
    }
}

/// A fresh pre-session nonce (256 random bits, base64url).
pub fn new_nonce() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_bound_to_its_session_and_key() {
        let key = CsrfKey::new(&"ab".repeat(32));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let token = key.for_session(a);
        assert!(key.verify_session(a, &token));
        assert!(!key.verify_session(b, &token), "another session's token");
        assert!(!CsrfKey::new(&"cd".repeat(32)).verify_session(a, &token));
        // A pre-session token is not a session token, even over the same bytes.
        let nonce = a.to_string();
        assert!(!key.verify_session(a, &key.for_presession(&nonce)));
        assert!(key.verify_presession(&nonce, &key.for_presession(&nonce)));
        for bad in ["", "x", "!!!", &token[..10]] {
            assert!(!key.verify_session(a, bad), "{bad}");
        }
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; chronicle_session_x=2; chronicle_session=3"
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("3"));
        assert_eq!(cookie(&headers, "b"), None);
        let set = set_cookie(SESSION_COOKIE, "v", 60);
        let set = set.to_str().unwrap();
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
    }
}
