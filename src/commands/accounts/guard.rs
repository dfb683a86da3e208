//! The budgets of the sign-in use cases, on top of the per-IP auth budget of the HTTP
//! edge: a per-account budget of login attempts ([`check_auth_attempt`]), and how
//! registration limits email enumeration (docs/architecture.md,
//! "Accounts"). Emails are global (one login for one account), so a registration with
//! a taken email must fail, and it answers `409 already_exists` like before: a person
//! who forgot they had an account needs to be told, and without an email-confirmation
//! step a generic "accepted" could not hide the truth anyway (logging in with the
//! password just sent would tell). What is limited is the *rate* at which anyone learns
//! it: each client IP may receive at most [`TAKEN_PER_WINDOW`] `already_exists` answers
//! per [`WINDOW`]; after that **every** registration from that IP is refused with
//! `429 rate_limited` until the window ends — taken email or not, so the refusal itself
//! says nothing. Registrations with new emails do not count. This sits on top of the
//! per-IP auth budget (`AUTH_RATE_LIMIT_PER_MINUTE`).

use std::net::IpAddr;
use std::time::Duration;

use crate::error::AppError;
use crate::ratelimit::{CHECK_TIMEOUT, Decision, bucket};
use crate::state::AppState;

/// `already_exists` answers one IP may receive per window.
pub const TAKEN_PER_WINDOW: u64 = 5;
pub const WINDOW: Duration = Duration::from_secs(3600);

fn key(ip: IpAddr) -> String {
    format!("register:taken:{}", bucket(ip))
}

fn unavailable() -> AppError {
    AppError::Unavailable("rate limiting is temporarily unavailable; retry shortly".into())
}

/// `429` once the IP has spent its budget of taken-email answers. Counts nothing.
pub async fn refuse_if_spent(state: &AppState, ip: Option<IpAddr>) -> Result<(), AppError> {
    let Some(ip) = ip else { return Ok(()) };
    // The limiter's own key (`RateLimiter::check` writes it), read without counting.
    let redis_key = format!("{}ratelimit:{}", state.config.redis_key_prefix, key(ip));
    let mut conn = state.redis_conn.clone();
    let mut pipe = redis::pipe();
    pipe.get(&redis_key).pttl(&redis_key);
    let read = pipe.query_async::<(Option<u64>, i64)>(&mut conn);
    let (count, ttl_ms) = match tokio::time::timeout(CHECK_TIMEOUT, read).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "refusing a registration: rate limiter unavailable");
            return Err(unavailable());
        }
        Err(_) => {
            tracing::warn!("refusing a registration: rate limiter did not answer");
            return Err(unavailable());
        }
    };
    if count.unwrap_or(0) >= TAKEN_PER_WINDOW {
        return Err(AppError::RateLimited {
            retry_after_secs: (ttl_ms.max(0) as u64).div_ceil(1000).max(1),
        });
    }
    Ok(())
}

/// Counts one `already_exists` answer against the IP.
pub async fn count_taken(state: &AppState, ip: Option<IpAddr>) -> Result<(), AppError> {
    let Some(ip) = ip else { return Ok(()) };
    match state
        .limiter
        .check(&key(ip), TAKEN_PER_WINDOW, WINDOW)
        .await
    {
        Ok(_) => Ok(()),
        Err(err) => {
            tracing::warn!(error = %err, "refusing a registration: rate limiter unavailable");
            Err(unavailable())
        }
    }
}

/// Counts one authentication attempt against `key`, typically [`account_key`], under the
/// auth budget. `429` when over it; `503` when Redis cannot answer, since a login that
/// skipped its per-account limit would allow unlimited password guessing on one account
/// from many IPs.
pub async fn check_auth_attempt(state: &AppState, key: &str) -> Result<Decision, AppError> {
    let c = &state.config;
    match state
        .limiter
        .check(key, c.auth_rate_limit_per_minute, c.rate_limit_window)
        .await
    {
        Ok(d) if d.allowed => Ok(d),
        Ok(d) => Err(AppError::RateLimited {
            retry_after_secs: d.reset_secs(),
        }),
        Err(err) => {
            tracing::warn!(error = %err, "refusing an auth attempt: rate limiter unavailable");
            Err(unavailable())
        }
    }
}

/// The per-account key for login attempts; case and surrounding space do not make a new
/// budget.
pub fn account_key(email: &str) -> String {
    format!("login:account:{}", email.trim().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_keys_ignore_case_and_spaces() {
        assert_eq!(
            account_key(" Ada@Example.com "),
            "login:account:ada@example.com"
        );
    }
}
