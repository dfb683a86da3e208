//! Access tokens (JWT, HS256 pinned, 15 minutes) and refresh tokens (opaque 256-bit
//! secrets, stored only as SHA-256). A token that fails any check is an error with its
//! own code — never "anonymous".

use std::sync::Arc;

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
}

impl TokenKeys {
    pub fn new(secret_hex: &str) -> Self {
        // The configured secret is hex; sign with the bytes it encodes.
        let bytes = hex::decode(secret_hex).unwrap_or_else(|_| secret_hex.as_bytes().to_vec());
        Self(Arc::new(Keys {
            encoding: EncodingKey::from_secret(&bytes),
            decoding: DecodingKey::from_secret(&bytes),
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
