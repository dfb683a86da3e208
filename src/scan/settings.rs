//! Scanner configuration from the environment (`SCANNER`, `CLAMD_*`, `SIGNATURES_DIR`,
//! `SCAN_ARCHIVE_*`), parsed like `config.rs`: an invalid value is one line naming the
//! variable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::builtin::{ArchiveLimits, BuiltinScanner};
use super::clamd::{ClamdOptions, ClamdScanner};
use super::signatures::SignatureDb;
use super::{DisabledScanner, Scanner};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScannerKind {
    Builtin,
    Clamd,
    /// Scanning switched off: allowed, but warned about at every start.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSettings {
    pub kind: ScannerKind,
    /// `host:port` of clamd; required for `Clamd`.
    pub clamd_addr: Option<String>,
    pub clamd_connect_timeout: Duration,
    pub clamd_io_timeout: Duration,
    pub clamd_breaker_failures: u32,
    pub clamd_breaker_cooldown: Duration,
    /// Extra `.hdb`/`.hsb`/`.ndb` files for the builtin scanner.
    pub signatures_dir: Option<PathBuf>,
    pub archive_limits: ArchiveLimits,
}

fn invalid(var: &str, reason: impl std::fmt::Display) -> String {
    format!("invalid configuration: {var}: {reason}")
}

fn number<T>(
    get: &dyn Fn(&str) -> Option<String>,
    var: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = get(var) else {
        return Ok(default);
    };
    let value: T = raw
        .trim()
        .parse()
        .map_err(|_| invalid(var, format!("expected a number, got {raw:?}")))?;
    if !range.contains(&value) {
        return Err(invalid(
            var,
            format!("must be between {} and {}", range.start(), range.end()),
        ));
    }
    Ok(value)
}

impl ScanSettings {
    /// Parses the settings through `get` (the process environment in production).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());

        let clamd_addr = get("CLAMD_ADDR").map(|a| a.trim().to_string());
        if let Some(addr) = &clamd_addr {
            let valid = addr.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !valid {
                return Err(invalid(
                    "CLAMD_ADDR",
                    format!("expected host:port, e.g. 127.0.0.1:3310, got {addr:?}"),
                ));
            }
        }

        let kind = match get("SCANNER")
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            None if clamd_addr.is_some() => ScannerKind::Clamd,
            None | Some("builtin") => ScannerKind::Builtin,
            Some("clamd") => ScannerKind::Clamd,
            Some("none") => ScannerKind::None,
            Some(other) => {
                return Err(invalid(
                    "SCANNER",
                    format!("expected builtin, clamd or none, got {other:?}"),
                ));
            }
        };
        if kind == ScannerKind::Clamd && clamd_addr.is_none() {
            return Err(invalid("CLAMD_ADDR", "required when SCANNER=clamd"));
        }

        let signatures_dir = get("SIGNATURES_DIR").map(PathBuf::from);
        if let Some(dir) = &signatures_dir
            && !dir.is_dir()
        {
            return Err(invalid(
                "SIGNATURES_DIR",
                format!("{} is not a directory", dir.display()),
            ));
        }

        let defaults = ArchiveLimits::default();
        Ok(Self {
            kind,
            clamd_addr,
            clamd_connect_timeout: Duration::from_millis(number(
                &get,
                "CLAMD_CONNECT_TIMEOUT_MS",
                5_000,
                1..=600_000,
            )?),
            clamd_io_timeout: Duration::from_millis(number(
                &get,
                "CLAMD_TIMEOUT_MS",
                60_000,
                1..=3_600_000,
            )?),
            clamd_breaker_failures: number(&get, "CLAMD_BREAKER_FAILURES", 5, 1..=1_000)?,
            clamd_breaker_cooldown: Duration::from_millis(number(
                &get,
                "CLAMD_BREAKER_COOLDOWN_MS",
                30_000,
                1..=3_600_000,
            )?),
            signatures_dir,
            archive_limits: ArchiveLimits {
                max_archive_bytes: number(
                    &get,
                    "SCAN_ARCHIVE_MAX_BYTES",
                    defaults.max_archive_bytes,
                    1..=u64::MAX,
                )?,
                max_expansion: number(
                    &get,
                    "SCAN_ARCHIVE_MAX_EXPANSION",
                    defaults.max_expansion,
                    1..=1_000_000,
                )?,
                max_members: number(
                    &get,
                    "SCAN_ARCHIVE_MAX_MEMBERS",
                    defaults.max_members,
                    1..=u64::MAX,
                )?,
                max_depth: number(&get, "SCAN_ARCHIVE_MAX_DEPTH", defaults.max_depth, 1..=64)?,
            },
        })
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// Builds the configured scanner (the builtin one loads its signature files here, so a
    /// malformed file stops start-up with `file:line: reason`).
    pub fn build(&self) -> anyhow::Result<Arc<dyn Scanner>> {
        match self.kind {
            ScannerKind::None => {
                tracing::warn!(
                    "SCANNER=none: uploaded files are NOT virus-scanned; every file is passed as clean"
                );
                Ok(Arc::new(DisabledScanner))
            }
            ScannerKind::Clamd => {
                let addr = self
                    .clamd_addr
                    .clone()
                    .context("CLAMD_ADDR is required when SCANNER=clamd")?;
                if let Some(dir) = &self.signatures_dir {
                    tracing::warn!(dir = %dir.display(), "SIGNATURES_DIR is ignored with SCANNER=clamd: clamd reads its own DatabaseDirectory");
                }
                tracing::info!(%addr, "virus scanning with clamd");
                Ok(Arc::new(ClamdScanner::new(ClamdOptions {
                    connect_timeout: self.clamd_connect_timeout,
                    io_timeout: self.clamd_io_timeout,
                    breaker_threshold: self.clamd_breaker_failures,
                    breaker_cooldown: self.clamd_breaker_cooldown,
                    ..ClamdOptions::new(addr)
                })))
            }
            ScannerKind::Builtin => {
                let (db, ignored) = SignatureDb::load(self.signatures_dir.as_deref())
                    .context("loading virus signatures")?;
                if !ignored.is_empty() {
                    tracing::warn!(
                        ?ignored,
                        "SIGNATURES_DIR: files other than .hdb, .hsb and .ndb are not read by the builtin scanner"
                    );
                }
                let scanner = BuiltinScanner::new(db, self.archive_limits);
                tracing::info!(
                    signatures = scanner.signature_count(),
                    "virus scanning with the builtin scanner"
                );
                Ok(Arc::new(scanner))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Verdict;

    const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

    #[test]
    fn settings_choose_the_scanner_and_name_the_bad_variable() {
        let parse = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            ScanSettings::from_lookup(&move |k| {
                vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
            })
        };
        assert_eq!(parse(&[]).unwrap().kind, ScannerKind::Builtin);
        let clamd = parse(&[("CLAMD_ADDR", "127.0.0.1:3310")]).unwrap();
        assert_eq!(clamd.kind, ScannerKind::Clamd);
        assert_eq!(clamd.clamd_addr.as_deref(), Some("127.0.0.1:3310"));
        let forced = parse(&[("CLAMD_ADDR", "clamav:3310"), ("SCANNER", "builtin")]).unwrap();
        assert_eq!(forced.kind, ScannerKind::Builtin);
        assert_eq!(
            parse(&[("SCANNER", "None")]).unwrap().kind,
            ScannerKind::None
        );

        for (vars, var) in [
            (vec![("SCANNER", "clamav")], "SCANNER"),
            (vec![("SCANNER", "clamd")], "CLAMD_ADDR"),
            (vec![("CLAMD_ADDR", "localhost")], "CLAMD_ADDR"),
            (vec![("CLAMD_ADDR", "host:99999")], "CLAMD_ADDR"),
            (vec![("CLAMD_TIMEOUT_MS", "0")], "CLAMD_TIMEOUT_MS"),
            (
                vec![("SCAN_ARCHIVE_MAX_DEPTH", "deep")],
                "SCAN_ARCHIVE_MAX_DEPTH",
            ),
            (
                vec![("SIGNATURES_DIR", "/nonexistent/chronicle")],
                "SIGNATURES_DIR",
            ),
        ] {
            let err = parse(&vars).unwrap_err();
            assert!(
                err.starts_with(&format!("invalid configuration: {var}: ")),
                "{err}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[tokio::test]
    async fn scanner_none_passes_everything_and_clamd_is_built_lazily() {
        let none = ScanSettings::from_lookup(&|k| (k == "SCANNER").then(|| "none".into()))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(none.name(), "none");
        let mut input: &[u8] = EICAR;
        assert_eq!(none.scan(&mut input).await.unwrap(), Verdict::Clean);
        // Building the clamd scanner does not connect (start-up must not need clamd up).
        let clamd =
            ScanSettings::from_lookup(&|k| (k == "CLAMD_ADDR").then(|| "127.0.0.1:1".into()))
                .unwrap()
                .build()
                .unwrap();
        assert_eq!(clamd.name(), "clamd");
    }
}
