//! Which request budget a request counts against (the global rate-limit policy):
//!
//! - **an anonymous request** (no token, or one that does not verify): its client IP;
//! - **an authenticated request**: its principal (a person, or an API key: each key has
//!   a budget of its own), whatever address it comes from — offices
//!   and mobile carriers put many people behind one IP, and one person's requests must
//!   not use up their colleagues' budget;
//! - **`PATCH`/`HEAD` on a tus upload the principal owns**: the principal's separate, generous
//!   upload budget (`TUS_RATE_LIMIT_PER_MINUTE`). tus clients do not retry a `429`, so an
//!   upload in progress must never be stopped by the request budget. Creating an upload
//!   (`POST /v1/uploads`) still spends the request budget, and so does touching an upload
//!   that does not exist or belongs to someone else: the exemption cannot be had by
//!   inventing upload ids.
//!
//! The token is only *verified* (signature, expiry: no I/O), once per request, by the
//! layer in front of the limiter (src/auth/credentials.rs). Whether its session is still
//! alive is the handler's business; a revoked but genuine token still counts against its
//! own principal, which is where its requests belong.

use axum::extract::Request;
use axum::http::Method;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::credentials::Bearer;
use crate::auth::{Credentials, TokenKeys};

/// Budgets per principal instead of per IP (the global policy): how to verify a token
/// (for a request that did not pass the verifying layer), where to look up an upload's
/// owner, and the uploads' own budget.
#[derive(Clone)]
pub struct PrincipalBudgets {
    pub tokens: TokenKeys,
    pub db: PgPool,
    /// Requests per window of `PATCH`/`HEAD` on the principal's own tus uploads.
    pub upload_limit: u64,
}

/// Who is asking, for budgeting: a person, or an API key with a budget of its own
/// (not its creator's: a busy integration must not lock its admin out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    User { tenant: Uuid, user: Uuid },
    ApiKey { tenant: Uuid, key: Uuid },
}

impl Principal {
    /// The budget key: one per principal, across every instance and address.
    pub fn key(&self) -> String {
        match self {
            Principal::User { tenant, user } => format!("user:{tenant}:{user}"),
            Principal::ApiKey { tenant, key } => format!("key:{tenant}:{key}"),
        }
    }

    /// The tenant, and the id that owns what this principal creates.
    fn owner(&self) -> (Uuid, Uuid) {
        match *self {
            Principal::User { tenant, user } => (tenant, user),
            Principal::ApiKey { tenant, key } => (tenant, key),
        }
    }
}

/// The principal of a request whose `Authorization: Bearer` access token verified (as
/// the layer found it; verified here only if the request did not pass the layer).
pub fn principal(request: &Request, tokens: &TokenKeys) -> Option<Principal> {
    let verified;
    let credentials = match request.extensions().get::<Credentials>() {
        Some(credentials) => credentials,
        None => {
            verified = Credentials::from_headers(request.headers(), tokens);
            &verified
        }
    };
    principal_of(credentials)
}

/// The principal whose verified token or key `credentials` holds, if any. A key is
/// verified against the log by the layer: one that is revoked or unknown spends its
/// client IP's budget, not the key's.
pub fn principal_of(credentials: &Credentials) -> Option<Principal> {
    Some(match credentials.bearer()? {
        Bearer::Token(claims) => Principal::User {
            tenant: claims.tenant,
            user: claims.sub,
        },
        Bearer::Key(grant) => Principal::ApiKey {
            tenant: grant.tenant_id,
            key: grant.key_id,
        },
        // A person in the console spends the same budget as with a token.
        Bearer::Browser(grant) => Principal::User {
            tenant: grant.tenant_id,
            user: grant.user_id,
        },
    })
}

/// The upload id of a tus `PATCH` or `HEAD` (`/v1/uploads/{id}`), the two requests a
/// client repeats for every chunk of one upload.
pub fn tus_upload(method: &Method, path: &str) -> Option<Uuid> {
    if method != Method::PATCH && method != Method::HEAD {
        return None;
    }
    path.strip_prefix("/v1/uploads/")?.parse().ok()
}

/// Whether `principal` started upload `id`: one indexed read of the upload's first event
/// (the log, not a read table, so a `PATCH` right after creation already qualifies).
/// When the lookup fails the request is ordinary traffic (the handler fails the same way).
pub async fn owns_upload(db: &PgPool, principal: Principal, id: Uuid) -> bool {
    let (tenant, user) = principal.owner();
    let owner: Result<Option<Option<String>>, _> = sqlx::query_scalar(
        "SELECT payload->'UploadStarted'->>'owner_id' FROM events
          WHERE tenant_id = $1 AND aggregate_type = 'upload' AND aggregate_id = $2
            AND sequence = 1",
    )
    .bind(tenant)
    .bind(id.to_string())
    .fetch_optional(db)
    .await;
    match owner {
        Ok(owner) => owner.flatten().is_some_and(|o| o == user.to_string()),
        Err(err) => {
            tracing::debug!(error = %err, "upload owner lookup failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_patch_and_head_on_an_upload_url_are_upload_traffic() {
        let id = Uuid::now_v7();
        let at = format!("/v1/uploads/{id}");
        assert_eq!(tus_upload(&Method::PATCH, &at), Some(id));
        assert_eq!(tus_upload(&Method::HEAD, &at), Some(id));
        assert_eq!(tus_upload(&Method::DELETE, &at), None);
        assert_eq!(tus_upload(&Method::POST, "/v1/uploads"), None);
        assert_eq!(tus_upload(&Method::PATCH, "/v1/uploads/not-a-uuid"), None);
        assert_eq!(tus_upload(&Method::PATCH, &format!("/v1/files/{id}")), None);
    }

    #[test]
    fn a_principal_is_read_only_from_a_verifying_bearer_token() {
        use axum::http::HeaderMap;
        use axum::http::header::AUTHORIZATION;
        let principal =
            |h: &HeaderMap, tokens: &TokenKeys| principal_of(&Credentials::from_headers(h, tokens));
        let tokens = TokenKeys::new(&"ab".repeat(32));
        let (tenant, user) = (Uuid::now_v7(), Uuid::now_v7());
        let token = tokens
            .issue_access(
                user,
                tenant,
                crate::aggregates::Role::User,
                Uuid::now_v7(),
                chrono::Utc::now().timestamp(),
            )
            .unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(principal(&h, &tokens), None);
        h.insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        assert_eq!(
            principal(&h, &tokens),
            Some(Principal::User { tenant, user })
        );
        let other = TokenKeys::new(&"cd".repeat(32));
        assert_eq!(principal(&h, &other), None, "a forged token is anonymous");
        h.insert(AUTHORIZATION, "Bearer garbage".parse().unwrap());
        assert_eq!(principal(&h, &tokens), None);
    }
}
