//! Upcasters: the one place that knows every stored form an event has ever had.
//! `(aggregate_type, event_type, version, payload)` → the current version's payload,
//! one step at a time. Every load path goes through here: the aggregate store
//! (`ChronicleStore`), the projector runtime (live batches, catch-up and rebuilds) —
//! both via `privacy::open`. Stored bytes are never rewritten: the hash chain covers
//! them as they were written.
//!
//! To change an event's serialized form: bump its version in `current_version` and in
//! the event's `DomainEvent::event_version`, add a step from the old version here, keep
//! the old golden file and add the new one (snapshots/README.md).

use serde_json::{Map, Value};

/// JSON key of a sealed personal field's object (src/privacy/seal.rs writes and opens it).
pub const SEALED: &str = "aes256gcm";
/// JSON key of an upcast pre-v2 personal field: plaintext as an old binary wrote it.
pub const PLAINTEXT: &str = "plaintext";

/// The version the running code writes and reads for each event type.
pub fn current_version(aggregate_type: &str, event_type: &str) -> &'static str {
    match (aggregate_type, event_type) {
        // v2: personal fields sealed per user (crypto-shredding).
        ("user", "UserRegistered") | ("session", "SessionStarted") => "2",
        _ => "1",
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpcastError {
    #[error("{aggregate_type} {event_type} v{version}: no upcaster from this version")]
    UnknownVersion {
        aggregate_type: String,
        event_type: String,
        version: String,
    },
    #[error("{aggregate_type} {event_type} v{version}: {reason}")]
    Malformed {
        aggregate_type: String,
        event_type: String,
        version: String,
        reason: String,
    },
}

/// One step from `from` to the next version.
struct Step {
    aggregate_type: &'static str,
    event_type: &'static str,
    from: &'static str,
    to: &'static str,
    apply: fn(&mut Map<String, Value>) -> Result<(), String>,
}

const STEPS: &[Step] = &[
    // v1 held name and email in clear. v2 seals them; an upcast v1 field is marked as
    // plaintext, which `privacy::open` reads as is (or as erased once the user is).
    Step {
        aggregate_type: "user",
        event_type: "UserRegistered",
        from: "1",
        to: "2",
        apply: |body| mark_plaintext(body, &["email", "name"]),
    },
    // v1 held the client's IP and User-Agent in clear; v2 seals them.
    Step {
        aggregate_type: "session",
        event_type: "SessionStarted",
        from: "1",
        to: "2",
        apply: |body| mark_plaintext(body, &["ip", "user_agent"]),
    },
];

fn mark_plaintext(body: &mut Map<String, Value>, fields: &[&str]) -> Result<(), String> {
    for field in fields {
        let value = body
            .get_mut(*field)
            .ok_or_else(|| format!("missing field {field}"))?;
        if !value.is_string() {
            return Err(format!("field {field} is not a string"));
        }
        let text = value.take();
        *value = Value::Object(Map::from_iter([(PLAINTEXT.to_string(), text)]));
    }
    Ok(())
}

/// Whether a stored event needs upcasting at all (the common case is no).
pub fn is_current(aggregate_type: &str, event_type: &str, version: &str) -> bool {
    current_version(aggregate_type, event_type) == version
}

/// Upcasts `payload` (externally tagged: `{"<EventType>": {...}}`) from `version` to
/// the current version.
pub fn upcast(
    aggregate_type: &str,
    event_type: &str,
    version: &str,
    mut payload: Value,
) -> Result<Value, UpcastError> {
    let current = current_version(aggregate_type, event_type);
    let mut at = version;
    while at != current {
        let step = STEPS
            .iter()
            .find(|s| {
                s.aggregate_type == aggregate_type && s.event_type == event_type && s.from == at
            })
            .ok_or_else(|| UpcastError::UnknownVersion {
                aggregate_type: aggregate_type.into(),
                event_type: event_type.into(),
                version: version.into(),
            })?;
        let malformed = |reason: String| UpcastError::Malformed {
            aggregate_type: aggregate_type.into(),
            event_type: event_type.into(),
            version: at.into(),
            reason,
        };
        let body = payload
            .get_mut(event_type)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| malformed(format!("payload is not {{\"{event_type}\": {{...}}}}")))?;
        (step.apply)(body).map_err(malformed)?;
        at = step.to;
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn current_events_pass_unchanged() {
        let p = json!({"Renamed": {"display_name": "a"}});
        assert_eq!(upcast("file", "Renamed", "1", p.clone()).unwrap(), p);
        assert!(is_current("file", "Renamed", "1"));
        assert!(!is_current("user", "UserRegistered", "1"));
    }

    #[test]
    fn unknown_and_future_versions_are_refused() {
        let p = json!({"Renamed": {"display_name": "a"}});
        assert!(matches!(
            upcast("file", "Renamed", "7", p.clone()),
            Err(UpcastError::UnknownVersion { .. })
        ));
        assert!(matches!(
            upcast("user", "UserRegistered", "3", json!({})),
            Err(UpcastError::UnknownVersion { .. })
        ));
    }

    #[test]
    fn a_v1_registration_with_a_missing_field_is_malformed_not_a_panic() {
        let p = json!({"UserRegistered": {"handle": "ada", "name": "Ada", "role": "user"}});
        let err = upcast("user", "UserRegistered", "1", p).unwrap_err();
        assert!(err.to_string().contains("missing field email"), "{err}");
        assert!(matches!(
            upcast("user", "UserRegistered", "1", json!(["x"])),
            Err(UpcastError::Malformed { .. })
        ));
    }
}
