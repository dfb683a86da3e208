//! The rate limiter's checks against a real Redis, many at once: concurrent checks share
//! script calls (src/ratelimit/batch.rs), and each must still get exactly what a call of
//! its own would have given — every count once, its own tenant's epochs, and a change
//! announced before the check was made.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chronicle::cache::standing::{Epoch, StandingEpochs};
use chronicle::ratelimit::{CHECK_TIMEOUT, LimiterError, RateLimiter, connection_manager};
use futures::future::join_all;
use uuid::Uuid;

use crate::common::{eventually_within, redis_url, unique_redis_prefix};
use crate::services::OwnRedis;

const WINDOW: Duration = Duration::from_secs(60);

#[tokio::test]
async fn concurrent_checks_of_one_budget_take_every_count_once() {
    let prefix = unique_redis_prefix();
    let conn = connection_manager(&redis_url()).unwrap();
    let limiter = RateLimiter::new(conn.clone(), &prefix);
    let (hits, limit) = (300u64, 200u64);
    let decisions = join_all((0..hits).map(|_| {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.check("user:ada", limit, WINDOW).await })
    }))
    .await;
    let decisions: Vec<_> = decisions.into_iter().map(|d| d.unwrap().unwrap()).collect();

    let allowed: Vec<_> = decisions.iter().filter(|d| d.allowed).collect();
    assert_eq!(allowed.len() as u64, limit, "exactly the budget is allowed");
    // Each allowed check saw its own count: remaining = limit - count, all distinct.
    let remaining: BTreeSet<u64> = allowed.iter().map(|d| d.remaining).collect();
    assert_eq!(remaining, (0..limit).collect());
    assert!(
        decisions
            .iter()
            .all(|d| d.reset_after <= WINDOW && d.reset_after > Duration::ZERO)
    );
    let mut redis = conn.clone();
    let counted: u64 = redis::cmd("GET")
        .arg(format!("{prefix}ratelimit:user:ada"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(counted, hits, "every check counted once");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}ratelimit:user:ada"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= WINDOW.as_millis() as i64,
        "the window has its TTL: {ttl}"
    );
}

#[tokio::test]
async fn checks_of_many_budgets_and_tenants_at_once_get_their_own_answers() {
    let prefix = unique_redis_prefix();
    let conn = connection_manager(&redis_url()).unwrap();
    let limiter = RateLimiter::new(conn.clone(), &prefix);
    let epochs = StandingEpochs::new(conn.clone(), &prefix);
    let (changing, steady) = (Uuid::now_v7(), Uuid::now_v7());

    let tokens = |answers: &[(Uuid, Epoch)], tenant: Uuid| -> BTreeSet<Option<String>> {
        answers
            .iter()
            .filter(|(t, _)| *t == tenant)
            .map(|(_, e)| e.token().map(|t| t.to_string()))
            .collect()
    };
    let check_all = async || -> Vec<(Uuid, Epoch)> {
        let answers = join_all((0..40).map(|i| {
            let limiter = limiter.clone();
            let tenant = if i % 2 == 0 { changing } else { steady };
            tokio::spawn(async move {
                let (decision, epoch, _listing) = limiter
                    .check_reading_epoch(&format!("user:{i}"), 5, WINDOW, tenant)
                    .await
                    .unwrap();
                assert!(decision.allowed);
                (tenant, epoch)
            })
        }))
        .await;
        answers.into_iter().map(|a| a.unwrap()).collect()
    };

    // Before any change: one trusted epoch per tenant, the same for all of its checks.
    let before = check_all().await;
    let changing_before = tokens(&before, changing);
    let steady_before = tokens(&before, steady);
    assert_eq!(changing_before.len(), 1);
    assert!(changing_before.iter().all(Option::is_some));
    assert_ne!(changing_before, steady_before, "each tenant its own epoch");

    // A change announced (not yet ended) in one tenant: every check of that tenant made
    // after it must distrust its cache; the other tenant's checks in the same calls not.
    epochs.begin_change(changing).await.unwrap();
    let during = check_all().await;
    assert_eq!(tokens(&during, changing), BTreeSet::from([None]));
    assert_eq!(tokens(&during, steady), steady_before);

    // Ended: trusted again, under a new token.
    epochs.end_change(changing).await;
    let after = check_all().await;
    let changing_after = tokens(&after, changing);
    assert_eq!(changing_after.len(), 1);
    assert!(changing_after.iter().all(Option::is_some));
    assert_ne!(changing_after, changing_before);
    assert_eq!(tokens(&after, steady), steady_before);
}

/// Redis hangs (SIGSTOP) with checks in flight and more arriving: each check still gets
/// its answer — an error, for the edge's fallback policy — within its own deadline, not
/// one deadline per batch ahead of it; once the first call has timed out, the breaker
/// answers the next checks at once; and when Redis is back, checks are answered again.
#[tokio::test]
async fn a_hung_redis_costs_each_check_at_most_its_deadline_and_then_nothing() {
    let redis = OwnRedis::start();
    let limiter = RateLimiter::new(
        connection_manager(&redis.url()).unwrap(),
        &unique_redis_prefix(),
    );
    assert!(limiter.check("ip:warm", 10, WINDOW).await.unwrap().allowed);

    redis.freeze();
    let started = Instant::now();
    let answers = join_all((0..50).map(|i| {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            // Arriving over ~100 ms: some join the hung call's batch, some queue behind it.
            tokio::time::sleep(Duration::from_millis(2 * i)).await;
            let asked = Instant::now();
            let answer = limiter.check(&format!("ip:{i}"), 10, WINDOW).await;
            (answer, asked.elapsed())
        })
    }))
    .await;
    let answers: Vec<_> = answers.into_iter().map(|a| a.unwrap()).collect();
    for (answer, waited) in &answers {
        assert!(answer.is_err(), "a hung redis cannot answer: {answer:?}");
        assert!(
            *waited < CHECK_TIMEOUT + Duration::from_millis(150),
            "a check waited {waited:?}, more than its deadline"
        );
    }
    assert!(
        answers
            .iter()
            .any(|(a, _)| matches!(a, Err(LimiterError::Timeout(_)))),
        "the call in flight timed out"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let asked = Instant::now();
    let answer = limiter.check("ip:after", 10, WINDOW).await;
    assert!(
        matches!(answer, Err(LimiterError::BreakerOpen)),
        "{answer:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_millis(100),
        "the open breaker answers at once"
    );

    redis.thaw();
    let allowed = eventually_within(
        "checks are answered again",
        Duration::from_secs(10),
        async || match limiter.check("ip:back", 10, WINDOW).await {
            Ok(decision) => Some(decision.allowed),
            Err(_) => None,
        },
    )
    .await;
    assert!(allowed, "a fresh budget allows");
}
