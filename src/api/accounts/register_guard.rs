//! How `POST /v1/auth/register` limits email enumeration (docs/architecture.md,
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

use crate::api::edge::ratelimit::bucket;
use crate::error::AppError;
use crate::ratelimit::CHECK_TIMEOUT;
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
