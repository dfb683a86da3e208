//! Password hashing: Argon2id with OWASP's recommended parameters (19 MiB, 2 passes,
//! 1 lane). Hashes are PHC strings carrying their own parameters, so a login can tell
//! when a stored hash was made with older parameters and rehash it (docs/architecture.md).

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};

/// The parameters new hashes are made with.
pub fn current_params() -> Params {
    Params::new(
        Params::DEFAULT_M_COST,
        Params::DEFAULT_T_COST,
        Params::DEFAULT_P_COST,
        None,
    )
    .expect("OWASP parameters are valid")
}

fn hasher(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Minimum length only (NIST 800-63B): composition rules do not help.
pub const MIN_PASSWORD_LEN: usize = 10;
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Hashes `password` with a fresh random salt. CPU-heavy: call from `spawn_blocking`.
pub fn hash(password: &str) -> anyhow::Result<String> {
    hasher(current_params())
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// Result of checking a password against a stored hash.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Wrong,
    Right,
    /// Right, but the hash uses outdated parameters: store a new one.
    RightNeedsRehash,
}

/// Verifies in constant time for the stored parameters. CPU-heavy: `spawn_blocking`.
pub fn verify(password: &str, stored: &str) -> Verdict {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Verdict::Wrong;
    };
    if hasher(current_params())
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Verdict::Wrong;
    }
    let current = current_params();
    let outdated = parsed.algorithm.as_str() != "argon2id"
        || Params::try_from(&parsed).is_ok_and(|p| {
            (p.m_cost(), p.t_cost(), p.p_cost())
                != (current.m_cost(), current.t_cost(), current.p_cost())
        });
    if outdated {
        Verdict::RightNeedsRehash
    } else {
        Verdict::Right
    }
}

/// A hash to verify against when the account does not exist, so "no such user" costs
/// as much time as "wrong password" and timing reveals nothing.
pub fn decoy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$8w5TyX2ZR5ZJ1VwL1ksq5m0a9pPGsGvDX6iIfq9nd5k"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_and_wrong_passwords() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(verify("correct horse battery", &h), Verdict::Right);
        assert_eq!(verify("correct horse batterx", &h), Verdict::Wrong);
        assert_eq!(verify("anything", "not a phc string"), Verdict::Wrong);
        assert_eq!(verify("anything", decoy_hash()), Verdict::Wrong);
    }

    #[test]
    fn hashes_with_old_parameters_are_flagged_for_rehash() {
        let weak = Params::new(8 * 1024, 1, 1, None).unwrap();
        let old = hasher(weak)
            .hash_password(b"correct horse battery")
            .unwrap()
            .to_string();
        assert_eq!(
            verify("correct horse battery", &old),
            Verdict::RightNeedsRehash
        );
    }
}
