//! Rate limiting at the HTTP edge: which key a request counts against, which policy applies,
//! the `429` and `RateLimit-*` headers, and what happens when Redis cannot answer.
//!
//! Two policies: `RateLimitLayer::global` (every route except health and metrics, per
//! principal when the request carries a valid access token, otherwise per client IP; tus
//! `PATCH`/`HEAD` on the caller's own upload on a separate budget: src/api/edge/budget.rs) and
//! `RateLimitLayer::auth`, stricter and per IP, for the `/v1/auth` router:
//!
//! ```ignore
//! let auth = Router::new()
//!     .route("/v1/auth/login", post(login))
//!     .layer(RateLimitLayer::auth(&state));
//! ```
//!
//! The sign-in use case adds a per-account budget (`commands::accounts::guard`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use tower::{Layer, Service};
use uuid::Uuid;

pub use crate::api::edge::budget::PrincipalBudgets;
use crate::api::edge::budget::{self, Principal};
use crate::cache::standing::{Epoch, PrefetchedEpoch};
use crate::error::AppError;
use crate::ratelimit::{Decision, RateLimiter, bucket, client_ip};
use crate::state::AppState;

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Probes and scrapes must never be refused: an orchestrator that cannot probe restarts
/// healthy instances, and a missing scrape hides the very overload being limited.
pub(in crate::api) const EXEMPT: &[&str] = &["/health", "/health/ready", "/metrics"];
/// The web console's static files (src/console/assets.rs): a page loads several, the
/// browser revalidates them, and serving them costs no more than a 429 would.
const STATIC_PREFIXES: &[&str] = &["/assets/"];

/// What to do when Redis gives no answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenRedisDown {
    /// Serve the request unlimited (a warning is logged once per outage).
    FailOpen,
    /// Serve safe methods (GET/HEAD/OPTIONS); refuse the rest with `503`.
    FailClosedForWrites,
}

#[derive(Debug, Clone)]
pub struct RatePolicy {
    /// Namespaces the keys, so one client's budgets under different policies are separate.
    pub name: &'static str,
    pub limit: u64,
    pub window: Duration,
    pub exempt: &'static [&'static str],
    pub when_redis_down: WhenRedisDown,
}

/// A tower layer enforcing one policy per client IP (or per principal, with
/// [`PrincipalBudgets`]); usable with `Router::layer` on any router.
#[derive(Clone)]
pub struct RateLimitLayer {
    enforcer: Arc<Enforcer>,
}

struct Enforcer {
    limiter: RateLimiter,
    policy: RatePolicy,
    trust_proxy_headers: bool,
    principals: Option<PrincipalBudgets>,
}

impl RateLimitLayer {
    pub fn new(limiter: RateLimiter, policy: RatePolicy, trust_proxy_headers: bool) -> Self {
        Self {
            enforcer: Arc::new(Enforcer {
                limiter,
                policy,
                trust_proxy_headers,
                principals: None,
            }),
        }
    }

    /// Authenticated requests count against their principal's budget rather than their
    /// IP's; see src/api/edge/budget.rs.
    pub fn per_principal(self, principals: PrincipalBudgets) -> Self {
        let e = &self.enforcer;
        Self {
            enforcer: Arc::new(Enforcer {
                limiter: e.limiter.clone(),
                policy: e.policy.clone(),
                trust_proxy_headers: e.trust_proxy_headers,
                principals: Some(principals),
            }),
        }
    }

    /// `RATE_LIMIT_PER_MINUTE` per principal (or client IP when anonymous) and window;
    /// health and metrics exempt; uploads in progress on their own budget. Fails open:
    /// without Redis the API keeps serving (see docs/architecture.md, Edge).
    pub fn global(state: &AppState) -> Self {
        let c = &state.config;
        let principals = PrincipalBudgets {
            tokens: state.tokens.clone(),
            db: state.db.clone(),
            upload_limit: c.tus_rate_limit_per_minute,
        };
        Self::new(
            state.limiter.clone(),
            RatePolicy {
                name: "global",
                limit: c.rate_limit_per_minute,
                window: c.rate_limit_window,
                exempt: EXEMPT,
                when_redis_down: WhenRedisDown::FailOpen,
            },
            c.trust_proxy_headers,
        )
        .per_principal(principals)
    }

    /// `AUTH_RATE_LIMIT_PER_MINUTE` per client IP, for login/register/refresh. Without
    /// Redis, state-changing requests are refused: credential guessing must never run
    /// unlimited.
    pub fn auth(state: &AppState) -> Self {
        let c = &state.config;
        Self::new(
            state.limiter.clone(),
            auth_policy(c.auth_rate_limit_per_minute, c.rate_limit_window),
            c.trust_proxy_headers,
        )
    }
}

pub fn auth_policy(limit: u64, window: Duration) -> RatePolicy {
    RatePolicy {
        name: "auth",
        limit,
        window,
        exempt: &[],
        when_redis_down: WhenRedisDown::FailClosedForWrites,
    }
}

fn unavailable() -> AppError {
    AppError::Unavailable("rate limiting is temporarily unavailable; retry shortly".into())
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            enforcer: self.enforcer.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    enforcer: Arc<Enforcer>,
}

impl<S> Service<Request> for RateLimitService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The clone is not ready; keep the ready one for this call (tower's usual dance).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let enforcer = self.enforcer.clone();
        Box::pin(async move { Ok(enforcer.handle(request, inner).await) })
    }
}

impl Enforcer {
    async fn handle<S>(&self, request: Request, mut inner: S) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible>,
    {
        let policy = &self.policy;
        let path = request.uri().path();
        if policy.exempt.contains(&path) || STATIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return call(&mut inner, request).await;
        }
        let (client, limit, person) = match self.budget_of(&request) {
            Budget::Ip(key) => (key, policy.limit, None),
            Budget::Principal { principal, upload } => {
                let person = match principal {
                    Principal::User { tenant, .. } => Some(tenant),
                    Principal::ApiKey { .. } => None,
                };
                let (key, limit) = self.principal_budget(principal, upload).await;
                (key, limit, person)
            }
        };
        let key = format!("{}:{client}", policy.name);

        // A person's request also needs its tenant's standing epoch: read in the same
        // round trip, before anything of the request reads the log (src/auth/standing.rs).
        // When that Redis just failed, the epoch is `Untrusted`: the request reads the log
        // instead of waiting for the same Redis a second time.
        let mut request = request;
        let checked = match person {
            Some(tenant) => {
                let (checked, epoch, listing) = match self
                    .limiter
                    .check_reading_epoch(&key, limit, policy.window, tenant)
                    .await
                {
                    Ok((decision, epoch, listing)) => (Ok(decision), epoch, listing),
                    Err(err) => (Err(err), Epoch::Untrusted, Epoch::Untrusted),
                };
                request.extensions_mut().insert(PrefetchedEpoch {
                    tenant,
                    epoch,
                    listing,
                });
                checked
            }
            None => self.limiter.check(&key, limit, policy.window).await,
        };
        match checked {
            Ok(decision) if decision.allowed => {
                let mut response = call(&mut inner, request).await;
                write_headers(response.headers_mut(), &decision, policy.window);
                response
            }
            Ok(decision) => {
                tracing::info!(policy = policy.name, %client, "rate limited");
                let mut response = AppError::RateLimited {
                    retry_after_secs: decision.reset_secs(),
                }
                .into_response();
                write_headers(response.headers_mut(), &decision, policy.window);
                response
            }
            Err(err) => {
                let safe = matches!(
                    *request.method(),
                    Method::GET | Method::HEAD | Method::OPTIONS
                );
                if policy.when_redis_down == WhenRedisDown::FailClosedForWrites && !safe {
                    tracing::warn!(policy = policy.name, error = %err, "refused: rate limiter unavailable");
                    unavailable().into_response()
                } else {
                    // The limiter warned once for this outage; per request it would flood.
                    tracing::debug!(policy = policy.name, error = %err, "served without a rate-limit decision");
                    call(&mut inner, request).await
                }
            }
        }
    }

    /// Whose budget `request` spends: its IP's (`ip:…`) or its principal's, with the tus
    /// upload it addresses for [`Self::principal_budget`]. No await here: the request's
    /// body is not `Sync`, so it cannot be held across one.
    fn budget_of(&self, request: &Request) -> Budget {
        let principal = self
            .principals
            .as_ref()
            .and_then(|p| budget::principal(request, &p.tokens));
        let Some(principal) = principal else {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip());
            let client = client_ip(request.headers(), peer, self.trust_proxy_headers)
                .map(bucket)
                .unwrap_or_else(|| "unknown".to_string());
            return Budget::Ip(format!("ip:{client}"));
        };
        Budget::Principal {
            principal,
            upload: budget::tus_upload(request.method(), request.uri().path()),
        }
    }

    /// `user:…` with the request limit, or `upload:user:…` with the uploads' limit for a
    /// `PATCH`/`HEAD` on an upload the principal owns.
    async fn principal_budget(&self, principal: Principal, upload: Option<Uuid>) -> (String, u64) {
        if let Some(budgets) = &self.principals
            && let Some(upload) = upload
            && budget::owns_upload(&budgets.db, principal, upload).await
        {
            return (format!("upload:{}", principal.key()), budgets.upload_limit);
        }
        (principal.key(), self.policy.limit)
    }
}

enum Budget {
    Ip(String),
    Principal {
        principal: Principal,
        upload: Option<Uuid>,
    },
}

async fn call<S>(inner: &mut S, request: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    match inner.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The IETF `RateLimit-*` fields (draft-ietf-httpapi-ratelimit-headers). When an inner,
/// more specific policy (auth) already reported a tighter budget, that one is kept.
fn write_headers(headers: &mut HeaderMap, d: &Decision, window: Duration) {
    let tighter_already = headers
        .get(&RATELIMIT_REMAINING)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|existing| existing <= d.remaining);
    if tighter_already {
        return;
    }
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(d.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(d.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(d.reset_secs()));
    if let Ok(policy) = HeaderValue::from_str(&format!("{};w={}", d.limit, window.as_secs())) {
        headers.insert(RATELIMIT_POLICY, policy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tighter_inner_budget_is_not_overwritten() {
        let d = |limit, remaining| Decision {
            allowed: true,
            limit,
            remaining,
            reset_after: Duration::from_secs(30),
        };
        let mut h = HeaderMap::new();
        write_headers(&mut h, &d(10, 3), Duration::from_secs(60));
        write_headers(&mut h, &d(100, 90), Duration::from_secs(60));
        assert_eq!(h[&RATELIMIT_LIMIT], "10");
        assert_eq!(h[&RATELIMIT_REMAINING], "3");
        assert_eq!(h[&RATELIMIT_POLICY], "10;w=60");
        write_headers(&mut h, &d(100, 1), Duration::from_secs(60));
        assert_eq!(h[&RATELIMIT_REMAINING], "1");
        assert_eq!(h[&RATELIMIT_RESET], "30");
    }
}
