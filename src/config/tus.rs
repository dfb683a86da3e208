//! Settings of resumable (tus) uploads.

use std::time::Duration;

use super::{ConfigError, invalid, parse_u64};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TusSettings {
    /// Largest tus upload (`TUS_MAX_SIZE`, default `MAX_UPLOAD_BYTES`); announced as
    /// `Tus-Max-Size`. May not exceed `MAX_UPLOAD_BYTES`: both paths end in one pipeline.
    pub max_size: u64,
    /// An unfinished upload expires this long after its creation or its last accepted
    /// chunk (`UPLOAD_EXPIRY_SECS`, default 86400); announced as `Upload-Expires`.
    pub expiry: Duration,
    /// How often the worker expires overdue uploads and deletes their bytes
    /// (`UPLOAD_EXPIRE_EVERY_SECS`, default 60).
    pub expire_every: Duration,
    /// A PATCH's hold on its upload lock lasts this long unless renewed
    /// (`UPLOAD_LOCK_LEASE_SECS`, default 30): a crashed holder blocks for at most this.
    pub lock_lease: Duration,
}

impl TusSettings {
    pub(super) fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        max_upload_bytes: u64,
    ) -> Result<Self, ConfigError> {
        let max_size = parse_u64(get, "TUS_MAX_SIZE", max_upload_bytes)?;
        if max_size == 0 || max_size > max_upload_bytes {
            return Err(invalid(
                "TUS_MAX_SIZE",
                format!("must be between 1 and MAX_UPLOAD_BYTES ({max_upload_bytes})"),
            ));
        }
        let secs = |var, default, max: u64| -> Result<Duration, ConfigError> {
            let v = parse_u64(get, var, default)?;
            if v == 0 || v > max {
                return Err(invalid(var, format!("must be between 1 and {max}")));
            }
            Ok(Duration::from_secs(v))
        };
        Ok(Self {
            max_size,
            expiry: secs("UPLOAD_EXPIRY_SECS", 86_400, 30 * 86_400)?,
            expire_every: secs("UPLOAD_EXPIRE_EVERY_SECS", 60, 86_400)?,
            lock_lease: secs("UPLOAD_LOCK_LEASE_SECS", 30, 3600)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<TusSettings, ConfigError> {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TusSettings::from_lookup(&|k| vars.get(k).cloned(), 1000)
    }

    #[test]
    fn defaults_follow_the_upload_limit() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.max_size, 1000);
        assert_eq!(s.expiry, Duration::from_secs(86_400));
    }

    #[test]
    fn out_of_range_values_name_their_variable() {
        assert_eq!(
            parse(&[("TUS_MAX_SIZE", "1001")]).unwrap_err().var,
            "TUS_MAX_SIZE"
        );
        assert_eq!(
            parse(&[("TUS_MAX_SIZE", "0")]).unwrap_err().var,
            "TUS_MAX_SIZE"
        );
        let err = parse(&[("UPLOAD_EXPIRY_SECS", "0")]).unwrap_err();
        assert_eq!(err.var, "UPLOAD_EXPIRY_SECS");
        let err = parse(&[("UPLOAD_LOCK_LEASE_SECS", "x")]).unwrap_err();
        assert_eq!(err.var, "UPLOAD_LOCK_LEASE_SECS");
    }
}
