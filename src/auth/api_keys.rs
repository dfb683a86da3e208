//! API keys as the client holds them, and their standing on each request.
//!
//! **Format:** `chk_<secret>.<ids>`: `chk_` says "Chronicle key" (to the credentials
//! layer, which tells a key from a JWT by it, and to secret scanners); `<secret>` is 32
//! random bytes in base64url without padding (43 characters, 256 bits); `<ids>` is the
//! tenant id and the key id (16 bytes each) in base64url (43 characters), which say
//! which stream to check without searching for the hash. The list shows the first 12
//! characters (`chk_` and 8 of the secret) to recognise a key by.
//!
//! **Storage:** only the SHA-256 of the secret, in the `ApiKeyCreated` event, as for
//! refresh tokens. A slow password hash (Argon2id) protects *low-entropy* secrets from
//! guessing after a leak of the hashes; a 256-bit random secret cannot be guessed either
//! way, and the hash is checked on every request, where Argon2id's 19 MiB and tens of
//! milliseconds would make each API call a denial-of-service lever. A keyed hash (HMAC
//! with a server key) would add nothing at 256 bits and tie every key to a server secret
//! that, outside production, is random per process (docs/api-keys.md).
//!
//! **Standing:** read from the log on every request (`standing`), like a session's:
//! the key exists and the secret matches, it is not revoked or expired, and its creator
//! is still an unbanned, unerased admin. So revocation, expiry and the creator's removal
//! bite on the next request.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::scopes::{Scope, Scopes};
use crate::aggregates::Role;
use crate::error::AuthFailure;

/// What every key starts with.
pub const KEY_PREFIX: &str = "chk_";
const SECRET_CHARS: usize = 43;
/// Characters of a key shown in listings: `chk_` and 8 of the secret (48 bits).
pub const DISPLAY_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;

/// A key as generated or presented: which tenant and key it claims, and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedKey {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    secret: String,
}

impl std::fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret, even in a debug log.
        f.debug_struct("PresentedKey")
            .field("tenant_id", &self.tenant_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl PresentedKey {
    /// A new key of `tenant` with id `key_id` and a fresh 256-bit secret.
    pub fn generate(tenant_id: Uuid, key_id: Uuid) -> Self {
        let bytes: [u8; 32] = rand::random();
        Self {
            tenant_id,
            key_id,
            secret: URL_SAFE_NO_PAD.encode(bytes),
        }
    }

    /// Whether a bearer value is meant as an API key (rather than a JWT).
    pub fn looks_like_key(bearer: &str) -> bool {
        bearer.starts_with(KEY_PREFIX)
    }

    /// Parses `chk_<secret>.<ids>`; anything else is `None`.
    pub fn parse(value: &str) -> Option<Self> {
        let rest = value.strip_prefix(KEY_PREFIX)?;
        let (secret, ids) = rest.split_once('.')?;
        if secret.len() != SECRET_CHARS || URL_SAFE_NO_PAD.decode(secret).ok()?.len() != 32 {
            return None;
        }
        let ids: [u8; 32] = URL_SAFE_NO_PAD.decode(ids).ok()?.try_into().ok()?;
        let (tenant, key) = ids.split_at(16);
        Some(Self {
            tenant_id: Uuid::from_slice(tenant).ok()?,
            key_id: Uuid::from_slice(key).ok()?,
            secret: secret.to_string(),
        })
    }

    /// The form handed to the client, once.
    pub fn expose(&self) -> String {
        let mut ids = [0u8; 32];
        ids[..16].copy_from_slice(self.tenant_id.as_bytes());
        ids[16..].copy_from_slice(self.key_id.as_bytes());
        format!(
            "{KEY_PREFIX}{}.{}",
            self.secret,
            URL_SAFE_NO_PAD.encode(ids)
        )
    }

    /// The first characters, shown in listings.
    pub fn display_prefix(&self) -> String {
        self.expose()[..DISPLAY_PREFIX_LEN].to_string()
    }

    /// What is stored: the hex SHA-256 of the secret.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }
}

/// A key that passed every check: the caller it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGrant {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub role: Role,
    pub scopes: Scopes,
    pub expires_at: Option<i64>,
    /// When the key was last used before this request (unix seconds), if ever.
    pub last_used_at: Option<i64>,
}

/// How stale a key's recorded last use may get before a request records it again.
pub const TOUCH_EVERY_SECS: i64 = 60;

impl KeyGrant {
    /// Whether this request should record the key's use (`touch`).
    pub fn needs_touch(&self, now: i64) -> bool {
        self.last_used_at
            .is_none_or(|at| now - at >= TOUCH_EVERY_SECS)
    }
}

/// One row: the key's creation (secret hash, role, scopes, expiry, creator), whether it
/// was revoked, and its creator's current standing.
type StandingRow = (
    String,
    String,
    Option<sqlx::types::Json<Vec<Scope>>>,
    Option<i64>,
    bool,
    bool,
    Option<String>,
    Option<i64>,
);

/// The standing of `key` now, from the events themselves (one indexed query, like a
/// session's): `Ok(Err(_))` says why it is refused.
pub async fn standing(
    pool: &PgPool,
    key: &PresentedKey,
    now: i64,
) -> Result<Result<KeyGrant, AuthFailure>, sqlx::Error> {
    let row = fetch(pool, key.tenant_id, key.key_id).await?;
    Ok(judge(
        key.tenant_id,
        key.key_id,
        Some(&key.hash()),
        row,
        now,
    ))
}

/// Whether key `key_id` of `tenant`, already authenticated once, is still in good
/// standing (a long-lived stream asks again now and then).
pub async fn standing_by_id(
    pool: &PgPool,
    tenant: Uuid,
    key_id: Uuid,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let row = fetch(pool, tenant, key_id).await?;
    Ok(judge(tenant, key_id, None, row, now).is_ok())
}

async fn fetch(
    pool: &PgPool,
    tenant: Uuid,
    key_id: Uuid,
) -> Result<Option<StandingRow>, sqlx::Error> {
    sqlx::query_as(
        r#"
SELECT
  c.p->>'secret_hash',
  c.p->>'role',
  nullif((c.p->'scopes')::jsonb, 'null'::jsonb),
  (c.p->>'expires_at')::bigint,
  EXISTS (SELECT 1 FROM events
    WHERE tenant_id = $1 AND aggregate_type = 'api_key' AND aggregate_id = $2
      AND event_type = 'ApiKeyRevoked'),
  -- The creator is gone: banned (now) or erased.
  coalesce((SELECT event_type = 'UserBanned' FROM events
    WHERE tenant_id = $1 AND aggregate_type = 'user' AND aggregate_id = c.p->>'created_by'
      AND event_type IN ('UserBanned', 'UserUnbanned')
    ORDER BY sequence DESC LIMIT 1), false)
  OR EXISTS (SELECT 1 FROM events
    WHERE tenant_id = $1 AND aggregate_type = 'user' AND aggregate_id = c.p->>'created_by'
      AND event_type = 'UserErased'),
  (SELECT coalesce(payload->'RoleChanged'->>'role', payload->'UserRegistered'->>'role') FROM events
    WHERE tenant_id = $1 AND aggregate_type = 'user' AND aggregate_id = c.p->>'created_by'
      AND event_type IN ('UserRegistered', 'RoleChanged')
    ORDER BY sequence DESC LIMIT 1),
  (SELECT extract(epoch FROM last_used_at)::bigint FROM api_key_usage
    WHERE tenant_id = $1 AND key_id = $3)
FROM (SELECT payload->'ApiKeyCreated' AS p FROM events
       WHERE tenant_id = $1 AND aggregate_type = 'api_key' AND aggregate_id = $2
         AND event_type = 'ApiKeyCreated'
       LIMIT 1) c"#,
    )
    .bind(tenant)
    .bind(key_id.to_string())
    .bind(key_id)
    .fetch_optional(pool)
    .await
}

fn parse_role(text: &str) -> Option<Role> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

/// The rules, apart from the query: a wrong secret (`presented_hash`, when there is one
/// to check) says nothing about the key.
fn judge(
    tenant_id: Uuid,
    key_id: Uuid,
    presented_hash: Option<&str>,
    row: Option<StandingRow>,
    now: i64,
) -> Result<KeyGrant, AuthFailure> {
    let Some((hash, role, scopes, expires_at, revoked, creator_gone, creator_role, last_used_at)) =
        row
    else {
        return Err(AuthFailure::ApiKeyInvalid);
    };
    if presented_hash
        .is_some_and(|presented| !bool::from(presented.as_bytes().ct_eq(hash.as_bytes())))
    {
        return Err(AuthFailure::ApiKeyInvalid);
    }
    let role = parse_role(&role).ok_or(AuthFailure::ApiKeyInvalid)?;
    if revoked {
        return Err(AuthFailure::ApiKeyRevoked);
    }
    if expires_at.is_some_and(|at| now >= at) {
        return Err(AuthFailure::ApiKeyExpired);
    }
    // Only admins create keys: a key must not keep rights its creator lost.
    if creator_gone || creator_role.as_deref().and_then(parse_role) != Some(Role::Admin) {
        return Err(AuthFailure::ApiKeyCreatorRemoved);
    }
    Ok(KeyGrant {
        tenant_id,
        key_id,
        role,
        scopes: scopes.map_or(Scopes::UNRESTRICTED, |s| Scopes::only(s.0)),
        expires_at,
        last_used_at,
    })
}

/// Records that `key` was used now. Called at most about once a minute per key
/// (`KeyGrant::needs_touch`). Last use is operational data, not an event: the log would
/// grow by one event per request.
pub async fn touch(pool: &PgPool, key: &KeyGrant) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO api_key_usage (tenant_id, key_id, last_used_at) VALUES ($1, $2, now())
         ON CONFLICT (tenant_id, key_id) DO UPDATE SET last_used_at = excluded.last_used_at
         WHERE api_key_usage.last_used_at < excluded.last_used_at",
    )
    .bind(key.tenant_id)
    .bind(key.key_id)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_garbage_is_refused() {
        let key = PresentedKey::generate(Uuid::now_v7(), Uuid::now_v7());
        let text = key.expose();
        assert!(PresentedKey::looks_like_key(&text));
        assert_eq!(text.len(), 4 + 43 + 1 + 43);
        let parsed = PresentedKey::parse(&text).unwrap();
        assert_eq!(parsed, key);
        assert_eq!(parsed.hash().len(), 64);
        assert!(text.starts_with(&key.display_prefix()));
        assert!(
            !format!("{key:?}").contains(&key.secret),
            "Debug shows the secret"
        );
        for bad in [
            "",
            "chk_",
            "chk_abc.def",
            &text[..text.len() - 1],
            &format!("{text}A"),
            &text.replacen("chk_", "chx_", 1),
            &text.replacen('.', "_", 1),
        ] {
            assert!(PresentedKey::parse(bad).is_none(), "{bad}");
        }
    }

    fn row(hash: &str, revoked: bool, expires: Option<i64>, creator: &str) -> Option<StandingRow> {
        Some((
            hash.into(),
            "user".into(),
            Some(sqlx::types::Json(vec![Scope::FilesRead])),
            expires,
            revoked,
            false,
            Some(creator.into()),
            None,
        ))
    }

    #[test]
    fn each_refusal_has_its_reason_and_a_wrong_secret_reveals_nothing() {
        let key = PresentedKey::generate(Uuid::now_v7(), Uuid::now_v7());
        let good = key.hash();
        let judge = |r, now| judge(key.tenant_id, key.key_id, Some(&key.hash()), r, now);
        let grant = judge(row(&good, false, Some(100), "admin"), 99).unwrap();
        assert_eq!(grant.role, Role::User);
        assert!(grant.scopes.has(Scope::FilesRead) && !grant.scopes.has(Scope::FilesWrite));
        let reason = |r, now| judge(r, now).unwrap_err();
        assert_eq!(reason(None, 0), AuthFailure::ApiKeyInvalid);
        let wrong = "0".repeat(64);
        assert_eq!(
            reason(row(&wrong, true, Some(1), "user"), 5),
            AuthFailure::ApiKeyInvalid
        );
        assert_eq!(
            reason(row(&good, true, None, "admin"), 5),
            AuthFailure::ApiKeyRevoked
        );
        assert_eq!(
            reason(row(&good, false, Some(100), "admin"), 100),
            AuthFailure::ApiKeyExpired
        );
        assert_eq!(
            reason(row(&good, false, None, "user"), 5),
            AuthFailure::ApiKeyCreatorRemoved
        );
    }
}
