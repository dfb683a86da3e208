//! Signed checkpoints of every tenant's chain heads (src/store/checkpoint.rs): how often
//! the worker takes one and the Ed25519 key that signs them.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};

use super::{ConfigError, Environment, invalid, parse_u64};

/// The checkpoint signing key. `Debug` shows only the public half.
#[derive(Clone)]
pub struct CheckpointKey(SigningKey);

impl CheckpointKey {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    pub fn signing(&self) -> &SigningKey {
        &self.0
    }

    pub fn verifying(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    /// The public key as auditors get it (`chronicle audit public-key`): base64 of the
    /// 32 raw bytes.
    pub fn public_base64(&self) -> String {
        STANDARD.encode(self.verifying().as_bytes())
    }
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CheckpointKey(public {}, secret <redacted>)",
            self.public_base64()
        )
    }
}

#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// How often the worker records a checkpoint (`CHECKPOINT_EVERY_SECS`, default 300).
    pub every: Duration,
    /// `CHECKPOINT_SIGNING_KEY`: base64 of a 32-byte Ed25519 seed.
    pub key: CheckpointKey,
    /// True when `key` was generated at start-up (development only): its signatures
    /// cannot be checked by any other process.
    pub key_generated: bool,
    /// `CHECKPOINT_TRUSTED_KEYS`: retired public keys (base64, comma-separated) whose
    /// checkpoints still verify after a rotation.
    pub retired: Vec<VerifyingKey>,
}

impl CheckpointSettings {
    pub(super) fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        environment: Environment,
    ) -> Result<Self, ConfigError> {
        let every_secs = parse_u64(get, "CHECKPOINT_EVERY_SECS", 300)?;
        if !(1..=86_400).contains(&every_secs) {
            return Err(invalid(
                "CHECKPOINT_EVERY_SECS",
                "must be between 1 and 86400",
            ));
        }
        let (key, key_generated) = match get("CHECKPOINT_SIGNING_KEY") {
            Some(text) => (parse_key(&text)?, false),
            None if environment == Environment::Production => {
                return Err(invalid(
                    "CHECKPOINT_SIGNING_KEY",
                    "required in production (base64 of a 32-byte Ed25519 seed)",
                ));
            }
            None => (CheckpointKey::from_seed(rand::random()), true),
        };
        let mut retired = Vec::new();
        for entry in get("CHECKPOINT_TRUSTED_KEYS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            retired.push(
                super::event_signing::parse_public_key(entry).ok_or_else(|| {
                    invalid(
                        "CHECKPOINT_TRUSTED_KEYS",
                        "must be base64 public keys (32 bytes each) separated by commas",
                    )
                })?,
            );
        }
        Ok(Self {
            every: Duration::from_secs(every_secs),
            key,
            key_generated,
            retired,
        })
    }

    /// The public keys whose checkpoints verify trusts: the signing key's and the
    /// retired ones. None when the signing key was generated for this process.
    pub fn trusted(&self) -> Option<Vec<VerifyingKey>> {
        (!self.key_generated).then(|| {
            let mut keys = vec![self.key.verifying()];
            keys.extend(self.retired.iter().copied());
            keys
        })
    }
}

fn parse_key(text: &str) -> Result<CheckpointKey, ConfigError> {
    let refuse = || {
        invalid(
            "CHECKPOINT_SIGNING_KEY",
            "must be base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)",
        )
    };
    let bytes = STANDARD.decode(text.trim()).map_err(|_| refuse())?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| refuse())?;
    if seed.iter().all(|b| *b == 0) {
        return Err(invalid("CHECKPOINT_SIGNING_KEY", "must not be all zeros"));
    }
    Ok(CheckpointKey::from_seed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(
        env: Environment,
        vars: &[(&str, &str)],
    ) -> Result<CheckpointSettings, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        CheckpointSettings::from_lookup(&|k: &str| map.get(k).map(|v| v.to_string()), env)
    }

    #[test]
    fn development_generates_a_fresh_key_production_requires_one() {
        let a = settings(Environment::Local, &[]).unwrap();
        let b = settings(Environment::Local, &[]).unwrap();
        assert!(a.key_generated);
        assert_ne!(
            a.key.public_base64(),
            b.key.public_base64(),
            "never a fixed default"
        );
        let e = settings(Environment::Production, &[]).unwrap_err();
        assert_eq!(e.var, "CHECKPOINT_SIGNING_KEY");
    }

    #[test]
    fn a_configured_key_is_used_and_bad_ones_are_refused() {
        let seed = STANDARD.encode([7u8; 32]);
        let s = settings(
            Environment::Production,
            &[("CHECKPOINT_SIGNING_KEY", &seed)],
        )
        .unwrap();
        assert!(!s.key_generated);
        assert_eq!(
            s.key.verifying(),
            CheckpointKey::from_seed([7u8; 32]).verifying()
        );
        for bad in [
            "not base64!",
            "AAAA",
            &STANDARD.encode([0u8; 32]),
            &STANDARD.encode([1u8; 33]),
        ] {
            let e = settings(Environment::Local, &[("CHECKPOINT_SIGNING_KEY", bad)]).unwrap_err();
            assert_eq!(e.var, "CHECKPOINT_SIGNING_KEY", "{bad}");
        }
        let old = CheckpointKey::from_seed([8u8; 32]).public_base64();
        let s = settings(
            Environment::Local,
            &[
                ("CHECKPOINT_SIGNING_KEY", &seed),
                ("CHECKPOINT_TRUSTED_KEYS", &format!("{old}, ")),
            ],
        )
        .unwrap();
        assert_eq!(
            s.trusted().unwrap(),
            vec![
                CheckpointKey::from_seed([7u8; 32]).verifying(),
                CheckpointKey::from_seed([8u8; 32]).verifying()
            ]
        );
        let e = settings(Environment::Local, &[("CHECKPOINT_TRUSTED_KEYS", "AAAA")]).unwrap_err();
        assert_eq!(e.var, "CHECKPOINT_TRUSTED_KEYS");
        for bad in ["0", "86401", "x"] {
            let e = settings(Environment::Local, &[("CHECKPOINT_EVERY_SECS", bad)]).unwrap_err();
            assert_eq!(e.var, "CHECKPOINT_EVERY_SECS");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let seed = [9u8; 32];
        let key = CheckpointKey::from_seed(seed);
        let text = format!("{key:?}");
        assert!(text.contains("redacted"));
        assert!(!text.contains(&STANDARD.encode(seed)), "{text}");
        assert!(!text.contains(&hex::encode(seed)), "{text}");
    }
}
