//! Access tokens (JWT, HS256 pinned, 15 minutes) and refresh tokens (opaque 256-bit
//! secrets, stored only as SHA-256). A token that fails any check is an error with its
//! own code — never "anonymous".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::aggregates::Role;
use crate::error::AuthFailure;

pub const ACCESS_TTL_SECS: i64 = 15 * 60;
pub const REFRESH_TTL_SECS: i64 = 7 * 24 * 60 * 60;
const ACCESS_PURPOSE: &str = "access";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub tenant: Uuid,
    pub role: Role,
    /// Session id: lets every request check the session is still alive.
    pub sid: Uuid,
    pub purpose: String,
    pub iat: i64,
    pub exp: i64,
}

/// Signing and verification keys, derived from `JWT_SECRET` (held in AppState). Shared:
/// the credentials layer's state is cloned for every request, and each key holds its
/// bytes on the heap, so a clone of the keys themselves was two allocations per request.
#[derive(Clone)]
pub struct TokenKeys(Arc<Keys>);

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    verified: Verified,
}

/// Access tokens this instance verified, with their claims. A client sends the same
/// token with every request for its 15 minutes, and verifying it — the header read
/// apart, two base64 decodings, the HMAC, the claims parsed twice by the library — was
/// the largest cost of an authenticated read after the HTTP stack and Redis (~7 % of the
/// server's CPU under `bench reads`). A token is the same bytes each time, and the same
/// bytes verify the same way under the same key, so its claims can be remembered: by the
/// exact token, only after it verified, and handed out only while it is unexpired by any
/// reading (`now < exp`; at `exp` itself it is verified again, which decides). Nothing
/// the token cannot say is cached here: whether its session or user still stands is
/// checked per request elsewhere (src/auth/standing.rs). Hand-written: a map and a lock;
/// the crate deps have no bounded cache, and this one needs no eviction order — when full
/// it is emptied, and the next requests verify again.
#[derive(Default)]
struct Verified(Mutex<HashMap<Box<str>, AccessClaims>>);

/// Tokens remembered at most (~400 bytes each with their claims).
const VERIFIED_MAX: usize = 10_000;

impl Verified {
    fn get(&self, token: &str, now: i64) -> Option<AccessClaims> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(token).filter(|c| now < c.exp).cloned()
    }

    fn put(&self, token: &str, claims: &AccessClaims) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= VERIFIED_MAX {
            map.clear();
        }
        map.insert(token.into(), claims.clone());
    }
}

impl TokenKeys {
    pub fn new(secret_hex: &str) -> Self {
        // The configured secret is hex; sign with the bytes it encodes.
        let bytes = hex::decode(secret_hex).unwrap_or_else(|_| secret_hex.as_bytes().to_vec());
        Self(Arc::new(Keys {
            encoding: EncodingKey::from_secret(&bytes),
            decoding: DecodingKey::from_secret(&bytes),
            verified: Verified::default(),
        }))
    }

    pub fn issue_access(
        &self,
        user: Uuid,
        tenant: Uuid,
        role: Role,
        session: Uuid,
        now: i64,
    ) -> anyhow::Result<String> {
        let claims = AccessClaims {
            sub: user,
            tenant,
            role,
            sid: session,
            purpose: ACCESS_PURPOSE.into(),
            iat: now,
            exp: now + ACCESS_TTL_SECS,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.0.encoding,
        )?)
    }

    /// Verifies an access token strictly: HS256 only, `exp` required (no leeway),
    /// purpose `access`.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, AuthFailure> {
        let now = chrono::Utc::now().timestamp();
        if let Some(claims) = self.0.verified.get(token, now) {
            return Ok(claims);
        }
        let claims = self.verify_access_anew(token)?;
        self.0.verified.put(token, &claims);
        Ok(claims)
    }

    fn verify_access_anew(&self, token: &str) -> Result<AccessClaims, AuthFailure> {
        // Read the header ourselves first, so `alg: none` (which the JWT library cannot
        // even parse) and every other algorithm get their own code.
        if header_algorithm(token).ok_or(AuthFailure::MalformedToken)? != "HS256" {
            return Err(AuthFailure::WrongAlgorithm);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.0.decoding, &validation)
            .map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthFailure::Expired,
                    ErrorKind::InvalidSignature => AuthFailure::BadSignature,
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        AuthFailure::WrongAlgorithm
                    }
                    // Missing claims or a different claim shape: a token for another use.
                    ErrorKind::Json(_) | ErrorKind::MissingRequiredClaim(_) => {
                        AuthFailure::WrongPurpose
                    }
                    _ => AuthFailure::MalformedToken,
                }
            })?;
        if data.claims.purpose != ACCESS_PURPOSE {
            return Err(AuthFailure::WrongPurpose);
        }
        Ok(data.claims)
    }

    /// Signs arbitrary claims; for tests that forge tokens of other purposes.
    pub fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.0.encoding,
        )?)
    }
}

/// The `alg` of a compact JWT's header, if the token has that shape at all.
fn header_algorithm(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (header, _payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    json.get("alg")?.as_str().map(str::to_string)
}

/// An opaque token as the client holds it: `<tenant id>.<stream id>.<43 chars of
/// base64url>` — a refresh token (stream = session) or an invitation (stream id =
/// invitation id). The ids say what to check; only the secret's hash is stored.
pub struct OpaqueToken {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub secret: String,
}

impl OpaqueToken {
    pub fn generate(tenant_id: Uuid, id: Uuid) -> Self {
        let bytes: [u8; 32] = rand::random();
        Self {
            tenant_id,
            id,
            secret: URL_SAFE_NO_PAD.encode(bytes),
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split('.');
        let tenant_id = Uuid::parse_str(parts.next()?).ok()?;
        let id = Uuid::parse_str(parts.next()?).ok()?;
        let secret = parts.next()?;
        if parts.next().is_some() || URL_SAFE_NO_PAD.decode(secret).ok()?.len() != 32 {
            return None;
        }
        Some(Self {
            tenant_id,
            id,
            secret: secret.to_string(),
        })
    }

    /// The form handed to the client.
    pub fn to_cookie_value(&self) -> String {
        format!("{}.{}.{}", self.tenant_id, self.id, self.secret)
    }

    /// What is stored: the SHA-256 of the secret (a 256-bit secret needs no slow hash).
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&"ab".repeat(32))
    }

    #[test]
    fn a_fresh_token_verifies() {
        let now = chrono::Utc::now().timestamp();
        let (u, t, s) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let token = keys().issue_access(u, t, Role::Admin, s, now).unwrap();
        let claims = keys().verify_access(&token).unwrap();
        assert_eq!(
            (claims.sub, claims.tenant, claims.sid, claims.role),
            (u, t, s, Role::Admin)
        );
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn a_remembered_token_is_served_only_while_unexpired_and_only_for_its_exact_bytes() {
        let k = keys();
        let now = chrono::Utc::now().timestamp();
        let (u, t, s) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let token = k.issue_access(u, t, Role::User, s, now).unwrap();
        let claims = k.verify_access(&token).unwrap();
        assert_eq!(
            k.0.verified.get(&token, now),
            Some(claims.clone()),
            "remembered"
        );
        assert_eq!(
            k.0.verified.get(&token, claims.exp - 1),
            Some(claims.clone())
        );
        assert_eq!(
            k.0.verified.get(&token, claims.exp),
            None,
            "verified anew at exp"
        );

        // One character of the signature changed: not the remembered token. The first
        // one, whose six bits are all data: the last of a 32-byte signature's 43 carries
        // four, and changing it could make the encoding invalid (`MalformedToken`) instead
        // of the signature wrong — one token in 16, when it ended in `A`.
        let at = token.rfind('.').unwrap() + 1;
        let first = if token.as_bytes()[at] == b'A' {
            "B"
        } else {
            "A"
        };
        let mut forged = token.clone();
        forged.replace_range(at..at + 1, first);
        assert_eq!(k.verify_access(&forged), Err(AuthFailure::BadSignature));
        // Another secret remembers nothing of this one's tokens.
        let other = TokenKeys::new(&"cd".repeat(32));
        assert_eq!(other.verify_access(&token), Err(AuthFailure::BadSignature));
        // Refused tokens are not remembered.
        assert_eq!(k.0.verified.get(&forged, now), None);
    }

    #[test]
    fn an_expired_token_is_refused_though_it_was_remembered() {
        let k = keys();
        let past = chrono::Utc::now().timestamp() - ACCESS_TTL_SECS - 10;
        let (u, t, s) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let token = k.issue_access(u, t, Role::User, s, past).unwrap();
        // As if it had been verified while it was fresh.
        let claims_then = AccessClaims {
            sub: u,
            tenant: t,
            role: Role::User,
            sid: s,
            purpose: ACCESS_PURPOSE.into(),
            iat: past,
            exp: past + ACCESS_TTL_SECS,
        };
        k.0.verified.put(&token, &claims_then);
        assert_eq!(k.verify_access(&token), Err(AuthFailure::Expired));
    }

    #[test]
    fn the_remembered_tokens_are_bounded() {
        let v = Verified::default();
        let claims = |exp| AccessClaims {
            sub: Uuid::nil(),
            tenant: Uuid::nil(),
            role: Role::User,
            sid: Uuid::nil(),
            purpose: ACCESS_PURPOSE.into(),
            iat: 0,
            exp,
        };
        for i in 0..=VERIFIED_MAX {
            v.put(&format!("t{i}"), &claims(10));
        }
        assert!(v.0.lock().unwrap().len() <= VERIFIED_MAX);
        assert!(
            v.get(&format!("t{VERIFIED_MAX}"), 0).is_some(),
            "the newest is kept"
        );
    }

    #[test]
    fn refresh_tokens_round_trip_and_reject_garbage() {
        let t = OpaqueToken::generate(Uuid::now_v7(), Uuid::now_v7());
        let parsed = OpaqueToken::parse(&t.to_cookie_value()).unwrap();
        assert_eq!(parsed.hash(), t.hash());
        assert_eq!(t.hash().len(), 64);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        for bad in [
            "",
            "x",
            "not-a-uuid.abc",
            &format!("{a}.{b}.short"),
            &format!("{a}.{b}.{}.x", t.secret),
        ] {
            assert!(OpaqueToken::parse(bad).is_none(), "{bad}");
        }
    }
}
