//! The key service: per-user data keys in `personal_data_keys` (migration 0013), which
//! the event log never references by value. Loaded per batch — one query for every
//! user a batch of events mentions — and cached only for that batch: a key destroyed
//! after the batch must not be used again, so nothing outlives it.

use std::collections::HashMap;

use sqlx::PgConnection;
use uuid::Uuid;

use super::seal::DataKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The user was erased: no new personal data may be recorded for them.
    #[error("user {0} was erased; their personal data can no longer be recorded")]
    Erased(Uuid),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What the table says about one user's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    Active(DataKey),
    /// Destroyed by erasure; the row stays as a tombstone (data_key NULL).
    Erased,
}

/// The keys of one batch, by (tenant, user). A user without a row has never had
/// sealed data (pre-v2 only) — or their row was deleted by hand, which also destroys it.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: HashMap<(Uuid, Uuid), KeyState>,
}

/// A row of `personal_data_keys`: `data_key` is `NULL` once the user is erased.
#[derive(sqlx::FromRow)]
struct KeyRow {
    tenant_id: Uuid,
    user_id: Uuid,
    data_key: Option<Vec<u8>>,
}

impl KeyRing {
    pub fn get(&self, tenant: Uuid, user: Uuid) -> Option<&KeyState> {
        self.keys.get(&(tenant, user))
    }

    /// Puts a key in the ring by hand (fixtures, tools).
    pub fn insert(&mut self, tenant: Uuid, user: Uuid, state: KeyState) {
        self.keys.insert((tenant, user), state);
    }

    /// Loads the keys of `wanted` (duplicates are fine). No query when it is empty.
    pub async fn load(
        conn: &mut PgConnection,
        wanted: &[(Uuid, Uuid)],
    ) -> Result<KeyRing, sqlx::Error> {
        let mut ring = KeyRing::default();
        if wanted.is_empty() {
            return Ok(ring);
        }
        let (tenants, users): (Vec<Uuid>, Vec<Uuid>) = wanted.iter().copied().unzip();
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT k.tenant_id, k.user_id, k.data_key FROM personal_data_keys k
               JOIN unnest($1::uuid[], $2::uuid[]) AS w(tenant_id, user_id) USING (tenant_id, user_id)",
        )
        .bind(tenants)
        .bind(users)
        .fetch_all(conn)
        .await?;
        for row in rows {
            let state = match row.data_key {
                Some(bytes) => KeyState::Active(DataKey::from_bytes(&bytes).ok_or_else(|| {
                    sqlx::Error::Decode("personal data key is not 32 bytes".into())
                })?),
                None => KeyState::Erased,
            };
            ring.keys.insert((row.tenant_id, row.user_id), state);
        }
        Ok(ring)
    }

    /// Keys to seal new events with: creates missing ones (a racing creator wins
    /// harmlessly: ON CONFLICT keeps the first) and refuses erased users. Inside the
    /// caller's transaction when there is one, so a rolled-back registration leaves no key.
    pub async fn for_writing(
        conn: &mut PgConnection,
        tenant: Uuid,
        users: &[Uuid],
    ) -> Result<KeyRing, KeyError> {
        let wanted: Vec<_> = users.iter().map(|u| (tenant, *u)).collect();
        let ring = KeyRing::load(conn, &wanted).await?;
        // Most calls (logins of known users) end here, with one query.
        let missing: Vec<Uuid> = users
            .iter()
            .copied()
            .filter(|u| ring.get(tenant, *u).is_none())
            .collect();
        let ring = if missing.is_empty() {
            ring
        } else {
            let fresh: Vec<Vec<u8>> = missing
                .iter()
                .map(|_| DataKey::generate().as_bytes().to_vec())
                .collect();
            sqlx::query(
                "INSERT INTO personal_data_keys (tenant_id, user_id, data_key)
                 SELECT $1, u, k FROM unnest($2::uuid[], $3::bytea[]) AS n(u, k)
                 ON CONFLICT (tenant_id, user_id) DO NOTHING",
            )
            .bind(tenant)
            .bind(&missing)
            .bind(fresh)
            .execute(&mut *conn)
            .await?;
            // Reload: a racing creator's key (or tombstone) wins over ours.
            KeyRing::load(conn, &wanted).await?
        };
        for user in users {
            if !matches!(ring.get(tenant, *user), Some(KeyState::Active(_))) {
                return Err(KeyError::Erased(*user));
            }
        }
        Ok(ring)
    }
}

/// Destroys a user's key, leaving a tombstone so no new key is ever created for them.
/// Idempotent. The old row version survives until VACUUM (docs/architecture.md).
pub async fn destroy(conn: &mut PgConnection, tenant: Uuid, user: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO personal_data_keys (tenant_id, user_id, data_key, erased_at)
         VALUES ($1, $2, NULL, now())
         ON CONFLICT (tenant_id, user_id) DO UPDATE
            SET data_key = NULL, erased_at = coalesce(personal_data_keys.erased_at, now())",
    )
    .bind(tenant)
    .bind(user)
    .execute(conn)
    .await?;
    Ok(())
}
