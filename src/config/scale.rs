//! Settings of the scale-out features (docs/deployment.md): read replicas, direct-to-S3
//! uploads and presigned downloads.

use std::time::Duration;

use super::{ConfigError, Secret, invalid, parse_u64};

#[derive(Debug, Clone)]
pub struct ScaleSettings {
    /// Streaming replicas for read-only queries (`DATABASE_READ_URL`, comma-separated);
    /// empty: every query goes to the primary.
    pub read_urls: Vec<Secret>,
    /// How long a read after the caller's own write waits for a replica to replay that
    /// write (`REPLICA_WAIT_MS`, default 200) before it reads the primary instead.
    pub replica_wait: Duration,
    /// How often each replica's replay position and lag are polled
    /// (`REPLICA_CHECK_EVERY_MS`, default 1000); a replica that fails a poll is skipped
    /// until one succeeds.
    pub replica_check_every: Duration,
    /// A direct upload session (presigned part URLs) lives this long; unfinished, it
    /// expires and its multipart upload is aborted (`DIRECT_UPLOAD_EXPIRY_SECS`, default
    /// 3600; at most 7 days, S3's limit for presigned URLs).
    pub direct_upload_expiry: Duration,
    /// S3 mode: downloads answer `302` to a presigned GET valid this long
    /// (`S3_PRESIGNED_DOWNLOAD_SECS`; default 0 = off, the API streams the bytes).
    pub download_redirect: Option<Duration>,
}

const WEEK_SECS: u64 = 7 * 86_400;

impl ScaleSettings {
    pub(super) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let read_urls = get("DATABASE_READ_URL")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                if u.starts_with("postgres://") || u.starts_with("postgresql://") {
                    Ok(Secret::new(u))
                } else {
                    Err(invalid(
                        "DATABASE_READ_URL",
                        "must be comma-separated postgres:// URLs",
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let millis = |var, default, min: u64, max: u64| -> Result<Duration, ConfigError> {
            let v = parse_u64(get, var, default)?;
            if !(min..=max).contains(&v) {
                return Err(invalid(var, format!("must be between {min} and {max}")));
            }
            Ok(Duration::from_millis(v))
        };
        let direct = parse_u64(get, "DIRECT_UPLOAD_EXPIRY_SECS", 3600)?;
        if !(1..=WEEK_SECS).contains(&direct) {
            return Err(invalid(
                "DIRECT_UPLOAD_EXPIRY_SECS",
                format!("must be between 1 and {WEEK_SECS}"),
            ));
        }
        let redirect = parse_u64(get, "S3_PRESIGNED_DOWNLOAD_SECS", 0)?;
        if redirect > WEEK_SECS {
            return Err(invalid(
                "S3_PRESIGNED_DOWNLOAD_SECS",
                format!("must be between 0 (off) and {WEEK_SECS}"),
            ));
        }
        Ok(Self {
            read_urls,
            replica_wait: millis("REPLICA_WAIT_MS", 200, 0, 60_000)?,
            replica_check_every: millis("REPLICA_CHECK_EVERY_MS", 1000, 50, 60_000)?,
            direct_upload_expiry: Duration::from_secs(direct),
            download_redirect: (redirect > 0).then(|| Duration::from_secs(redirect)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<ScaleSettings, ConfigError> {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ScaleSettings::from_lookup(&|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_read_the_primary_and_proxy_downloads() {
        let s = parse(&[]).unwrap();
        assert!(s.read_urls.is_empty());
        assert_eq!(s.download_redirect, None);
        assert_eq!(s.direct_upload_expiry, Duration::from_secs(3600));
    }

    #[test]
    fn several_replicas_are_comma_separated_and_bad_values_name_their_variable() {
        let s = parse(&[(
            "DATABASE_READ_URL",
            "postgres://a@h1:5432/db, postgresql://a@h2/db,",
        )])
        .unwrap();
        assert_eq!(s.read_urls.len(), 2);
        assert_eq!(
            parse(&[("DATABASE_READ_URL", "mysql://x")])
                .unwrap_err()
                .var,
            "DATABASE_READ_URL"
        );
        assert_eq!(
            parse(&[("S3_PRESIGNED_DOWNLOAD_SECS", "604801")])
                .unwrap_err()
                .var,
            "S3_PRESIGNED_DOWNLOAD_SECS"
        );
        assert_eq!(
            parse(&[("DIRECT_UPLOAD_EXPIRY_SECS", "0")])
                .unwrap_err()
                .var,
            "DIRECT_UPLOAD_EXPIRY_SECS"
        );
        assert_eq!(
            parse(&[("REPLICA_CHECK_EVERY_MS", "1")]).unwrap_err().var,
            "REPLICA_CHECK_EVERY_MS"
        );
    }
}
