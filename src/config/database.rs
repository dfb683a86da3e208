//! `DATABASE_POOLER`: what sits between Chronicle and Postgres on `DATABASE_URL`
//! (docs/deployment.md, "Connection pooling"). A transaction-mode pooler hands each
//! transaction (or each statement outside one) whichever server connection is free, so
//! nothing may rely on session state: the pools log in as their runtime role instead of
//! switching with `SET ROLE`, and migrations (a session advisory lock) and LISTEN go to
//! `DATABASE_DIRECT_URL`, which is therefore required.

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooler {
    /// Direct connections, or a session-mode pooler: one client connection is one
    /// server session from start to end.
    #[default]
    None,
    /// A transaction-mode pooler (PgBouncer `pool_mode = transaction`, 1.21 or later with
    /// `max_prepared_statements` > 0).
    Transaction,
}

impl Pooler {
    pub(super) fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        has_direct_url: bool,
    ) -> Result<Self, ConfigError> {
        let pooler = match get("DATABASE_POOLER").as_deref().map(str::trim) {
            None | Some("none") | Some("session") => Pooler::None,
            Some("transaction") => Pooler::Transaction,
            Some(other) => {
                return Err(invalid(
                    "DATABASE_POOLER",
                    format!("expected none, session or transaction, got {other:?}"),
                ));
            }
        };
        if pooler == Pooler::Transaction && !has_direct_url {
            return Err(invalid(
                "DATABASE_DIRECT_URL",
                "is required with DATABASE_POOLER=transaction (migrations and LISTEN need a session)",
            ));
        }
        Ok(pooler)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Pooler, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let direct = map.contains_key("DATABASE_DIRECT_URL");
        Pooler::from_lookup(&|k: &str| map.get(k).cloned(), direct)
    }

    #[test]
    fn transaction_mode_needs_a_direct_url() {
        assert_eq!(parse(&[]).unwrap(), Pooler::None);
        assert_eq!(
            parse(&[("DATABASE_POOLER", "session")]).unwrap(),
            Pooler::None
        );
        let err = parse(&[("DATABASE_POOLER", "transaction")]).unwrap_err();
        assert_eq!(err.var, "DATABASE_DIRECT_URL");
        let ok = parse(&[
            ("DATABASE_POOLER", "transaction"),
            ("DATABASE_DIRECT_URL", "postgres://root@127.0.0.1:5432/x"),
        ]);
        assert_eq!(ok.unwrap(), Pooler::Transaction);
        assert_eq!(
            parse(&[("DATABASE_POOLER", "statement")]).unwrap_err().var,
            "DATABASE_POOLER"
        );
    }
}
