//! `TenantContext`: who is calling, for which tenant. Built only from a verified access
//! token whose session is alive and whose user is not banned, or from an API key in good
//! standing (`api_keys.rs`) — checked on every request against the event log, or against
//! what this instance read from it under an unchanged standing epoch (`standing.rs`), so
//! a revocation or ban bites on the very next request.
//! A handler that touches tenant data takes a `TenantContext`; it cannot get at tenant
//! data without one. What a caller may do with it is `policy.rs`'s business.
//!
//! Once per request: the token comes verified from the `credentials::verify` layer, and
//! the standing is looked up by the first reader that needs it (the idempotency layer
//! or the extractor) and kept in the request's extensions for the others. The extractor
//! itself (src/api/edge/caller.rs) hands `authenticate` the instance's `Standings`
//! (`standing.rs`), which answers from memory while the tenant's standing epoch says
//! nothing changed, and from the log otherwise (docs/auth-cache.md).

use axum::http::request::Parts;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::TokenKeys;
use super::api_keys::{self, KeyGrant};
use super::browser;
use super::credentials::{Bearer, Credentials};
use super::scopes::Scopes;
use super::tokens::AccessClaims;
use crate::aggregates::Role;
use crate::cache::standing::Epoch;
use crate::error::{AppError, AuthFailure};
use crate::ids::{TenantId, UserId};
use crate::store::Actor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantContext {
    pub tenant_id: TenantId,
    /// The acting principal: a user, or an API key (its key id; `via_key` is set). A key
    /// acts as itself: it owns what it uploads and the log names it, not a person.
    pub user_id: UserId,
    pub role: Role,
    /// The session of a person; the key id again for a key.
    pub session_id: Uuid,
    /// What the caller may do within its role: everything for a person, a key's scopes.
    pub scopes: Scopes,
    pub via_key: bool,
}

impl TenantContext {
    /// A person signed in with `session`, with every right of `role`.
    pub fn person(tenant_id: TenantId, user_id: UserId, role: Role, session_id: Uuid) -> Self {
        Self {
            tenant_id,
            user_id,
            role,
            session_id,
            scopes: Scopes::UNRESTRICTED,
            via_key: false,
        }
    }

    /// The caller an API key in good standing makes.
    pub fn key(grant: &KeyGrant) -> Self {
        Self {
            tenant_id: TenantId(grant.tenant_id),
            user_id: UserId(grant.key_id),
            role: grant.role,
            session_id: grant.key_id,
            scopes: grant.scopes,
            via_key: true,
        }
    }

    /// Who the events this caller causes name as their actor.
    pub fn actor(&self) -> Actor {
        if self.via_key {
            Actor::ApiKey(self.user_id.0)
        } else {
            Actor::User(self.user_id)
        }
    }

    /// Whether the caller is still in good standing (long-lived streams ask again).
    pub async fn still_standing(&self, pool: &PgPool) -> Result<bool, sqlx::Error> {
        if self.via_key {
            let (tenant, key) = (self.tenant_id.0, self.user_id.0);
            let alive =
                api_keys::standing_by_id(pool, tenant, key, chrono::Utc::now().timestamp()).await?;
            return Ok(alive);
        }
        let standing =
            session_standing(pool, self.tenant_id.0, self.session_id, self.user_id.0).await?;
        Ok(standing.is_ok())
    }

    /// A transaction in which row-level security shows only this tenant's rows. `BEGIN`
    /// and the transaction-local setting go in one round trip (one simple-protocol
    /// string: the tenant is a UUID, so its text needs no quoting beyond the quotes).
    pub async fn begin<'a>(&self, pool: &'a PgPool) -> Result<Transaction<'a, Postgres>, AppError> {
        Ok(pool.begin_with(begin_for(self.tenant_id)).await?)
    }
}

/// `BEGIN` with `app.tenant_id` set for the transaction only (as `SET LOCAL` would).
fn begin_for(tenant: TenantId) -> String {
    let tenant: Uuid = tenant.0;
    format!("BEGIN; SELECT set_config('app.tenant_id', '{tenant}', true)")
}

/// Whether the session is alive and was started by `user`, whether the user is not
/// banned, and the user's *current* role — read from the events themselves (one indexed
/// query; streams are short). The read tables may lag; the log does not. The role comes
/// from the log, not the token, so a demotion takes effect on the next request rather
/// than when the token expires.
pub async fn session_standing(
    pool: &PgPool,
    tenant: Uuid,
    session: Uuid,
    user: Uuid,
) -> Result<Result<Role, AuthFailure>, sqlx::Error> {
    let (session_events, revoked, banned, role): (i64, bool, bool, Option<String>) =
        sqlx::query_as(
            r#"
SELECT
  -- Only a session the token's subject started counts: a `sid` of another user of the
  -- tenant must not authenticate this `sub`.
  (SELECT count(*) FROM events
    WHERE tenant_id = $1 AND aggregate_type = 'session' AND aggregate_id = $2
      AND event_type = 'SessionStarted'
      AND payload->'SessionStarted'->>'user_id' = $3),
  EXISTS (SELECT 1 FROM events
    WHERE tenant_id = $1 AND aggregate_type = 'session' AND aggregate_id = $2
      AND event_type = 'SessionRevoked')
  -- An erased user's sessions end with the erasure, even one that was not revoked.
  OR EXISTS (SELECT 1 FROM events
    WHERE tenant_id = $1 AND aggregate_type = 'user' AND aggregate_id = $3
      AND event_type = 'UserErased'),
  coalesce((SELECT event_type = 'UserBanned' FROM events
    WHERE tenant_id = $1 AND aggregate_type = 'user' AND aggregate_id = $3
      AND event_type IN ('UserBanned', 'UserUnbanned')
    ORDER BY sequence DESC LIMIT 1), false),
  (SELECT coalesce(payload->'RoleChanged'->>'role', payload->'UserRegistered'->>'role') FROM events
    WHERE tenant_id = $1 AND aggregate_type = 'user' AND aggregate_id = $3
      AND event_type IN ('UserRegistered', 'RoleChanged')
    ORDER BY sequence DESC LIMIT 1)"#,
        )
        .bind(tenant)
        .bind(session.to_string())
        .bind(user.to_string())
        .fetch_one(pool)
        .await?;
    let role = role.and_then(|r| serde_json::from_value::<Role>(serde_json::Value::String(r)).ok());
    Ok(if banned {
        Err(AuthFailure::UserBanned)
    } else if revoked || session_events == 0 {
        Err(AuthFailure::SessionRevoked)
    } else {
        // A user stream without a role cannot happen; treat it as a dead session.
        role.ok_or(AuthFailure::SessionRevoked)
    })
}

/// The outcome of authenticating one request, kept in its extensions so that the
/// session standing is asked once, with the standing epoch it was judged under
/// (`auth::standing`). A database error is not kept: it fails the request.
#[derive(Debug, Clone)]
struct Standing(Result<TenantContext, AuthFailure>, Epoch);

/// The standing epoch this request's caller was judged under: what later reads of the
/// same request may remember their answers under (`Untrusted` when none was read).
pub fn judged_under(parts: &Parts) -> Epoch {
    parts
        .extensions
        .get::<Standing>()
        .map_or(Epoch::Untrusted, |s| s.1.clone())
}

/// The caller of the request in `parts`: its verified credentials, then its standing,
/// which `lookup` reads (from memory or the log, `auth::standing`) only if no earlier
/// reader of this request did.
pub async fn authenticate<F, Fut>(
    parts: &mut Parts,
    keys: &TokenKeys,
    lookup: F,
) -> Result<TenantContext, AppError>
where
    F: FnOnce(AccessClaims) -> Fut,
    Fut: Future<Output = Result<(Result<Role, AuthFailure>, Epoch), sqlx::Error>>,
{
    let standing = match parts.extensions.get::<Standing>() {
        Some(Standing(known, _)) => *known,
        None => {
            let claims = match Credentials::of(parts, keys).0 {
                // The layer read a key's whole standing already.
                Ok(Bearer::Key(grant)) => return Ok(TenantContext::key(&grant)),
                // The cookie's standing was read by the layer; a state change also needs
                // the CSRF token (browser.rs), else any page could make one.
                Ok(Bearer::Browser(grant)) => {
                    if browser::is_unsafe(&parts.method) && !grant.csrf_proven {
                        return Err(AppError::CsrfRejected);
                    }
                    return Ok(TenantContext::person(
                        TenantId(grant.tenant_id),
                        UserId(grant.user_id),
                        grant.role,
                        grant.session_id,
                    ));
                }
                Ok(Bearer::Token(claims)) => claims,
                Err(failure) => return Err(AppError::Unauthorized(failure)),
            };
            let (tenant, user, session) = (claims.tenant, claims.sub, claims.sid);
            let (role, epoch) = lookup(claims).await?;
            let known = role
                .map(|role| TenantContext::person(TenantId(tenant), UserId(user), role, session));
            parts.extensions.insert(Standing(known, epoch));
            known
        }
    };
    standing.map_err(AppError::Unauthorized)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::Request;
    use axum::http::header::AUTHORIZATION;

    use super::*;

    fn request_parts(keys: &TokenKeys) -> Parts {
        let now = chrono::Utc::now().timestamp();
        let token = keys
            .issue_access(
                Uuid::now_v7(),
                Uuid::now_v7(),
                Role::User,
                Uuid::now_v7(),
                now,
            )
            .unwrap();
        let request = Request::builder()
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .unwrap();
        request.into_parts().0
    }

    /// The idempotency layer and the handler's extractor (or two extractors of one
    /// handler) authenticate the same request: the log is asked once, and both get the
    /// same answer, whether the session is alive or not.
    #[tokio::test]
    async fn the_standing_is_asked_once_per_request() {
        let keys = TokenKeys::new(&"ab".repeat(32));
        for answer in [Ok(Role::Admin), Err(AuthFailure::SessionRevoked)] {
            let mut parts = request_parts(&keys);
            let asked = AtomicUsize::new(0);
            let lookup = |_claims: AccessClaims| async {
                asked.fetch_add(1, Ordering::SeqCst);
                Ok((answer, Epoch::Untrusted))
            };
            let first = authenticate(&mut parts, &keys, lookup).await;
            let second = authenticate(&mut parts, &keys, lookup).await;
            assert_eq!(asked.load(Ordering::SeqCst), 1, "{answer:?}");
            match (first, second) {
                (Ok(a), Ok(b)) => assert_eq!((a, a.role), (b, Role::Admin)),
                (Err(a), Err(b)) => {
                    assert_eq!(a.code(), "session_revoked");
                    assert_eq!(b.code(), "session_revoked");
                }
                other => panic!("the two readers disagree: {other:?}"),
            }
        }
    }

    /// A failed lookup (the database) is not remembered: the next reader asks again.
    #[tokio::test]
    async fn a_database_error_is_not_kept() {
        let keys = TokenKeys::new(&"ab".repeat(32));
        let mut parts = request_parts(&keys);
        let failing = |_claims: AccessClaims| async { Err(sqlx::Error::PoolTimedOut) };
        assert!(authenticate(&mut parts, &keys, failing).await.is_err());
        let alive = |_claims: AccessClaims| async { Ok((Ok(Role::User), Epoch::Untrusted)) };
        assert!(authenticate(&mut parts, &keys, alive).await.is_ok());
    }
}
