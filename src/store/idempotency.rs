//! The idempotency marker a request carries down to the event store, so the key is
//! marked `committed` in the same transaction as the command's events. A crash after
//! that commit can then never lead to the command running a second time.

use tokio::task_local;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyMarker {
    pub scope: String,
    pub key: String,
}

task_local! {
    /// Set by the idempotency middleware around the handler of a keyed request.
    pub static CURRENT: IdempotencyMarker;
}

/// The marker of the request being handled on this task, if any.
pub fn current() -> Option<IdempotencyMarker> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Marks the keys of `markers` committed; runs inside the events' transaction.
pub async fn mark_committed(
    conn: &mut sqlx::PgConnection,
    markers: &[&IdempotencyMarker],
) -> Result<(), sqlx::Error> {
    if markers.is_empty() {
        return Ok(());
    }
    let scopes: Vec<&str> = markers.iter().map(|m| m.scope.as_str()).collect();
    let keys: Vec<&str> = markers.iter().map(|m| m.key.as_str()).collect();
    sqlx::query(
        "UPDATE idempotency_keys k SET state = 'committed'
           FROM unnest($1::text[], $2::text[]) AS u(scope, key)
          WHERE k.scope = u.scope AND k.key = u.key AND k.state = 'in_progress'",
    )
    .bind(&scopes)
    .bind(&keys)
    .execute(conn)
    .await?;
    Ok(())
}
