//! The hash chain. Each event's hash covers its identity, its payload and the previous
//! event's hash, so editing, deleting or reordering events breaks the chain. Version 2
//! (every event written since) also covers who caused the event and when it was
//! recorded. docs/audit.md specifies both encodings and the canonical JSON for auditors
//! who do not run our code; `tests::worked_example*` pin them.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev_hash` of the first event of every stream.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const DOMAIN_TAG_V1: &[u8] = b"chronicle-event-v1\n";
const DOMAIN_TAG_V2: &[u8] = b"chronicle-event-v2\n";

/// The value of the metadata key `hash_version` of events hashed with version 2.
/// Events without the key were written before it existed and use version 1.
pub const HASH_VERSION_2: &str = "2";

/// The fields both encodings cover, in hashing order.
#[derive(Debug, Clone, Copy)]
pub struct HashInput<'a> {
    pub tenant_id: &'a str,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: u64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    /// Canonical JSON (see [`canonical_json`]).
    pub payload: &'a str,
    pub prev_hash: &'a str,
}

/// Who caused an event and when it was recorded: what version 2 adds.
#[derive(Debug, Clone, Copy)]
pub struct Attribution<'a> {
    /// `recorded_at` as RFC 3339 UTC with six fractional digits
    /// (`checkpoint::timestamp_text`), e.g. `2026-11-25T14:30:00.123456Z`.
    pub recorded_at: &'a str,
    pub actor: &'a str,
    pub request_id: &'a str,
    pub correlation_id: &'a str,
    pub causation_id: &'a str,
}

/// Version 1: SHA-256 over `"chronicle-event-v1\n"` followed by each field as
/// `<byte length in decimal>:<bytes>\n` — unambiguous whatever the fields contain.
pub fn event_hash(input: &HashInput<'_>) -> String {
    let sequence = input.sequence.to_string();
    framed_sha256(
        DOMAIN_TAG_V1,
        &[
            input.tenant_id,
            input.aggregate_type,
            input.aggregate_id,
            &sequence,
            input.event_type,
            input.event_version,
            input.payload,
            input.prev_hash,
        ],
    )
}

/// Version 2: the same framing after `"chronicle-event-v2\n"`, with the attribution
/// between the event's version and its payload.
pub fn event_hash_v2(input: &HashInput<'_>, who: &Attribution<'_>) -> String {
    let sequence = input.sequence.to_string();
    framed_sha256(
        DOMAIN_TAG_V2,
        &[
            input.tenant_id,
            input.aggregate_type,
            input.aggregate_id,
            &sequence,
            input.event_type,
            input.event_version,
            who.recorded_at,
            who.actor,
            who.request_id,
            who.correlation_id,
            who.causation_id,
            input.payload,
            input.prev_hash,
        ],
    )
}

fn framed_sha256(tag: &[u8], fields: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(tag);
    for field in fields {
        hasher.update(field.len().to_string().as_bytes());
        hasher.update(b":");
        hasher.update(field.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// Canonical JSON: no insignificant whitespace, object keys sorted by their UTF-8 bytes
/// at every depth, strings escaped as serde_json does (`"`, `\` and control characters
/// only, `\u00xx` in lowercase hex where there is no short form), integers only.
/// Callers check [`integers_only`] first; docs/audit.md says why this is not JCS.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(val, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// True when every number in `value` is an integer (a 64-bit signed or unsigned one):
/// the only numbers canonical JSON allows, so that every reader agrees on their text.
pub fn integers_only(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::Array(items) => items.iter().all(integers_only),
        Value::Object(map) => map.values().all(integers_only),
        _ => true,
    }
}

/// Why stored payload text is not canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotCanonical {
    /// Not JSON at all (or a string with a lone surrogate).
    Unreadable,
    /// A number that is not a 64-bit integer.
    NonInteger,
    /// Valid JSON, but not in canonical form: whitespace, key order, escaping, or a
    /// duplicate key (which canonical JSON cannot express).
    NotCanonical { canonical: String },
}

/// Checks that stored `text` is exactly the canonical form of the JSON it holds, and
/// returns the value. Re-serialising is the check: a duplicate key, a space or another
/// escape makes the canonical form differ from the text.
pub fn parse_canonical(text: &str) -> Result<Value, NotCanonical> {
    let value: Value = serde_json::from_str(text).map_err(|_| NotCanonical::Unreadable)?;
    if !integers_only(&value) {
        return Err(NotCanonical::NonInteger);
    }
    let canonical = canonical_json(&value);
    if canonical != text {
        return Err(NotCanonical::NotCanonical { canonical });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v = json!({"b": 1, "a": {"z": [true, null, "x\n"], "c": "é"}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"é","z":[true,null,"x\n"]},"b":1}"#
        );
    }

    /// The example in docs/audit.md; if this changes, every stored hash is invalid.
    #[test]
    fn worked_example() {
        let payload = canonical_json(&json!({"FileCreated": {"display_name": "report.pdf"}}));
        let input = HashInput {
            tenant_id: "01890a5d-ac96-774b-bcce-b302099a8057",
            aggregate_type: "file",
            aggregate_id: "01890a5d-ac96-774b-bcce-b302099a8058",
            sequence: 1,
            event_type: "FileCreated",
            event_version: "1",
            payload: &payload,
            prev_hash: GENESIS_HASH,
        };
        let docs = include_str!("../../docs/audit.md");
        let hash = event_hash(&input);
        assert!(docs.contains(&hash), "docs/audit.md must show hash {hash}");
    }

    fn v2_example() -> (String, Attribution<'static>) {
        let payload = canonical_json(&json!({"FileCreated": {"display_name": "report.pdf"}}));
        let who = Attribution {
            recorded_at: "2026-11-25T14:30:00.123456Z",
            actor: "01890a5d-ac96-774b-bcce-b302099a8060",
            request_id: "req-7",
            correlation_id: "req-7",
            causation_id: "req-7",
        };
        (payload, who)
    }

    /// The version 2 example in docs/audit.md: its bytes and its hash.
    #[test]
    fn worked_example_v2() {
        let (payload, who) = v2_example();
        let input = HashInput {
            tenant_id: "01890a5d-ac96-774b-bcce-b302099a8057",
            aggregate_type: "file",
            aggregate_id: "01890a5d-ac96-774b-bcce-b302099a8058",
            sequence: 1,
            event_type: "FileCreated",
            event_version: "1",
            payload: &payload,
            prev_hash: GENESIS_HASH,
        };
        let docs = include_str!("../../docs/audit.md");
        let bytes = format!(
            "chronicle-event-v2\\n36:{}\\n4:file\\n36:{}\\n1:1\\n11:FileCreated\\n1:1\\n27:{}\\n36:{}\\n5:req-7\\n5:req-7\\n5:req-7\\n45:{payload}\\n64:{GENESIS_HASH}\\n",
            input.tenant_id, input.aggregate_id, who.recorded_at, who.actor
        );
        assert!(
            docs.contains(&bytes),
            "docs/audit.md must show the bytes {bytes}"
        );
        let hash = event_hash_v2(&input, &who);
        assert!(docs.contains(&hash), "docs/audit.md must show hash {hash}");
        assert_ne!(hash, event_hash(&input), "the versions never collide");
    }

    #[test]
    fn every_attribution_field_changes_the_v2_hash() {
        let (payload, who) = v2_example();
        let input = HashInput {
            tenant_id: "t",
            aggregate_type: "file",
            aggregate_id: "a",
            sequence: 1,
            event_type: "E",
            event_version: "1",
            payload: &payload,
            prev_hash: GENESIS_HASH,
        };
        let h = event_hash_v2(&input, &who);
        for v in [
            Attribution {
                recorded_at: "2026-11-25T14:30:00.123457Z",
                ..who
            },
            Attribution {
                actor: "system:worker",
                ..who
            },
            Attribution {
                request_id: "req-8",
                ..who
            },
            Attribution {
                correlation_id: "req-8",
                ..who
            },
            Attribution {
                causation_id: "req-8",
                ..who
            },
            // A byte moved across the boundary of two attribution fields.
            Attribution {
                request_id: "req-7r",
                correlation_id: "eq-7",
                ..who
            },
        ] {
            assert_ne!(event_hash_v2(&input, &v), h, "{v:?}");
        }
    }

    #[test]
    fn only_canonical_text_passes() {
        let ok = "{\"a\":[1,-2,true,null],\"b\":\"x\\n\\u0001é/\u{7f}\u{2028}\",\"é\":{}}";
        assert_eq!(parse_canonical(ok).map(|_| ()), Ok(()));
        for (text, why) in [
            (r#"{"a":1,"a":2}"#, "duplicate key"),
            (r#"{"b":1,"a":2}"#, "key order"),
            (r#"{"a": 1}"#, "whitespace"),
            (r#"{"a":"\u00e9"}"#, "needless escape"),
            (r#"{"a":"\u001F"}"#, "uppercase escape"),
            (r#"{"a":"\/"}"#, "escaped slash"),
            (r#"{"a":"\u007f"}"#, "escaped DEL"),
            (r#"{"a":1.0}"#, "a float"),
            (r#"{"a":1e2}"#, "an exponent"),
            (r#"{"a":18446744073709551616}"#, "beyond 64 bits"),
            ("{", "not JSON"),
        ] {
            assert!(parse_canonical(text).is_err(), "{why}: {text}");
        }
        assert_eq!(
            parse_canonical(r#"{"a":0.5}"#),
            Err(NotCanonical::NonInteger)
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = HashInput {
            tenant_id: "t",
            aggregate_type: "file",
            aggregate_id: "a",
            sequence: 1,
            event_type: "E",
            event_version: "1",
            payload: "{}",
            prev_hash: GENESIS_HASH,
        };
        let h = event_hash(&base);
        let variants = [
            HashInput {
                tenant_id: "u",
                ..base
            },
            HashInput {
                aggregate_type: "user",
                ..base
            },
            HashInput {
                aggregate_id: "b",
                ..base
            },
            HashInput {
                sequence: 2,
                ..base
            },
            HashInput {
                event_type: "F",
                ..base
            },
            HashInput {
                event_version: "2",
                ..base
            },
            HashInput {
                payload: "{\"a\":1}",
                ..base
            },
            HashInput {
                prev_hash: "1",
                ..base
            },
            // Moving a byte across a field boundary must not collide.
            HashInput {
                aggregate_type: "fil",
                aggregate_id: "ea",
                ..base
            },
        ];
        for v in variants {
            assert_ne!(event_hash(&v), h, "{v:?}");
        }
    }
}
