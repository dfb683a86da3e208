//! One stream's chain, checked link by link: sequence, `prev_hash`, canonical payload,
//! the hash (version 1 or 2), and which events a trusted signature vouches for. Verify
//! runs it from each stream's first event; the checkpointer from the head it signed
//! last, so it never signs a head whose chain does not verify.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::checkpoint::timestamp_text;
use super::hash::{
    Attribution, GENESIS_HASH, HASH_VERSION_2, HashInput, NotCanonical, event_hash, event_hash_v2,
    parse_canonical,
};
use super::trust::check_event_signature;
use super::verify::BreakKind;

/// The `events` columns a chain check reads: `SELECT {CHAIN_COLUMNS} FROM events …`.
/// `metadata` is read as text and parsed once here: the column is `json`, which
/// Postgres would re-parse for every `->>`.
pub const CHAIN_COLUMNS: &str = "tenant_id::text AS tenant_id, aggregate_type, aggregate_id, \
    sequence, event_type, event_version, recorded_at, payload::text AS payload, \
    metadata::text AS metadata";

/// The metadata fields a chain check needs (others are ignored).
#[derive(Debug, Default, serde::Deserialize)]
struct ChainMetadata {
    prev_hash: Option<String>,
    hash: Option<String>,
    hash_version: Option<String>,
    actor: Option<String>,
    request_id: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    signature_key: Option<String>,
    signature: Option<String>,
}

/// Signed events remembered per stream while reading it, newest last. Verify checks
/// the newest signature first and goes back only while signatures fail, so a few are
/// enough; a stream whose newest this-many signatures all fail is vouched for from the
/// oldest remembered one at best (its report names a later event than strictly needed).
const SIGNED_KEPT: usize = 64;

/// One stored event as a chain check reads it.
#[derive(Debug, Clone)]
pub struct ChainRow {
    pub tenant_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    pub payload: String,
    pub prev_hash: String,
    pub hash: String,
    pub hash_version: Option<String>,
    pub actor: String,
    pub request_id: String,
    pub correlation_id: String,
    pub causation_id: String,
    pub signature_key: Option<String>,
    pub signature: Option<String>,
}

impl ChainRow {
    pub fn read(row: &PgRow) -> Result<Self, sqlx::Error> {
        let metadata: String = row.try_get("metadata")?;
        // Metadata that is not an object of string fields (say, a duplicate key) leaves
        // every field empty: the hash check then reports the event.
        let m: ChainMetadata = serde_json::from_str(&metadata).unwrap_or_default();
        Ok(Self {
            tenant_id: row.try_get("tenant_id")?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            recorded_at: row.try_get("recorded_at")?,
            payload: row.try_get("payload")?,
            prev_hash: m.prev_hash.unwrap_or_default(),
            hash: m.hash.unwrap_or_default(),
            hash_version: m.hash_version,
            actor: m.actor.unwrap_or_default(),
            request_id: m.request_id.unwrap_or_default(),
            correlation_id: m.correlation_id.unwrap_or_default(),
            causation_id: m.causation_id.unwrap_or_default(),
            signature_key: m.signature_key,
            signature: m.signature,
        })
    }

    /// An event line of an export (`store::export`, `GET /v1/audit/export`), as a chain
    /// check reads it: what `chronicle client verify` checks on the caller's machine.
    /// The payload is hashed in its canonical form, which is the form it is stored in.
    pub fn from_export_line(line: &serde_json::Value) -> Result<Self, String> {
        let text = |k: &str| {
            line[k]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("the event line has no {k}"))
        };
        let m: ChainMetadata = serde_json::from_value(line["metadata"].clone()).unwrap_or_default();
        let recorded_at = DateTime::parse_from_rfc3339(&text("recorded_at")?)
            .map_err(|e| format!("recorded_at: {e}"))?
            .with_timezone(&Utc);
        Ok(Self {
            tenant_id: text("tenant_id")?,
            aggregate_type: text("aggregate_type")?,
            aggregate_id: text("aggregate_id")?,
            sequence: line["sequence"]
                .as_i64()
                .ok_or("the event line has no sequence")?,
            event_type: text("event_type")?,
            event_version: text("event_version")?,
            recorded_at,
            payload: super::hash::canonical_json(&line["payload"]),
            prev_hash: m.prev_hash.unwrap_or_default(),
            hash: m.hash.unwrap_or_default(),
            hash_version: m.hash_version,
            actor: m.actor.unwrap_or_default(),
            request_id: m.request_id.unwrap_or_default(),
            correlation_id: m.correlation_id.unwrap_or_default(),
            causation_id: m.causation_id.unwrap_or_default(),
            signature_key: m.signature_key,
            signature: m.signature,
        })
    }

    /// The hash this row should carry, recomputed from its fields (`Err`: an unknown
    /// `hash_version`).
    pub fn recompute_hash(&self) -> Result<String, String> {
        let input = HashInput {
            tenant_id: &self.tenant_id,
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence as u64,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            prev_hash: &self.prev_hash,
        };
        match self.hash_version.as_deref() {
            None => Ok(event_hash(&input)),
            Some(HASH_VERSION_2) => Ok(event_hash_v2(
                &input,
                &Attribution {
                    recorded_at: &timestamp_text(self.recorded_at),
                    actor: &self.actor,
                    request_id: &self.request_id,
                    correlation_id: &self.correlation_id,
                    causation_id: &self.causation_id,
                },
            )),
            Some(other) => Err(format!("hash_version {other:?}")),
        }
    }
}

/// What is wrong with one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: BreakKind,
    pub sequence: i64,
    pub expected: String,
    pub found: String,
}

#[derive(Debug, Clone)]
struct SignedEvent {
    sequence: i64,
    hash: String,
    key_id: String,
    signature: String,
}

/// How far a stream is vouched for by a trusted signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouched {
    /// The newest event a valid signature covers (itself, or a later event of the
    /// stream whose hash chains back to it): `(sequence, hash)`.
    pub through: Option<(i64, String)>,
    /// Why the newest signed event does not vouch, when it does not.
    pub rejected: Option<String>,
}

/// The state of one stream's chain while its events are read in sequence order.
#[derive(Debug, Clone)]
pub struct StreamChain {
    next_sequence: i64,
    prev_hash: String,
    signed: VecDeque<SignedEvent>,
    broken: bool,
}

impl StreamChain {
    /// A stream read from its first event.
    pub fn from_genesis() -> Self {
        Self::after(0, GENESIS_HASH)
    }

    /// A stream read from the event after `sequence`, whose hash is `hash`.
    pub fn after(sequence: i64, hash: &str) -> Self {
        Self {
            next_sequence: sequence + 1,
            prev_hash: hash.to_string(),
            signed: VecDeque::new(),
            broken: false,
        }
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The last event that passed, `(sequence, hash)` (the starting point before any).
    pub fn last(&self) -> (i64, &str) {
        (self.next_sequence - 1, &self.prev_hash)
    }

    /// Checks the next event. After a problem the chain is broken and takes no more.
    pub fn push(&mut self, row: &ChainRow) -> Result<(), Problem> {
        if self.broken {
            return Err(self.problem(row, BreakKind::SequenceGap, "", "after a break"));
        }
        let result = self.check(row);
        match &result {
            Ok(()) => {
                if let (Some(key_id), Some(signature)) = (&row.signature_key, &row.signature) {
                    if self.signed.len() == SIGNED_KEPT {
                        self.signed.pop_front();
                    }
                    self.signed.push_back(SignedEvent {
                        sequence: row.sequence,
                        hash: row.hash.clone(),
                        key_id: key_id.clone(),
                        signature: signature.clone(),
                    });
                }
                self.next_sequence += 1;
                self.prev_hash = row.hash.clone();
            }
            Err(_) => self.broken = true,
        }
        result
    }

    fn problem(&self, row: &ChainRow, kind: BreakKind, expected: &str, found: &str) -> Problem {
        Problem {
            kind,
            sequence: row.sequence,
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }

    fn check(&self, row: &ChainRow) -> Result<(), Problem> {
        if row.sequence != self.next_sequence {
            let expected = self.next_sequence.to_string();
            return Err(self.problem(
                row,
                BreakKind::SequenceGap,
                &expected,
                &row.sequence.to_string(),
            ));
        }
        if row.prev_hash != self.prev_hash {
            return Err(self.problem(
                row,
                BreakKind::PrevHashMismatch,
                &self.prev_hash,
                &row.prev_hash,
            ));
        }
        match parse_canonical(&row.payload) {
            Ok(_) => {}
            Err(NotCanonical::Unreadable) => {
                return Err(self.problem(
                    row,
                    BreakKind::UnreadablePayload,
                    "JSON",
                    &clip(&row.payload),
                ));
            }
            Err(NotCanonical::NonInteger) => {
                return Err(self.problem(
                    row,
                    BreakKind::NonCanonicalPayload,
                    "integers only",
                    &clip(&row.payload),
                ));
            }
            Err(NotCanonical::NotCanonical { canonical }) => {
                return Err(self.problem(
                    row,
                    BreakKind::NonCanonicalPayload,
                    &clip(&canonical),
                    &clip(&row.payload),
                ));
            }
        }
        let recomputed = row.recompute_hash().map_err(|found| {
            self.problem(row, BreakKind::HashMismatch, "hash_version 2", &found)
        })?;
        if recomputed != row.hash {
            return Err(self.problem(row, BreakKind::HashMismatch, &recomputed, &row.hash));
        }
        Ok(())
    }

    /// The newest event of the intact chain that a signature by one of `keys` vouches
    /// for. Signatures are checked newest first, stopping at the first valid one.
    pub fn vouched(&self, keys: &BTreeMap<String, VerifyingKey>) -> Vouched {
        let mut rejected = None;
        for s in self.signed.iter().rev() {
            match check_event_signature(keys, &s.key_id, &s.signature, &s.hash) {
                Ok(()) => {
                    return Vouched {
                        through: Some((s.sequence, s.hash.clone())),
                        rejected,
                    };
                }
                Err(why) => {
                    rejected.get_or_insert(format!("sequence {}: {why}", s.sequence));
                }
            }
        }
        Vouched {
            through: None,
            rejected,
        }
    }
}

/// Long payloads are cut in reports.
fn clip(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}
