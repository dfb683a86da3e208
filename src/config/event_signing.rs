//! The key that signs what Chronicle writes to the event log (provenance,
//! docs/audit.md "Who wrote it: event signatures"), and the public keys verify trusts.
//!
//! `EVENT_SIGNING_KEY` is `<key id>:<base64 of a 32-byte Ed25519 seed>`; the key id is
//! stored with each signature, so several keys can be trusted at once (rotation):
//! `EVENT_TRUSTED_KEYS` lists older public keys as `<key id>:<base64 public key>,…`.
//! The key stays outside the database: whoever can only write to the database cannot
//! sign an event.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use super::{ConfigError, Environment, invalid};

/// The event signing key and its id. `Debug` shows only the id and the public half.
#[derive(Clone)]
pub struct EventSigningKey {
    id: String,
    key: SigningKey,
}

impl EventSigningKey {
    /// `id` must be a valid key id (`valid_key_id`).
    pub fn new(id: impl Into<String>, seed: [u8; 32]) -> Self {
        Self {
            id: id.into(),
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn verifying(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Base64 of the Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.key.sign(message).to_bytes())
    }

    /// `<key id>:<base64 public key>`, the form `EVENT_TRUSTED_KEYS` takes.
    pub fn public_entry(&self) -> String {
        format!(
            "{}:{}",
            self.id,
            STANDARD.encode(self.verifying().as_bytes())
        )
    }
}

impl fmt::Debug for EventSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EventSigningKey({}, secret <redacted>)",
            self.public_entry()
        )
    }
}

#[derive(Debug, Clone)]
pub struct EventSigningSettings {
    pub key: EventSigningKey,
    /// True when `key` was generated at start-up (development only): nothing another
    /// process writes or checks can rely on it, so verify does not check signatures.
    pub key_generated: bool,
    /// `EVENT_TRUSTED_KEYS`: retired keys whose signatures still count, by key id.
    pub retired: BTreeMap<String, VerifyingKey>,
}

impl EventSigningSettings {
    pub(super) fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        environment: Environment,
    ) -> Result<Self, ConfigError> {
        let (key, key_generated) = match get("EVENT_SIGNING_KEY") {
            Some(text) => (parse_signing_key(&text)?, false),
            None if environment == Environment::Production => {
                return Err(invalid(
                    "EVENT_SIGNING_KEY",
                    "required in production (<key id>:<base64 of a 32-byte Ed25519 seed>)",
                ));
            }
            None => {
                let id = format!("dev-{}", hex::encode(rand::random::<[u8; 4]>()));
                (EventSigningKey::new(id, rand::random()), true)
            }
        };
        let retired = match get("EVENT_TRUSTED_KEYS") {
            Some(text) => {
                parse_public_keys(&text).map_err(|reason| invalid("EVENT_TRUSTED_KEYS", reason))?
            }
            None => BTreeMap::new(),
        };
        if retired.contains_key(key.id()) {
            return Err(invalid(
                "EVENT_TRUSTED_KEYS",
                "names the key id of EVENT_SIGNING_KEY; give each key its own id",
            ));
        }
        Ok(Self {
            key,
            key_generated,
            retired,
        })
    }

    /// Every key whose signatures verify trusts, by id: the signing key's public half
    /// and the retired ones.
    pub fn trusted(&self) -> BTreeMap<String, VerifyingKey> {
        let mut keys = self.retired.clone();
        keys.insert(self.key.id().to_string(), self.key.verifying());
        keys
    }
}

/// Key ids are short and printable: they are stored with every signature.
pub fn valid_key_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn parse_signing_key(text: &str) -> Result<EventSigningKey, ConfigError> {
    let refuse = || {
        invalid(
            "EVENT_SIGNING_KEY",
            "must be <key id>:<base64 of exactly 32 bytes>, e.g. k1:$(openssl rand -base64 32)",
        )
    };
    let (id, seed) = text.trim().split_once(':').ok_or_else(refuse)?;
    if !valid_key_id(id) {
        return Err(refuse());
    }
    let seed: [u8; 32] = STANDARD
        .decode(seed)
        .map_err(|_| refuse())?
        .try_into()
        .map_err(|_| refuse())?;
    if seed.iter().all(|b| *b == 0) {
        return Err(invalid("EVENT_SIGNING_KEY", "must not be all zeros"));
    }
    Ok(EventSigningKey::new(id, seed))
}

/// `<key id>:<base64 public key>` entries separated by commas.
pub fn parse_public_keys(text: &str) -> Result<BTreeMap<String, VerifyingKey>, String> {
    let mut keys = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, key) = entry
            .split_once(':')
            .filter(|(id, _)| valid_key_id(id))
            .ok_or("each entry must be <key id>:<base64 public key>")?;
        let key = parse_public_key(key).ok_or("a public key is not base64 of 32 bytes")?;
        if keys.insert(id.to_string(), key).is_some() {
            return Err(format!("key id {id} appears twice"));
        }
    }
    Ok(keys)
}

/// An Ed25519 public key from base64 of its 32 bytes.
pub fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = STANDARD.decode(text.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(
        env: Environment,
        vars: &[(&str, &str)],
    ) -> Result<EventSigningSettings, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        EventSigningSettings::from_lookup(&|k: &str| map.get(k).map(|v| v.to_string()), env)
    }

    #[test]
    fn development_generates_a_fresh_key_production_requires_one() {
        let a = settings(Environment::Local, &[]).unwrap();
        let b = settings(Environment::Local, &[]).unwrap();
        assert!(a.key_generated);
        assert_ne!(
            a.key.public_entry(),
            b.key.public_entry(),
            "never a fixed default"
        );
        let e = settings(Environment::Production, &[]).unwrap_err();
        assert_eq!(e.var, "EVENT_SIGNING_KEY");
    }

    #[test]
    fn a_configured_key_and_retired_keys_are_trusted_bad_ones_refused() {
        let seed = STANDARD.encode([5u8; 32]);
        let old = EventSigningKey::new("k0", [6u8; 32]);
        let s = settings(
            Environment::Production,
            &[
                ("EVENT_SIGNING_KEY", &format!("k1:{seed}")),
                ("EVENT_TRUSTED_KEYS", &old.public_entry()),
            ],
        )
        .unwrap();
        assert!(!s.key_generated);
        assert_eq!(s.key.id(), "k1");
        let trusted = s.trusted();
        assert_eq!(trusted.len(), 2);
        assert_eq!(trusted["k0"], old.verifying());
        assert_eq!(
            trusted["k1"],
            EventSigningKey::new("k1", [5u8; 32]).verifying()
        );
        for bad in [
            seed.as_str(),
            "k1:not base64!",
            "k1:AAAA",
            &format!("bad id!:{seed}"),
            &format!(":{seed}"),
            &format!("k1:{}", STANDARD.encode([0u8; 32])),
        ] {
            let e = settings(Environment::Local, &[("EVENT_SIGNING_KEY", bad)]).unwrap_err();
            assert_eq!(e.var, "EVENT_SIGNING_KEY", "{bad}");
            assert!(!e.reason.contains(&seed), "the secret is never echoed");
        }
        for bad in ["k0", "k0:AAAA", &format!("{0},{0}", old.public_entry())] {
            let e = settings(Environment::Local, &[("EVENT_TRUSTED_KEYS", bad)]).unwrap_err();
            assert_eq!(e.var, "EVENT_TRUSTED_KEYS", "{bad}");
        }
        let clash = EventSigningKey::new("k1", [6u8; 32]).public_entry();
        let e = settings(
            Environment::Local,
            &[
                ("EVENT_SIGNING_KEY", &format!("k1:{seed}")),
                ("EVENT_TRUSTED_KEYS", &clash),
            ],
        )
        .unwrap_err();
        assert_eq!(e.var, "EVENT_TRUSTED_KEYS");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let seed = [9u8; 32];
        let key = EventSigningKey::new("k9", seed);
        let text = format!("{key:?}");
        assert!(text.contains("redacted") && text.contains("k9:"));
        assert!(!text.contains(&STANDARD.encode(seed)), "{text}");
        assert!(!text.contains(&hex::encode(seed)), "{text}");
    }
}
