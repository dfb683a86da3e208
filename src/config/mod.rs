//! Configuration from the environment. Parsed once at start-up; an invalid value stops
//! the process with one line naming the variable. Secrets never appear in `Debug`.

mod checkpoints;
mod database;
mod event_signing;
mod jobs;
mod outages;
mod projectors;
mod scale;
mod storage;
mod transparency;
mod tus;
mod webhooks;

pub use checkpoints::{CheckpointKey, CheckpointSettings};
pub use database::Pooler;
pub use event_signing::{
    EventSigningKey, EventSigningSettings, parse_public_key, parse_public_keys, valid_key_id,
};
pub use jobs::{DEFAULT_WORKER_CONCURRENCY, GcSettings, JobSettings};
pub use outages::OutageSettings;
pub use projectors::ProjectorRetry;
pub use scale::ScaleSettings;
pub use storage::StorageSettings;
pub use transparency::TransparencySettings;
pub use tus::TusSettings;
pub use webhooks::WebhookSettings;

use crate::scan::ScanSettings;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The cores this process may run on (2 when the system cannot tell): what sizes the
/// work that is bound by CPU rather than by waiting — image optimisations at once, the
/// projectors catching up at once.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A secret string whose `Debug`/`Display` never reveal it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Local,
    Staging,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub database_url: Secret,
    /// Direct (non-pooled) connection for migrations and LISTEN/NOTIFY; defaults to
    /// `database_url`.
    pub database_direct_url: Option<Secret>,
    /// `DATABASE_POOLER`: whether `database_url` goes through a transaction pooler.
    pub database_pooler: Pooler,
    pub redis_url: Secret,
    pub bind_addr: SocketAddr,
    /// `HTTP_HEADER_TIMEOUT_SECS`: how long a connection may take to send a request's
    /// head, counted from its opening or its previous answer (src/api/serve.rs).
    pub http_header_timeout: std::time::Duration,
    /// `IDEMPOTENCY_LEASE_SECS`: how long a claimed `Idempotency-Key` stays the request's
    /// without a renewal; a live request renews it every third of that, so only a key
    /// whose instance died (or lost the database that long) is taken over by a retry.
    pub idempotency_lease: std::time::Duration,
    pub data_dir: PathBuf,
    pub jwt_secret: Secret,
    /// True when `jwt_secret` was generated at start-up (tokens die with the process).
    pub jwt_secret_generated: bool,
    pub snapshot_every: u64,
    /// `MIN_RETENTION_DAYS`: no file is purged within this many days of its latest upload
    /// (every tenant; 0 = no minimum). docs/sharing.md, "Retention lock".
    pub min_retention_days: u64,
    pub frontend_url: Option<String>,
    pub log_format: LogFormat,
    /// `IS_WORKER=true` turns `serve` into `worker` (the deployment flag of platforms that run one image as web and worker).
    pub is_worker: bool,
    pub db_max_connections: u32,
    /// Prefix of every Redis key Chronicle writes, so deployments (and tests) can share a
    /// Redis without sharing state.
    pub redis_key_prefix: String,
    /// Requests per principal (authenticated) or client IP (anonymous) and
    /// `rate_limit_window` (named for the default window).
    pub rate_limit_per_minute: u64,
    /// The stricter per-IP budget of the auth routes, per `rate_limit_window`.
    pub auth_rate_limit_per_minute: u64,
    /// The per-principal budget of `PATCH`/`HEAD` on the caller's own tus uploads, per
    /// `rate_limit_window`: an upload in progress never spends the request budget.
    pub tus_rate_limit_per_minute: u64,
    pub rate_limit_window: Duration,
    /// Use the last `X-Forwarded-For` entry as the client IP (only behind a proxy that sets it).
    pub trust_proxy_headers: bool,
    /// Default body limit of JSON routes.
    pub max_json_body_bytes: usize,
    /// A local GeoIP database file for `locations.geo_json` (checked to exist at start-up).
    pub geoip_db: Option<PathBuf>,
    /// Where uploads and blobs live (local under `DATA_DIR`, or S3).
    pub storage: StorageSettings,
    /// Largest accepted upload (`MAX_UPLOAD_BYTES`, default 5 GiB).
    pub max_upload_bytes: u64,
    /// Bytes a tenant may store (`TENANT_QUOTA_BYTES`); unlimited when unset.
    pub tenant_quota_bytes: Option<u64>,
    pub jobs: JobSettings,
    /// Retries of an event a projector cannot apply, then parking (`PROJECTOR_*`;
    /// src/config/projectors.rs).
    pub projectors: ProjectorRetry,
    /// Virus scanning (`SCANNER`, `CLAMD_ADDR`, `SIGNATURES_DIR`; src/scan/settings.rs).
    pub scan: ScanSettings,
    /// How long a `GET /v1/files/{id}` body may live in the Redis cache; zero turns the
    /// cache off. Invalidation is by the files projector; the TTL bounds what a missed
    /// invalidation (Redis down at that moment) can leave stale.
    pub file_cache_ttl: Duration,
    /// Resumable uploads (`TUS_MAX_SIZE`, `UPLOAD_EXPIRY_SECS` …; src/config/tus.rs).
    pub tus: TusSettings,
    /// Signed checkpoints of the chain heads (`CHECKPOINT_*`; src/config/checkpoints.rs).
    pub checkpoints: CheckpointSettings,
    /// The key that signs every commit to the event log (`EVENT_SIGNING_KEY`,
    /// `EVENT_TRUSTED_KEYS`; src/config/event_signing.rs).
    pub event_signing: EventSigningSettings,
    /// Behaviour while a dependency is down (`DB_ACQUIRE_TIMEOUT_MS`, `LIVE_PING_EVERY_SECS`).
    pub outages: OutageSettings,
    /// The transparency log's origin and signing cadence (`TRANSPARENCY_*`;
    /// src/config/transparency.rs).
    pub transparency: TransparencySettings,
    /// Webhook delivery: SSRF allowlist, timeout, retries, auto-disable (`WEBHOOK_*`;
    /// src/config/webhooks.rs).
    pub webhooks: WebhookSettings,
    /// Read replicas, direct-to-S3 uploads, presigned downloads (src/config/scale.rs).
    pub scale: ScaleSettings,
}

/// The one-line reason configuration was refused; names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

pub(crate) fn invalid(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process env.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());

        let environment = match get("APP_ENV").as_deref() {
            None | Some("local") | Some("development") => Environment::Local,
            Some("staging") => Environment::Staging,
            Some("production") => Environment::Production,
            Some(other) => {
                return Err(invalid(
                    "APP_ENV",
                    format!("expected local, staging or production, got {other:?}"),
                ));
            }
        };

        let database_url = get("DATABASE_URL")
            .unwrap_or_else(|| "postgres://root@127.0.0.1:5432/chronicle".into());
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(invalid("DATABASE_URL", "must start with postgres://"));
        }
        let database_direct_url = get("DATABASE_DIRECT_URL").map(Secret::new);
        let database_pooler = Pooler::from_lookup(&get, database_direct_url.is_some())?;

        let redis_url = get("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        if !(redis_url.starts_with("redis://") || redis_url.starts_with("rediss://")) {
            return Err(invalid(
                "REDIS_URL",
                "must start with redis:// or rediss://",
            ));
        }

        let bind_addr = get("BIND_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8080".into())
            .parse()
            .map_err(|_| invalid("BIND_ADDR", "expected host:port, e.g. 127.0.0.1:8080"))?;

        let http_header_timeout = std::time::Duration::from_secs(jobs::parse_within(
            &get,
            "HTTP_HEADER_TIMEOUT_SECS",
            30,
            1..=3600,
        )?);

        let idempotency_lease = std::time::Duration::from_secs(jobs::parse_within(
            &get,
            "IDEMPOTENCY_LEASE_SECS",
            60,
            3..=3600,
        )?);

        let data_dir = PathBuf::from(get("DATA_DIR").unwrap_or_else(|| "./data".into()));

        let (jwt_secret, jwt_secret_generated) = match get("JWT_SECRET") {
            Some(s) => {
                validate_jwt_secret(&s)?;
                (Secret::new(s), false)
            }
            None if environment == Environment::Production => {
                return Err(invalid(
                    "JWT_SECRET",
                    "required in production (at least 64 hex characters)",
                ));
            }
            None => (Secret::new(random_hex_secret()), true),
        };

        let snapshot_every = parse_u64(&get, "SNAPSHOT_EVERY", 100)?;
        if snapshot_every == 0 {
            return Err(invalid("SNAPSHOT_EVERY", "must be at least 1"));
        }

        let min_retention_days = parse_u64(&get, "MIN_RETENTION_DAYS", 0)?;
        if min_retention_days > 36_500 {
            return Err(invalid(
                "MIN_RETENTION_DAYS",
                "must be at most 36500 (100 years)",
            ));
        }

        let frontend_url = get("FRONTEND_URL").map(|u| parse_origin(&u)).transpose()?;

        let log_format = match get("LOG_FORMAT").as_deref() {
            None if environment == Environment::Local => LogFormat::Pretty,
            None => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "LOG_FORMAT",
                    format!("expected pretty or json, got {other:?}"),
                ));
            }
        };

        let is_worker = parse_bool(&get, "IS_WORKER", false)?;

        let db_max_connections = parse_u64(&get, "DB_MAX_CONNECTIONS", 20)?;
        if db_max_connections == 0 || db_max_connections > 1000 {
            return Err(invalid("DB_MAX_CONNECTIONS", "must be between 1 and 1000"));
        }

        let redis_key_prefix = get("REDIS_KEY_PREFIX").unwrap_or_else(|| "chronicle:".into());
        if redis_key_prefix.len() > 64
            || !redis_key_prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'?')
        {
            return Err(invalid(
                "REDIS_KEY_PREFIX",
                "at most 64 printable characters, no spaces or glob characters",
            ));
        }

        let rate_limit_per_minute = parse_u64(&get, "RATE_LIMIT_PER_MINUTE", 100)?;
        if !(1..=1_000_000_000).contains(&rate_limit_per_minute) {
            return Err(invalid(
                "RATE_LIMIT_PER_MINUTE",
                "must be between 1 and 1000000000",
            ));
        }
        let auth_rate_limit_per_minute = parse_u64(&get, "AUTH_RATE_LIMIT_PER_MINUTE", 10)?;
        if !(1..=1_000_000_000).contains(&auth_rate_limit_per_minute) {
            return Err(invalid(
                "AUTH_RATE_LIMIT_PER_MINUTE",
                "must be between 1 and 1000000000",
            ));
        }
        let tus_rate_limit_per_minute = parse_u64(&get, "TUS_RATE_LIMIT_PER_MINUTE", 10_000)?;
        if !(1..=10_000_000).contains(&tus_rate_limit_per_minute) {
            return Err(invalid(
                "TUS_RATE_LIMIT_PER_MINUTE",
                "must be between 1 and 10000000",
            ));
        }
        let rate_limit_window_secs = parse_u64(&get, "RATE_LIMIT_WINDOW_SECS", 60)?;
        if !(1..=86_400).contains(&rate_limit_window_secs) {
            return Err(invalid(
                "RATE_LIMIT_WINDOW_SECS",
                "must be between 1 and 86400",
            ));
        }
        let trust_proxy_headers = parse_bool(&get, "TRUST_PROXY_HEADERS", false)?;

        let max_json_body_bytes = parse_u64(&get, "MAX_JSON_BODY_BYTES", 1024 * 1024)?;
        if !(1024..=64 * 1024 * 1024).contains(&max_json_body_bytes) {
            return Err(invalid(
                "MAX_JSON_BODY_BYTES",
                "must be between 1024 and 67108864 (64 MiB)",
            ));
        }

        let geoip_db = get("GEOIP_DB").map(PathBuf::from);
        if let Some(path) = &geoip_db
            && !path.is_file()
        {
            return Err(invalid(
                "GEOIP_DB",
                format!("no such file: {}", path.display()),
            ));
        }

        let storage = StorageSettings::from_lookup(&get, &data_dir)?;
        let max_upload_bytes = parse_u64(&get, "MAX_UPLOAD_BYTES", 5 * 1024 * 1024 * 1024)?;
        if max_upload_bytes == 0 {
            return Err(invalid("MAX_UPLOAD_BYTES", "must be at least 1"));
        }
        let tenant_quota_bytes = match get("TENANT_QUOTA_BYTES") {
            None => None,
            Some(_) => Some(parse_u64(&get, "TENANT_QUOTA_BYTES", 0)?),
        };
        let jobs = JobSettings::from_lookup(&get)?;
        let projectors = ProjectorRetry::from_lookup(&get)?;
        let tus = TusSettings::from_lookup(&get, max_upload_bytes)?;
        let scan = ScanSettings::from_lookup(&get).map_err(|reason| invalid("SCANNER", reason))?;
        let file_cache_ttl_secs = parse_u64(&get, "FILE_CACHE_TTL_SECS", 300)?;
        if file_cache_ttl_secs > 86_400 {
            return Err(invalid(
                "FILE_CACHE_TTL_SECS",
                "must be between 0 (cache off) and 86400",
            ));
        }

        let checkpoints = CheckpointSettings::from_lookup(&get, environment)?;
        let event_signing = EventSigningSettings::from_lookup(&get, environment)?;
        let outages = OutageSettings::from_lookup(&get)?;
        let transparency = TransparencySettings::from_lookup(&get)?;
        let webhooks = WebhookSettings::from_lookup(&get)?;
        let scale = ScaleSettings::from_lookup(&get)?;

        Ok(Self {
            environment,
            database_url: Secret::new(database_url),
            database_direct_url,
            database_pooler,
            redis_url: Secret::new(redis_url),
            bind_addr,
            http_header_timeout,
            idempotency_lease,
            data_dir,
            jwt_secret,
            jwt_secret_generated,
            snapshot_every,
            min_retention_days,
            frontend_url,
            log_format,
            is_worker,
            db_max_connections: db_max_connections as u32,
            redis_key_prefix,
            rate_limit_per_minute,
            auth_rate_limit_per_minute,
            tus_rate_limit_per_minute,
            rate_limit_window: Duration::from_secs(rate_limit_window_secs),
            trust_proxy_headers,
            max_json_body_bytes: max_json_body_bytes as usize,
            geoip_db,
            storage,
            max_upload_bytes,
            tenant_quota_bytes,
            jobs,
            projectors,
            scan,
            file_cache_ttl: Duration::from_secs(file_cache_ttl_secs),
            tus,
            checkpoints,
            event_signing,
            outages,
            transparency,
            webhooks,
            scale,
        })
    }
}

pub(crate) fn parse_u64(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| invalid(var, format!("expected a whole number, got {v:?}"))),
    }
}

fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(var).as_deref() {
        None => Ok(default),
        Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(invalid(
            var,
            format!("expected true or false, got {other:?}"),
        )),
    }
}

/// A browser origin (`scheme://host[:port]`) as browsers send it in `Origin`: a trailing
/// slash is dropped, a path is refused (it would never match).
fn parse_origin(url: &str) -> Result<String, ConfigError> {
    let origin = url.trim().trim_end_matches('/');
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match host {
        Some(host)
            if !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"/?#@".contains(&b)) =>
        {
            Ok(origin.to_string())
        }
        _ => Err(invalid(
            "FRONTEND_URL",
            "must be an http(s) origin such as https://app.example.com (no path)",
        )),
    }
}

/// JWT secrets are at least 64 hex characters (256 bits): a guessable HMAC key would let
/// anyone mint tokens.
fn validate_jwt_secret(s: &str) -> Result<(), ConfigError> {
    if s.len() < 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("JWT_SECRET", "must be at least 64 hex characters"));
    }
    Ok(())
}

fn random_hex_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_usable_locally_with_a_random_secret() {
        let c = config(&[]).unwrap();
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:8080");
        assert!(c.jwt_secret_generated);
        assert_eq!(c.jwt_secret.expose().len(), 64);
        let again = config(&[]).unwrap();
        assert_ne!(c.jwt_secret, again.jwt_secret, "never a fixed default");
    }

    #[test]
    fn short_or_non_hex_secret_is_refused_naming_the_variable() {
        let e = config(&[("JWT_SECRET", "abc")]).unwrap_err();
        assert_eq!(e.var, "JWT_SECRET");
        let e = config(&[("JWT_SECRET", &"z".repeat(64))]).unwrap_err();
        assert_eq!(e.var, "JWT_SECRET");
        assert!(config(&[("JWT_SECRET", &"ab".repeat(32))]).is_ok());
    }

    #[test]
    fn production_requires_a_secret() {
        let e = config(&[("APP_ENV", "production")]).unwrap_err();
        assert_eq!(e.var, "JWT_SECRET");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let secret = "ab".repeat(32);
        let c = config(&[("JWT_SECRET", &secret)]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(&secret));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let long_prefix = "x".repeat(65);
        for (var, value) in [
            ("BIND_ADDR", "nonsense"),
            ("SNAPSHOT_EVERY", "0"),
            ("SNAPSHOT_EVERY", "ten"),
            ("REDIS_URL", "http://x"),
            ("DATABASE_URL", "mysql://x"),
            ("LOG_FORMAT", "xml"),
            ("IS_WORKER", "maybe"),
            ("FRONTEND_URL", "example.com"),
            ("FRONTEND_URL", "https://app.example.com/app"),
            ("FRONTEND_URL", "https://"),
            ("REDIS_KEY_PREFIX", "has space:"),
            ("REDIS_KEY_PREFIX", long_prefix.as_str()),
            ("RATE_LIMIT_PER_MINUTE", "0"),
            ("RATE_LIMIT_PER_MINUTE", "lots"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "0"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "-1"),
            ("RATE_LIMIT_WINDOW_SECS", "0"),
            ("RATE_LIMIT_WINDOW_SECS", "86401"),
            ("TRUST_PROXY_HEADERS", "yes"),
            ("MAX_JSON_BODY_BYTES", "1mb"),
            ("MAX_JSON_BODY_BYTES", "10"),
            ("GEOIP_DB", "/nonexistent/GeoLite2-City.mmdb"),
            ("GEOIP_DB", "/"),
            ("BLOB_GC_GRACE_SECS", "-1"),
            ("BLOB_GC_GRACE_SECS", "31536001"),
            ("BLOB_GC_EVERY_SECS", "0"),
            ("VERSION_RETENTION", "0"),
            ("VERSION_RETENTION", "all"),
        ] {
            let e = config(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var, "{var}={value}");
            assert!(e.to_string().starts_with("invalid configuration: "));
        }
    }

    #[test]
    fn geoip_db_is_optional_and_must_be_an_existing_file() {
        assert_eq!(config(&[]).unwrap().geoip_db, None);
        let file = std::env::temp_dir().join(format!("geoip-{}.mmdb", uuid::Uuid::now_v7()));
        std::fs::write(&file, b"").unwrap();
        let c = config(&[("GEOIP_DB", file.to_str().unwrap())]);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(c.unwrap().geoip_db, Some(file));
    }

    #[test]
    fn edge_defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.redis_key_prefix, "chronicle:");
        assert_eq!(c.rate_limit_per_minute, 100);
        assert_eq!(c.auth_rate_limit_per_minute, 10);
        assert_eq!(c.tus_rate_limit_per_minute, 10_000);
        assert_eq!(c.rate_limit_window, Duration::from_secs(60));
        assert!(!c.trust_proxy_headers);
        assert_eq!(c.max_json_body_bytes, 1024 * 1024);
        assert_eq!(c.frontend_url, None);
    }

    #[test]
    fn gc_defaults_keep_every_version_and_wait_a_day() {
        let c = config(&[]).unwrap();
        assert_eq!(c.jobs.gc.grace, Duration::from_secs(86_400));
        assert_eq!(c.jobs.gc.every, Duration::from_secs(600));
        assert_eq!(c.jobs.gc.version_retention, None);
        let c = config(&[("VERSION_RETENTION", "3"), ("BLOB_GC_GRACE_SECS", "0")]).unwrap();
        assert_eq!(c.jobs.gc.version_retention, Some(3));
        assert_eq!(c.jobs.gc.grace, Duration::ZERO);
    }

    #[test]
    fn frontend_url_is_normalised_to_an_origin() {
        let c = config(&[("FRONTEND_URL", "https://app.example.com:8443/")]).unwrap();
        assert_eq!(
            c.frontend_url.as_deref(),
            Some("https://app.example.com:8443")
        );
        let c = config(&[("TRUST_PROXY_HEADERS", "true")]).unwrap();
        assert!(c.trust_proxy_headers);
    }
}
