//! The hash chain. Each event's hash covers its identity, its payload and the previous
//! event's hash, so editing, deleting or reordering events breaks the chain.
//! docs/audit.md specifies this encoding for auditors who do not run our code;
//! `tests::worked_example` pins it.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev_hash` of the first event of every stream.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const DOMAIN_TAG: &[u8] = b"chronicle-event-v1\n";

/// The fields an event's hash covers, in hashing order.
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

/// SHA-256 over `"chronicle-event-v1\n"` followed by each field as
/// `<byte length in decimal>:<bytes>\n` — unambiguous whatever the fields contain.
pub fn event_hash(input: &HashInput<'_>) -> String {
    let sequence = input.sequence.to_string();
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN_TAG);
    for field in [
        input.tenant_id,
        input.aggregate_type,
        input.aggregate_id,
        &sequence,
        input.event_type,
        input.event_version,
        input.payload,
        input.prev_hash,
    ] {
        hasher.update(field.len().to_string().as_bytes());
        hasher.update(b":");
        hasher.update(field.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant whitespace,
/// strings escaped as serde_json does (`"`, `\` and control characters only). For our
/// payloads (no floating-point numbers) this equals RFC 8785 (JCS).
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
