//! What verify and the checkpointer trust: public keys taken from configuration or from
//! a keys file an auditor keeps, never from the database (a key stored beside what it
//! signed vouches for nothing — whoever rewrote the row rewrote the key too), and the
//! checkpoint digests an auditor pinned earlier.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::config::{Config, parse_public_key, valid_key_id};

#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Event signature keys by key id. `None`: signatures are not checked (development
    /// without a configured key; the report says so).
    pub event_keys: Option<BTreeMap<String, VerifyingKey>>,
    /// Checkpoint public keys. `None`: each checkpoint is checked against the key stored
    /// beside it, which catches damage but not a re-signed checkpoint (development).
    pub checkpoint_keys: Option<Vec<VerifyingKey>>,
    /// Digests (hex) of checkpoints an auditor recorded earlier: each must still be in
    /// its tenant's checkpoint chain, or the checkpoints were rolled back.
    pub pinned_digests: Vec<String>,
}

/// The keys file: what `chronicle audit keys` prints, `chronicle audit verify --keys`
/// and scripts/verify_export.py read. Public keys only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// Base64 Ed25519 public keys by key id.
    pub event_keys: BTreeMap<String, String>,
    /// Base64 Ed25519 public keys.
    pub checkpoint_keys: Vec<String>,
}

impl Trust {
    /// The keys this deployment is configured with (generated development keys are
    /// trusted by nobody).
    pub fn from_config(config: &Config) -> Self {
        let events = &config.event_signing;
        Self {
            event_keys: (!events.key_generated).then(|| events.trusted()),
            checkpoint_keys: config.checkpoints.trusted(),
            pinned_digests: Vec::new(),
        }
    }

    pub fn from_keys_file(text: &str) -> Result<Self, String> {
        let file: KeysFile =
            serde_json::from_str(text).map_err(|e| format!("not a keys file: {e}"))?;
        let mut event_keys = BTreeMap::new();
        for (id, key) in &file.event_keys {
            if !valid_key_id(id) {
                return Err(format!("invalid key id {id:?}"));
            }
            let key = parse_public_key(key).ok_or(format!("event key {id} is not a key"))?;
            event_keys.insert(id.clone(), key);
        }
        let checkpoint_keys = file
            .checkpoint_keys
            .iter()
            .map(|k| parse_public_key(k).ok_or(format!("checkpoint key {k} is not a key")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            event_keys: Some(event_keys),
            checkpoint_keys: Some(checkpoint_keys),
            pinned_digests: Vec::new(),
        })
    }

    /// The keys file of what this trust holds (`None` parts are left empty).
    pub fn keys_file(&self) -> KeysFile {
        KeysFile {
            event_keys: self
                .event_keys
                .iter()
                .flatten()
                .map(|(id, k)| (id.clone(), STANDARD.encode(k.as_bytes())))
                .collect(),
            checkpoint_keys: self
                .checkpoint_keys
                .iter()
                .flatten()
                .map(|k| STANDARD.encode(k.as_bytes()))
                .collect(),
        }
    }
}

/// A checkpoint digest as stored: 64 lowercase hex characters.
pub fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks an event signature: base64 `signature` by key `key_id` over the 32 raw bytes
/// of the event's hash (`hash_hex`). `Err` says why it does not vouch for the event.
pub fn check_event_signature(
    keys: &BTreeMap<String, VerifyingKey>,
    key_id: &str,
    signature: &str,
    hash_hex: &str,
) -> Result<(), String> {
    let key = keys
        .get(key_id)
        .ok_or_else(|| format!("a signature by key {key_id:?}, which is not trusted"))?;
    let signature = STANDARD
        .decode(signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or_else(|| format!("a malformed signature by key {key_id}"))?;
    let message = hex::decode(hash_hex).map_err(|_| "an event hash that is not hex".to_string())?;
    key.verify(&message, &signature)
        .map_err(|_| format!("a signature by key {key_id} that does not verify"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventSigningKey;

    #[test]
    fn event_signatures_verify_only_for_their_hash_and_a_trusted_key() {
        let key = EventSigningKey::new("k1", [3u8; 32]);
        let hash = "ab".repeat(32);
        let signature = key.sign(&hex::decode(&hash).unwrap());
        let keys = BTreeMap::from([("k1".to_string(), key.verifying())]);
        assert_eq!(
            check_event_signature(&keys, "k1", &signature, &hash),
            Ok(())
        );
        let other = "cd".repeat(32);
        assert!(check_event_signature(&keys, "k1", &signature, &other).is_err());
        assert!(check_event_signature(&keys, "k2", &signature, &hash).is_err());
        assert!(check_event_signature(&keys, "k1", "AAAA", &hash).is_err());
        let stranger = BTreeMap::from([(
            "k1".to_string(),
            EventSigningKey::new("k1", [4u8; 32]).verifying(),
        )]);
        assert!(check_event_signature(&stranger, "k1", &signature, &hash).is_err());
    }

    /// The example in docs/audit.md: key id `k1`, seed 32 × 0x05, signing the version 2
    /// worked example's hash.
    #[test]
    fn the_documented_signature() {
        let key = EventSigningKey::new("k1", [5u8; 32]);
        let hash = "c61b9d60738b9f2b1a10408450387de165d1bab64abab634c2067daab43ca7e0";
        let docs = include_str!("../../docs/audit.md");
        let signature = key.sign(&hex::decode(hash).unwrap());
        assert!(
            docs.contains(hash) && docs.contains(&signature),
            "{signature}"
        );
        let public = key.public_entry();
        assert!(docs.contains(public.trim_start_matches("k1:")), "{public}");
    }

    #[test]
    fn keys_files_round_trip_and_bad_ones_are_refused() {
        let trust = Trust {
            event_keys: Some(BTreeMap::from([(
                "k1".to_string(),
                EventSigningKey::new("k1", [3u8; 32]).verifying(),
            )])),
            checkpoint_keys: Some(vec![
                crate::config::CheckpointKey::from_seed([7u8; 32]).verifying(),
            ]),
            pinned_digests: Vec::new(),
        };
        let text = serde_json::to_string(&trust.keys_file()).unwrap();
        let again = Trust::from_keys_file(&text).unwrap();
        assert_eq!(again.keys_file(), trust.keys_file());
        for bad in [
            "{}",
            r#"{"event_keys":{"k 1":"AAAA"},"checkpoint_keys":[]}"#,
            r#"{"event_keys":{},"checkpoint_keys":["AAAA"]}"#,
            r#"{"event_keys":{},"checkpoint_keys":[],"extra":1}"#,
        ] {
            assert!(Trust::from_keys_file(bad).is_err(), "{bad}");
        }
    }
}
