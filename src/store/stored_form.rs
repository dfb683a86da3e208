//! Between an aggregate's events and their stored form, for `ChronicleStore`: sealing
//! personal fields on the way in, upcasting and opening them on the way out
//! (src/privacy, src/aggregates/upcast.rs).

use cqrs_es::{Aggregate, AggregateError, DomainEvent};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use super::event_store::db_error;
use crate::aggregates::upcast;
use crate::ids::TenantId;
use crate::privacy::{self, KeyError, KeyRing, OpenError, StoredEvent};

type StoreResult<T, A> = Result<T, AggregateError<<A as Aggregate>::Error>>;

/// The current, readable payload of each stored event (`None`: stored text already is).
pub(super) async fn open<A: Aggregate>(
    conn: &mut PgConnection,
    stored: &[StoredEvent<'_>],
) -> StoreResult<Vec<Option<String>>, A> {
    privacy::open(conn, stored).await.map_err(|e| match e {
        OpenError::Db(e) => db_error(e),
        other => AggregateError::DeserializationError(Box::new(other)),
    })
}

/// `events` in their stored form: personal fields sealed with their user's key (created
/// on first use — inside `conn`'s transaction when given, so a rollback leaves no key).
/// Refuses an event whose `event_version` is not the upcasters' current version: writing
/// a form no upcaster knows would make it unreadable later.
pub(super) async fn seal<A: Aggregate>(
    pool: &PgPool,
    conn: Option<&mut PgConnection>,
    tenant: TenantId,
    aggregate_id: &str,
    events: &[A::Event],
) -> StoreResult<Vec<Value>, A> {
    let mut payloads = Vec::with_capacity(events.len());
    for event in events {
        let event_type = event.event_type();
        let version = event.event_version();
        if version != upcast::current_version(A::TYPE, &event_type) {
            return Err(AggregateError::UnexpectedError(
                format!(
                    "{} {event_type} claims v{version}, the upcasters' current version differs",
                    A::TYPE
                )
                .into(),
            ));
        }
        let value = serde_json::to_value(event)
            .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?;
        payloads.push((event_type, value));
    }
    let users = privacy::subjects_to_seal(A::TYPE, aggregate_id, &payloads);
    if users.is_empty() {
        return Ok(payloads.into_iter().map(|(_, v)| v).collect());
    }
    let ring = match conn {
        Some(conn) => KeyRing::for_writing(conn, tenant.0, &users).await,
        None => {
            let mut conn = pool.acquire().await.map_err(db_error)?;
            KeyRing::for_writing(&mut conn, tenant.0, &users).await
        }
    }
    .map_err(|e| match e {
        KeyError::Db(e) => db_error(e),
        erased => AggregateError::UnexpectedError(Box::new(erased)),
    })?;
    for (event_type, value) in &mut payloads {
        privacy::seal_payload(&ring, tenant.0, A::TYPE, aggregate_id, event_type, value)
            .map_err(|e| AggregateError::UnexpectedError(e.into()))?;
    }
    Ok(payloads.into_iter().map(|(_, v)| v).collect())
}
