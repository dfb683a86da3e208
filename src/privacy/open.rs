//! Stored payload ⇄ readable payload. `open` upcasts and decrypts (or marks erased)
//! what was loaded; `seal_payload` encrypts a new event's personal fields.

use serde_json::{Map, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::ERASED;
use super::fields::{personal_fields, subject_of};
use super::keys::{KeyRing, KeyState};
use super::seal::{self, FieldPlace, PLAINTEXT, SEALED, SealError};
use crate::aggregates::upcast::{UpcastError, is_current, upcast};

/// An event as stored, borrowed from whatever row type the caller read.
#[derive(Debug, Clone, Copy)]
pub struct StoredEvent<'a> {
    pub tenant_id: Uuid,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Upcast(#[from] UpcastError),
    #[error("{aggregate_type} {aggregate_id} {event_type}: {reason}")]
    Malformed {
        aggregate_type: String,
        aggregate_id: String,
        event_type: String,
        reason: String,
    },
    #[error("{aggregate_type} {aggregate_id} {event_type} field {field}: {source}")]
    Seal {
        aggregate_type: String,
        aggregate_id: String,
        event_type: String,
        field: String,
        source: SealError,
    },
    #[error("loading personal data keys: {0}")]
    Db(#[from] sqlx::Error),
}

fn malformed(e: &StoredEvent<'_>, reason: impl Into<String>) -> OpenError {
    OpenError::Malformed {
        aggregate_type: e.aggregate_type.into(),
        aggregate_id: e.aggregate_id.into(),
        event_type: e.event_type.into(),
        reason: reason.into(),
    }
}

/// A parsed, upcast payload and the user whose key opens it (if it has personal fields).
type Parsed = Option<(Value, Option<Uuid>)>;

/// The current, readable JSON of each event: `None` where the stored text already is
/// (current version, no personal fields — most events, which are then not even parsed).
/// Loads the keys of every user the batch mentions in one query.
pub async fn open(
    conn: &mut PgConnection,
    events: &[StoredEvent<'_>],
) -> Result<Vec<Option<String>>, OpenError> {
    let parsed = parse(events)?;
    let wanted: Vec<(Uuid, Uuid)> = events
        .iter()
        .zip(&parsed)
        .filter_map(|(e, p)| Some((e.tenant_id, p.as_ref()?.1?)))
        .collect();
    let ring = KeyRing::load(conn, &wanted).await?;
    finish(events, parsed, &ring)
}

/// [`open`] with keys already in hand (fixtures, tools that loaded them themselves).
pub fn open_with(
    ring: &KeyRing,
    events: &[StoredEvent<'_>],
) -> Result<Vec<Option<String>>, OpenError> {
    finish(events, parse(events)?, ring)
}

fn parse(events: &[StoredEvent<'_>]) -> Result<Vec<Parsed>, OpenError> {
    let mut parsed = Vec::with_capacity(events.len());
    for e in events {
        let personal = personal_fields(e.aggregate_type, e.event_type);
        if personal.is_none() && is_current(e.aggregate_type, e.event_type, e.event_version) {
            parsed.push(None);
            continue;
        }
        let value: Value =
            serde_json::from_str(e.payload).map_err(|err| malformed(e, err.to_string()))?;
        let value = upcast(e.aggregate_type, e.event_type, e.event_version, value)?;
        let subject = match &personal {
            Some(p) => Some(
                subject_of(p, e.event_type, e.aggregate_id, &value)
                    .ok_or_else(|| malformed(e, "no user id for its personal fields"))?,
            ),
            None => None,
        };
        parsed.push(Some((value, subject)));
    }
    Ok(parsed)
}

fn finish(
    events: &[StoredEvent<'_>],
    parsed: Vec<Parsed>,
    ring: &KeyRing,
) -> Result<Vec<Option<String>>, OpenError> {
    events
        .iter()
        .zip(parsed)
        .map(|(e, p)| {
            let Some((mut value, subject)) = p else {
                return Ok(None);
            };
            if let Some(user) = subject {
                open_fields(e, user, ring, &mut value)?;
            }
            Ok(Some(value.to_string()))
        })
        .collect()
}

fn open_fields(
    e: &StoredEvent<'_>,
    user: Uuid,
    ring: &KeyRing,
    value: &mut Value,
) -> Result<(), OpenError> {
    let personal = personal_fields(e.aggregate_type, e.event_type).expect("checked by caller");
    let body = body_mut(value, e.event_type).ok_or_else(|| malformed(e, "not an object"))?;
    let key = ring.get(e.tenant_id, user);
    for field in personal.fields {
        let slot = body
            .get_mut(*field)
            .ok_or_else(|| malformed(e, format!("missing field {field}")))?;
        let readable = match (slot.get(SEALED).and_then(Value::as_str), key) {
            (Some(sealed), Some(KeyState::Active(key))) => {
                let place = FieldPlace {
                    tenant_id: e.tenant_id,
                    user_id: user,
                    event_type: e.event_type,
                    field,
                };
                seal::open(key, &place, sealed).map_err(|source| OpenError::Seal {
                    aggregate_type: e.aggregate_type.into(),
                    aggregate_id: e.aggregate_id.into(),
                    event_type: e.event_type.into(),
                    field: field.to_string(),
                    source,
                })?
            }
            // Key destroyed (tombstone) or its row deleted: shredded.
            (Some(_), _) => ERASED.to_string(),
            (None, _) => match slot.get(PLAINTEXT).and_then(Value::as_str) {
                // Pre-v2 plaintext stays in the log; once its user is erased it is
                // redacted on every read.
                Some(_) if key == Some(&KeyState::Erased) => ERASED.to_string(),
                Some(text) => text.to_string(),
                None => {
                    return Err(malformed(
                        e,
                        format!("field {field} is neither sealed nor plaintext"),
                    ));
                }
            },
        };
        *slot = Value::String(readable);
    }
    Ok(())
}

fn body_mut<'v>(value: &'v mut Value, event_type: &str) -> Option<&'v mut Map<String, Value>> {
    value.get_mut(event_type)?.as_object_mut()
}

/// Seals the personal fields of a new event (current version) in place, with `ring`'s
/// key for its user and a fresh random nonce per field. Events without personal fields
/// are left alone.
pub fn seal_payload(
    ring: &KeyRing,
    tenant_id: Uuid,
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
    value: &mut Value,
) -> Result<(), String> {
    seal_payload_with_nonces(
        ring,
        tenant_id,
        aggregate_type,
        aggregate_id,
        event_type,
        value,
        &mut rand::random,
    )
}

/// [`seal_payload`] with nonces from `nonce`. Only fixtures (golden files) pass anything
/// but fresh random nonces: a repeated nonce under one key breaks AES-GCM.
pub fn seal_payload_with_nonces(
    ring: &KeyRing,
    tenant_id: Uuid,
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
    value: &mut Value,
    nonce: &mut dyn FnMut() -> [u8; 12],
) -> Result<(), String> {
    let Some(personal) = personal_fields(aggregate_type, event_type) else {
        return Ok(());
    };
    let user = subject_of(&personal, event_type, aggregate_id, value)
        .ok_or("no user id for its personal fields")?;
    let Some(KeyState::Active(key)) = ring.get(tenant_id, user) else {
        return Err(format!("no active data key for user {user}"));
    };
    let body = body_mut(value, event_type).ok_or("payload is not an object")?;
    for field in personal.fields {
        let slot = body
            .get_mut(*field)
            .ok_or_else(|| format!("missing field {field}"))?;
        let plain = slot
            .as_str()
            .ok_or_else(|| format!("field {field} is not a string"))?;
        let place = FieldPlace {
            tenant_id,
            user_id: user,
            event_type,
            field,
        };
        let sealed = seal::seal_with_nonce(key, &place, plain, nonce());
        *slot = Value::Object(Map::from_iter([(
            SEALED.to_string(),
            Value::String(sealed),
        )]));
    }
    Ok(())
}

/// The users whose keys sealing `payloads` needs (empty for most commands).
pub fn subjects_to_seal(
    aggregate_type: &str,
    aggregate_id: &str,
    payloads: &[(String, Value)],
) -> Vec<Uuid> {
    let mut users: Vec<Uuid> = payloads
        .iter()
        .filter_map(|(event_type, value)| {
            let personal = personal_fields(aggregate_type, event_type)?;
            subject_of(&personal, event_type, aggregate_id, value)
        })
        .collect();
    users.sort();
    users.dedup();
    users
}
