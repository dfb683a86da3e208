//! Which fields of which events are personal data, and whose they are.
//! Adding a field here changes the event's stored form: that is a new event version
//! with an upcaster (src/aggregates/upcast.rs) and a golden file (snapshots/).

use serde_json::Value;
use uuid::Uuid;

/// Whose personal data an event holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// The stream's own id is the user (the user stream).
    Stream,
    /// A payload field holds the user id (e.g. a session's `user_id`).
    Field(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonalFields {
    pub subject: Subject,
    /// String fields of the event's body that are sealed.
    pub fields: &'static [&'static str],
}

/// Every event type with personal fields: `(aggregate_type, event_type, fields)`.
/// The handle is kept in clear: it is the account's public name inside the tenant,
/// unique per tenant and what the audit trail shows as "who"; users are told not to
/// use their real name as handle.
pub const PERSONAL_EVENTS: &[(&str, &str, PersonalFields)] = &[
    (
        "user",
        "UserRegistered",
        PersonalFields {
            subject: Subject::Stream,
            fields: &["email", "name"],
        },
    ),
    (
        "session",
        "SessionStarted",
        PersonalFields {
            subject: Subject::Field("user_id"),
            fields: &["ip", "user_agent"],
        },
    ),
];

/// The personal fields of `(aggregate_type, event_type)`, if any.
pub fn personal_fields(aggregate_type: &str, event_type: &str) -> Option<PersonalFields> {
    PERSONAL_EVENTS
        .iter()
        .find(|(a, t, _)| *a == aggregate_type && *t == event_type)
        .map(|(_, _, p)| *p)
}

/// Whether any event of `aggregate_type` holds personal fields.
pub fn holds_personal_data(aggregate_type: &str) -> bool {
    PERSONAL_EVENTS.iter().any(|(a, _, _)| *a == aggregate_type)
}

/// The user whose key covers this event, from its stream id or its (upcast) payload.
pub fn subject_of(
    personal: &PersonalFields,
    event_type: &str,
    aggregate_id: &str,
    payload: &Value,
) -> Option<Uuid> {
    let text = match personal.subject {
        Subject::Stream => Some(aggregate_id),
        Subject::Field(name) => payload.get(event_type)?.get(name)?.as_str(),
    }?;
    Uuid::parse_str(text).ok()
}
