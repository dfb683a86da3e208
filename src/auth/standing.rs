//! Standing remembered per instance: a session's role, an API key's grant and a user's
//! own account (`/v1/me`), each kept under the tenant's standing epoch
//! (`cache::standing`) that was read *before* the log was. A request reads the epoch
//! once (one Redis call) and answers from memory only when the epoch is trusted and
//! unchanged since the value was read; otherwise it reads the log exactly as before
//! (`context::session_standing`, `api_keys::standing`) and remembers the answer under the
//! epoch it read first. Only good standing is remembered: a refusal is always the log's.
//!
//! Why a revocation, ban, role change or erasure still bites on the very next request on
//! every instance, and what happens without Redis: docs/auth-cache.md.

use std::sync::Arc;

use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::api_keys::{self, KeyGrant, PresentedKey};
use super::context::session_standing;
use crate::aggregates::{Role, User};
use crate::cache::SingleFlight;
use crate::cache::standing::{Epoch, PrefetchedEpoch, StandingEpochs, TokenCache};
use crate::error::AuthFailure;

/// The per-instance memory of good standing. Cheap to clone.
#[derive(Clone)]
pub struct Standings {
    inner: Arc<Inner>,
}

struct Inner {
    epochs: StandingEpochs,
    /// (tenant, session, user) → the user's current role.
    sessions: TokenCache<(Uuid, Uuid, Uuid), Role>,
    /// Session reads in flight, keyed by session *and epoch token*: concurrent misses of
    /// one session under one token share one log read (a burst from one caller on a
    /// cold instance would otherwise read the same rows once per request and drain the
    /// pool). A read started under another token is never shared: its answer may predate
    /// a change this reader's token already reflects.
    session_reads: SingleFlight<Option<Result<Role, AuthFailure>>>,
    /// (tenant, key) → the secret's hash and the grant.
    keys: TokenCache<(Uuid, Uuid), (String, KeyGrant)>,
    /// (tenant, user) → the user as its stream says (`/v1/me`).
    users: TokenCache<(Uuid, Uuid), User>,
}

impl Standings {
    pub fn new(epochs: StandingEpochs) -> Self {
        Self {
            inner: Arc::new(Inner {
                epochs,
                sessions: TokenCache::default(),
                session_reads: SingleFlight::default(),
                keys: TokenCache::default(),
                users: TokenCache::default(),
            }),
        }
    }

    /// A person's session: alive, started by `user`, the user not banned or erased, and
    /// the user's current role — with the epoch it was judged under.
    /// `prefetched`: the tenant's epoch if the rate limiter read it for this request
    /// (before any log read of it); otherwise it is read here.
    pub async fn session(
        &self,
        pool: &PgPool,
        tenant: Uuid,
        session: Uuid,
        user: Uuid,
        prefetched: Option<PrefetchedEpoch>,
    ) -> Result<(Result<Role, AuthFailure>, Epoch), sqlx::Error> {
        let epoch = match prefetched {
            Some(p) if p.tenant == tenant => p.epoch,
            _ => self.inner.epochs.read(tenant).await,
        };
        let key = (tenant, session, user);
        if let Some(role) = self.inner.sessions.get(&key, &epoch) {
            return Ok((Ok(role), epoch));
        }
        let shared = match epoch.token() {
            Some(token) => {
                let pool = pool.clone();
                let read = async move { session_standing(&pool, tenant, session, user).await.ok() };
                let flight = format!("{tenant}:{session}:{user}:{token}");
                self.inner.session_reads.run(&flight, read).await.flatten()
            }
            None => None,
        };
        // Untrusted, or the shared read failed: this request reads (and reports) itself.
        let standing = match shared {
            Some(standing) => standing,
            None => session_standing(pool, tenant, session, user).await?,
        };
        if let Ok(role) = standing {
            self.inner.sessions.put(key, &epoch, role);
        }
        Ok((standing, epoch))
    }

    /// An API key's standing now (`api_keys::standing`): the secret is compared on every
    /// request and the expiry checked against `now`, remembered grant or not.
    pub async fn key(
        &self,
        pool: &PgPool,
        key: &PresentedKey,
        now: i64,
    ) -> Result<Result<KeyGrant, AuthFailure>, sqlx::Error> {
        let epoch = self.inner.epochs.read(key.tenant_id).await;
        let id = (key.tenant_id, key.key_id);
        let presented = key.hash();
        if let Some((hash, grant)) = self.inner.keys.get(&id, &epoch) {
            if !bool::from(presented.as_bytes().ct_eq(hash.as_bytes())) {
                return Ok(Err(AuthFailure::ApiKeyInvalid));
            }
            if grant.expires_at.is_some_and(|at| now >= at) {
                return Ok(Err(AuthFailure::ApiKeyExpired));
            }
            return Ok(Ok(grant));
        }
        let standing = api_keys::standing(pool, key, now).await?;
        if let Ok(grant) = standing {
            self.inner.keys.put(id, &epoch, (presented, grant));
        }
        Ok(standing)
    }

    /// The key's use was recorded at `now`: the remembered grant says so too, so the
    /// next request does not record it again.
    pub fn key_touched(&self, grant: &KeyGrant, now: i64) {
        self.inner
            .keys
            .update(&(grant.tenant_id, grant.key_id), |(_, g)| {
                g.last_used_at = Some(now)
            });
    }

    /// The user as remembered under `epoch` (read before this request's log reads).
    pub fn user(&self, tenant: Uuid, user: Uuid, epoch: &Epoch) -> Option<User> {
        self.inner.users.get(&(tenant, user), epoch)
    }

    /// Remembers the user, loaded from its stream after `epoch` was read.
    pub fn remember_user(&self, tenant: Uuid, user: Uuid, epoch: &Epoch, loaded: User) {
        self.inner.users.put((tenant, user), epoch, loaded);
    }
}
