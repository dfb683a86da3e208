//! The transparency log (src/transparency, docs/transparency.md): the name its signed
//! tree heads carry and how often they are signed. The signing key is the checkpoint key
//! (`CHECKPOINT_SIGNING_KEY`, src/config/checkpoints.rs): one Ed25519 key held outside
//! the database, one public key for auditors to pin.

use std::time::Duration;

use super::{ConfigError, invalid, parse_u64};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransparencySettings {
    /// `TRANSPARENCY_LOG_ORIGIN` (default `chronicle`): the first part of every tenant's
    /// log origin, `<origin>/tenants/<tenant id>`, which is also the signature's key
    /// name. Set it to the deployment's host name (e.g. `files.example.com`) so its
    /// checkpoints cannot be confused with another deployment's.
    pub origin: String,
    /// `TRANSPARENCY_HEAD_EVERY_SECS` (default 10): a tenant whose tree grew gets a new
    /// signed tree head at most this often (and at least this soon after it grew).
    pub head_every: Duration,
}

impl TransparencySettings {
    pub(super) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let origin = get("TRANSPARENCY_LOG_ORIGIN").unwrap_or_else(|| "chronicle".into());
        // A signed-note key name: non-empty, no Unicode space, no `+`; one line.
        if origin.len() > 200
            || origin.chars().any(|c| c.is_whitespace() || c.is_control())
            || origin.contains('+')
        {
            return Err(invalid(
                "TRANSPARENCY_LOG_ORIGIN",
                "at most 200 characters without spaces, control characters or '+', \
                 e.g. files.example.com",
            ));
        }
        let every = parse_u64(get, "TRANSPARENCY_HEAD_EVERY_SECS", 10)?;
        if !(1..=86_400).contains(&every) {
            return Err(invalid(
                "TRANSPARENCY_HEAD_EVERY_SECS",
                "must be between 1 and 86400",
            ));
        }
        Ok(Self {
            origin,
            head_every: Duration::from_secs(every),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<TransparencySettings, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        TransparencySettings::from_lookup(&|k: &str| map.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn defaults_and_valid_values() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.origin, "chronicle");
        assert_eq!(s.head_every, Duration::from_secs(10));
        let s = settings(&[
            ("TRANSPARENCY_LOG_ORIGIN", "files.example.com/log"),
            ("TRANSPARENCY_HEAD_EVERY_SECS", "1"),
        ])
        .unwrap();
        assert_eq!(s.origin, "files.example.com/log");
        assert_eq!(s.head_every, Duration::from_secs(1));
    }

    #[test]
    fn names_a_note_cannot_carry_are_refused() {
        for bad in ["a b", "a+b", "a\nb", "a\u{a0}b", &"x".repeat(201)] {
            let e = settings(&[("TRANSPARENCY_LOG_ORIGIN", bad)]).unwrap_err();
            assert_eq!(e.var, "TRANSPARENCY_LOG_ORIGIN", "{bad:?}");
        }
        for bad in ["0", "86401", "soon"] {
            let e = settings(&[("TRANSPARENCY_HEAD_EVERY_SECS", bad)]).unwrap_err();
            assert_eq!(e.var, "TRANSPARENCY_HEAD_EVERY_SECS", "{bad:?}");
        }
    }
}
