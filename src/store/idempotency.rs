//! The idempotency marker a request carries down to the event store, so the key is
//! marked `committed` in the same transaction as the command's events. A crash after
//! that commit can then never lead to the command running a second time.
//!
//! Each claim of a key has an id (`claim`), and every write that belongs to a claim —
//! marking it committed, storing its answer, freeing it — names it. A key whose owner
//! ran past its lease may be taken over by a retry (a new claim id); the first request,
//! slow rather than dead, then finds its claim gone when it commits, and its events are
//! not appended (`KeyTakenOver`), so the effect happens once. A live request renews its
//! lease (`renew`, from `ClaimedKey` in the idempotency layer), so only a request whose
//! instance died — or lost the database for a whole lease — is ever taken over.
//!
//! Also the key table's reads and writes for the idempotency layer (src/api/edge/idempotency.rs),
//! which decides what they mean.

use std::time::Duration;

use sqlx::PgPool;
use tokio::task_local;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyMarker {
    pub scope: String,
    pub key: String,
    /// The claim the request holds the key by.
    pub claim: uuid::Uuid,
}

/// Why a key could not be marked committed.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The request's claim is no longer the key's: a retry took the key over after the
    /// lease lapsed (or the key was freed). The events must not be appended.
    #[error("the Idempotency-Key was taken over by another request")]
    TakenOver,
}

task_local! {
    /// Set by the idempotency middleware around the handler of a keyed request.
    pub static CURRENT: IdempotencyMarker;
}

/// The marker of the request being handled on this task, if any.
pub fn current() -> Option<IdempotencyMarker> {
    CURRENT.try_with(Clone::clone).ok()
}

/// `work` carrying this task's marker, for a request's work run on a task of its own
/// (task-locals do not follow a spawn): its commit still marks the key.
pub fn carried<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let marker = current();
    async move {
        match marker {
            Some(marker) => CURRENT.scope(marker, work).await,
            None => work.await,
        }
    }
}

/// Marks the keys of `markers` committed; runs inside the events' transaction. Fails
/// with `TakenOver` unless every marker's claim still holds its key (a key already
/// marked by an earlier commit of the same request counts as held).
pub async fn mark_committed(
    conn: &mut sqlx::PgConnection,
    markers: &[&IdempotencyMarker],
) -> Result<(), MarkError> {
    let mut distinct: Vec<&IdempotencyMarker> = markers.to_vec();
    distinct.sort_by(|a, b| (&a.scope, &a.key, a.claim).cmp(&(&b.scope, &b.key, b.claim)));
    distinct.dedup();
    if distinct.is_empty() {
        return Ok(());
    }
    let scopes: Vec<&str> = distinct.iter().map(|m| m.scope.as_str()).collect();
    let keys: Vec<&str> = distinct.iter().map(|m| m.key.as_str()).collect();
    let claims: Vec<uuid::Uuid> = distinct.iter().map(|m| m.claim).collect();
    let marked = sqlx::query(
        "UPDATE idempotency_keys k SET state = 'committed'
           FROM unnest($1::text[], $2::text[], $3::uuid[]) AS u(scope, key, claim)
          WHERE k.scope = u.scope AND k.key = u.key AND k.claim = u.claim
            AND k.state IN ('in_progress', 'committed')",
    )
    .bind(&scopes)
    .bind(&keys)
    .bind(&claims)
    .execute(conn)
    .await?;
    if marked.rows_affected() < distinct.len() as u64 {
        return Err(MarkError::TakenOver);
    }
    Ok(())
}

/// A key as stored (`idempotency_keys`), with its two deadlines already evaluated by
/// the database's clock (instances' clocks may differ).
#[derive(Debug, sqlx::FromRow)]
pub struct StoredKey {
    pub fingerprint: String,
    /// `in_progress`, `committed` (the effect happened, the answer is not stored yet) or
    /// `completed` (the answer is stored).
    pub state: String,
    /// The role the first request was authorized with.
    pub role: Option<String>,
    pub status: Option<i32>,
    pub content_type: Option<String>,
    pub body: Option<Vec<u8>>,
    /// Older than 24 hours: the key may be used afresh.
    pub expired: bool,
    /// Its owner's lock lapsed (it died before committing anything).
    pub lock_lapsed: bool,
}

/// Claims `key` in `scope` for a request with `fingerprint`, as `claim`; `false` when
/// the key exists.
pub async fn insert_claim(
    db: &PgPool,
    scope: &str,
    key: &str,
    fingerprint: &str,
    role: &Option<String>,
    claim: uuid::Uuid,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, state, role, claim, locked_until)
         VALUES ($1, $2, $3, 'in_progress', $4, $5, now() + make_interval(secs => $6))
         ON CONFLICT DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(fingerprint)
    .bind(role)
    .bind(claim)
    .bind(lease.as_secs_f64())
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Extends the lease of a key this claim still holds `in_progress` (its request is
/// alive); `false` once it does not — settled, committed, freed or taken over — and
/// nothing is left to keep.
pub async fn renew(
    db: &PgPool,
    scope: &str,
    key: &str,
    claim: uuid::Uuid,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query(
        "UPDATE idempotency_keys SET locked_until = now() + make_interval(secs => $4)
          WHERE scope = $1 AND key = $2 AND claim = $3 AND state = 'in_progress'",
    )
    .bind(scope)
    .bind(key)
    .bind(claim)
    .bind(lease.as_secs_f64())
    .execute(db)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// The stored key, if any.
pub async fn stored(db: &PgPool, scope: &str, key: &str) -> Result<Option<StoredKey>, sqlx::Error> {
    sqlx::query_as(
        "SELECT fingerprint, state, role, status, content_type, body,
                created_at < now() - interval '24 hours' AS expired,
                locked_until < now() AS lock_lapsed
           FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(db)
    .await
}

/// Deletes the key if it is older than 24 hours.
pub async fn delete_expired(db: &PgPool, scope: &str, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM idempotency_keys
          WHERE scope = $1 AND key = $2 AND created_at < now() - interval '24 hours'",
    )
    .bind(scope)
    .bind(key)
    .execute(db)
    .await?;
    Ok(())
}

/// Takes over an in-progress key whose owner's lock lapsed, as `claim`; `false` if
/// another request took it first.
pub async fn take_over_lapsed(
    db: &PgPool,
    scope: &str,
    key: &str,
    claim: uuid::Uuid,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query(
        "UPDATE idempotency_keys SET locked_until = now() + make_interval(secs => $4), claim = $3
          WHERE scope = $1 AND key = $2 AND state = 'in_progress' AND locked_until < now()",
    )
    .bind(scope)
    .bind(key)
    .bind(claim)
    .bind(lease.as_secs_f64())
    .execute(db)
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Frees a key whose request did nothing, so a retry can run (a key already marked
/// committed stays: its effect happened; one taken over is the new claim's).
pub async fn release(
    db: &PgPool,
    scope: &str,
    key: &str,
    claim: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM idempotency_keys
          WHERE scope = $1 AND key = $2 AND claim = $3 AND state = 'in_progress'",
    )
    .bind(scope)
    .bind(key)
    .bind(claim)
    .execute(db)
    .await?;
    Ok(())
}

/// Stores the answer a repeat of the request gets (unless the key was taken over: the
/// answer is then the new claim's to store).
pub async fn complete(
    db: &PgPool,
    scope: &str,
    key: &str,
    claim: uuid::Uuid,
    status: u16,
    content_type: Option<String>,
    body: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET state = 'completed', status = $4, content_type = $5, body = $6
          WHERE scope = $1 AND key = $2 AND claim = $3",
    )
    .bind(scope)
    .bind(key)
    .bind(claim)
    .bind(status as i32)
    .bind(content_type)
    .bind(body)
    .execute(db)
    .await?;
    Ok(())
}
