//! Idempotency keys for every state-changing request that carries an
//! `Idempotency-Key` header:
//! - same key + same request within 24 h → the stored status and body again, byte for
//!   byte, with `Idempotency-Replayed: true`, and no second effect;
//! - same key + a different request → `422 idempotency_key_reused`;
//! - a concurrent request with the same key → `409 idempotency_key_in_progress`;
//! - the key is marked `committed` in the same transaction as the command's events
//!   (store/idempotency.rs), so after a crash between commit and response a retry is
//!   refused rather than run twice;
//! - a client that hangs up is not a crash: once the body is in, claim, handler and
//!   answer run to their end on a task of their own, so its retry finds the answer.
//!
//! **Authentication and authorization come first.** A request that carries credentials
//! is authenticated like any handler does it (token, live session of the token's
//! subject, not banned) before a key is looked at: a replay never reaches a logged-out,
//! revoked or banned caller. Keys are scoped to the caller (tenant and user, or
//! "anonymous" for registration, the only keyed route open without credentials; an
//! anonymous keyed request to any other route goes straight to its handler and gets
//! `401`), so a replay only ever goes to the principal who made the
//! first request; the caller's role is stored with the key and a replay to a caller
//! whose role changed since is refused (`403`), since the handler's authorization was
//! decided for the old role. `401` and `403` answers are never stored: they are not
//! effects, and the same request may succeed once the caller's standing changes.
//!
//! The layer runs only for a route and method that exist (a route layer, see
//! `api::router`): a wrong method is `405` with `Allow` and an unknown path `404`, with
//! no key claimed or compared.
//!
//! Login, refresh and logout are excluded: replaying a response would hand out tokens
//! again. tus requests carrying bytes (`Content-Type: application/offset+octet-stream`)
//! take no key: they are streamed, not buffered, and tus's offsets make a repeated
//! `PATCH` a `409`; a repeated creation-with-upload makes a second upload, which expires
//! unused (a client that needs a keyed creation sends it without bytes). Streaming
//! uploads (multipart) are keyed too, but their bodies are not buffered: the upload
//! handler claims the key once the body is received, with a fingerprint of its SHA-256
//! and metadata (`streamed_keys.rs`).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::TenantContext;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::idempotency::{self as keys, CURRENT, IdempotencyMarker};

pub const HEADER: &str = "idempotency-key";
/// The one keyed route anonymous callers may use.
const REGISTER: &str = "/v1/auth/register";

/// Routes whose requests are never keyed. Creating an API key is among them: its answer
/// holds the secret, which must not be kept in `idempotency_keys` (a retry makes a new
/// key; the lost one is never usable without its secret, and can be revoked).
pub(in crate::api) const EXCLUDED: &[&str] = &[
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/auth/logout",
    "/v1/api-keys",
];

/// Who is asking: the key scope and the caller's current role (`None` when anonymous).
pub(in crate::api) struct Principal {
    pub scope: String,
    pub role: Option<String>,
}

/// Authenticates a request that carries credentials exactly as a handler would (the
/// `TenantContext` extractor); a request without them is anonymous.
async fn principal(state: &AppState, request: Request) -> Result<(Principal, Request), AppError> {
    if !credentialed(request.headers()) {
        let anonymous = Principal {
            scope: "anonymous".to_string(),
            role: None,
        };
        return Ok((anonymous, request));
    }
    let (mut parts, body) = request.into_parts();
    let ctx = TenantContext::from_request_parts(&mut parts, state).await?;
    let principal = Principal {
        scope: format!("{}:{}", ctx.tenant_id, ctx.user_id),
        role: Some(ctx.role.as_str().to_string()),
    };
    Ok((principal, Request::from_parts(parts, body)))
}

/// Whether the request carries a tus chunk (`PATCH`, or a creation with upload). Such a
/// request takes no key: its body is streamed to storage, never buffered here (a chunk
/// may be gigabytes), and tus makes it safe to repeat by itself — a `PATCH` must name
/// the upload's current `Upload-Offset`, so a repeat gets `409`.
fn carries_tus_bytes(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/offset+octet-stream"))
}

/// Whether the request carries credentials: a bearer value, or the console's cookie.
fn credentialed(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(AUTHORIZATION) || crate::auth::browser::has_session_cookie(headers)
}

fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

pub(in crate::api) enum Claim {
    /// This request owns the key: run it, then `settle` it.
    Run(ClaimedKey),
    Replay(Response),
    Refuse(AppError),
}

pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let keyed = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) && request.headers().contains_key(HEADER)
        && !EXCLUDED.contains(&request.uri().path())
        && !carries_tus_bytes(request.headers());
    // Registration is the one state-changing route open to anonymous callers; anywhere
    // else a request without credentials goes straight to its handler, which answers 401:
    // an anonymous key must neither be claimed nor be compared with another caller's.
    let anonymous_elsewhere = !credentialed(request.headers()) && request.uri().path() != REGISTER;
    if !keyed || anonymous_elsewhere {
        return next.run(request).await;
    }
    let streamed = request
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"multipart/"));
    let answer = if streamed {
        super::streamed_keys::run_keyed(&state, request, next).await
    } else {
        run_keyed(&state, request, next).await
    };
    match answer {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

/// The key of a keyed request, checked; then the caller, authenticated.
pub(in crate::api) async fn key_and_principal(
    state: &AppState,
    request: Request,
) -> Result<(String, Principal, Request), AppError> {
    let key = request.headers()[HEADER]
        .to_str()
        .unwrap_or_default()
        .to_string();
    if !valid_key(&key) {
        return Err(AppError::BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        ));
    }
    let (principal, request) = principal(state, request).await?;
    Ok((key, principal, request))
}

async fn run_keyed(state: &AppState, request: Request, next: Next) -> Result<Response, AppError> {
    let (key, principal, request) = key_and_principal(state, request).await?;
    let (parts, body) = request.into_parts();
    let limit = state.config.max_json_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        // As `JsonBody` answers: over the limit is 413, a body that cannot be read (a
        // broken chunked encoding, a client gone mid-body) 400.
        if e.into_inner().is::<http_body_util::LengthLimitError>() {
            super::json::too_large(limit)
        } else {
            AppError::BadRequest("the request body could not be read".into())
        }
    })?;
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(parts.uri.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let fingerprint = hex::encode(hasher.finalize());

    // With the body in, the rest runs to its end on a task of its own: a client that
    // hangs up (a timeout, a dropped network) retries with its key, and must then find
    // its answer stored, not the key held `in_progress` for its lease or `committed`
    // with the answer lost.
    let state = state.clone();
    crate::commands::to_the_end(async move {
        let claimed = match claim(&state, &principal, &key, &fingerprint, Uuid::new_v4()).await? {
            Claim::Replay(response) => return Ok(response),
            Claim::Refuse(err) => return Err(err),
            Claim::Run(claimed) => claimed,
        };
        let marker = IdempotencyMarker {
            scope: principal.scope.clone(),
            key: key.clone(),
            claim: claimed.claim,
        };
        let request = Request::from_parts(parts, Body::from(bytes));
        let response = CURRENT.scope(marker, next.run(request)).await;
        settle(&state, claimed, response).await
    })
    .await
}

/// Stores the answer of a request that owned its key, or frees the key when nothing
/// was done: a server error or a lost race (`409 conflict`; a retry may run), or a
/// refusal of the caller (`401`/`403`: not an effect, and the caller's standing may
/// change).
pub(in crate::api) async fn settle(
    state: &AppState,
    mut claimed: ClaimedKey,
    response: Response,
) -> Result<Response, AppError> {
    let (scope, key, claim) = (claimed.scope.as_str(), claimed.key.as_str(), claimed.claim);
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("buffering response: {e}")))?;
    let refused = matches!(
        parts.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    );
    // `409 conflict` means a concurrent change won and nothing was done: retrying the
    // request is safe, so its key must not keep answering `conflict` for 24 hours.
    let lost_race = parts.status == StatusCode::CONFLICT
        && serde_json::from_slice::<crate::error::ErrorBody>(&body)
            .is_ok_and(|e| e.error.code == "conflict");
    if parts.status.is_server_error() || refused || lost_race {
        // Nothing was stored as done; free the key so a retry can run (a key already
        // marked committed stays: its effect happened).
        keys::release(&state.db, scope, key, claim).await?;
    } else {
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        keys::complete(
            &state.db,
            scope,
            key,
            claim,
            parts.status.as_u16(),
            content_type,
            &body,
        )
        .await?;
    }
    claimed.settled = true;
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// A key this request claimed (`Claim::Run`): `settle`d with the request's answer, or
/// freed when dropped unsettled. A handler that panics (the panic unwinds through its
/// task, dropping this) must not leave the key `in_progress` for its lease, answering
/// the client's retries `409` for a minute for a request that did nothing. Freeing
/// deletes only an `in_progress` key of this claim: one marked `committed` in the
/// events' transaction stays, as its effect happened, and one a retry took over is the
/// retry's.
///
/// While it lives, the key's lease is renewed (every third of `IDEMPOTENCY_LEASE_SECS`):
/// a request slower than the lease — a large upload, a stalled database — keeps its key,
/// and a retry meanwhile gets `409 idempotency_key_in_progress` instead of running the
/// request a second time. Only a request whose instance died stops renewing, and only
/// then does a retry take the key over (the claim id still fences a holder that lost
/// the database for a whole lease: its commit appends nothing).
pub(in crate::api) struct ClaimedKey {
    db: sqlx::PgPool,
    scope: String,
    key: String,
    /// Which claim of the key this is (src/store/idempotency.rs).
    claim: Uuid,
    settled: bool,
    renewer: tokio::task::JoinHandle<()>,
}

impl ClaimedKey {
    fn new(state: &AppState, scope: &str, key: &str, claim: Uuid) -> ClaimedKey {
        let lease = state.config.idempotency_lease;
        let renewer = tokio::spawn(renew(
            state.db.clone(),
            scope.to_string(),
            key.to_string(),
            claim,
            lease,
        ));
        ClaimedKey {
            db: state.db.clone(),
            scope: scope.to_string(),
            key: key.to_string(),
            claim,
            settled: false,
            renewer,
        }
    }
}

/// Renews the claim's lease every third of it until the key is no longer this claim's
/// `in_progress` key (or the task is aborted with its `ClaimedKey`). A failed renewal is
/// tried again at the next tick: the lease outlives two of them.
async fn renew(db: sqlx::PgPool, scope: String, key: String, claim: Uuid, lease: Duration) {
    let mut ticks = tokio::time::interval(lease / 3);
    ticks.tick().await; // the first tick is now: the claim was just written
    loop {
        ticks.tick().await;
        match keys::renew(&db, &scope, &key, claim, lease).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(error = %err, "an Idempotency-Key's lease could not be renewed; trying again");
            }
        }
    }
}

impl Drop for ClaimedKey {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.settled {
            return;
        }
        // Dropped on a runtime thread (a task unwinding or cancelled): release on a task
        // of its own, as `drop` cannot wait.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (db, scope, key, claim) = (
            self.db.clone(),
            std::mem::take(&mut self.scope),
            std::mem::take(&mut self.key),
            self.claim,
        );
        runtime.spawn(async move {
            match keys::release(&db, &scope, &key, claim).await {
                Ok(()) => tracing::warn!("an Idempotency-Key was freed: its request ended unanswered"),
                Err(err) => tracing::warn!(error = %err, "an unanswered request's Idempotency-Key could not be freed; it lapses with its lease"),
            }
        });
    }
}

/// Claims `key` for the caller as claim `claim` (a fresh id per request, which the
/// request's marker carries down to its commit).
pub(in crate::api) async fn claim(
    state: &AppState,
    principal: &Principal,
    key: &str,
    fingerprint: &str,
    claim: Uuid,
) -> Result<Claim, AppError> {
    let scope = principal.scope.as_str();
    let role = &principal.role;
    for _ in 0..3 {
        let lease = state.config.idempotency_lease;
        if keys::insert_claim(&state.db, scope, key, fingerprint, role, claim, lease).await? {
            return Ok(Claim::Run(ClaimedKey::new(state, scope, key, claim)));
        }
        let Some(keys::StoredKey {
            fingerprint: stored_fingerprint,
            state: stored_state,
            role: stored_role,
            status,
            content_type,
            body,
            expired,
            lock_lapsed,
        }) = keys::stored(&state.db, scope, key).await?
        else {
            continue; // deleted meanwhile: try to claim again
        };
        if expired {
            keys::delete_expired(&state.db, scope, key).await?;
            continue;
        }
        if stored_fingerprint != fingerprint {
            return Ok(Claim::Refuse(AppError::IdempotencyKeyReused));
        }
        // Its owner died before committing anything: take the key over.
        if stored_state == "in_progress"
            && lock_lapsed
            && keys::take_over_lapsed(&state.db, scope, key, claim, lease).await?
        {
            return Ok(Claim::Run(ClaimedKey::new(state, scope, key, claim)));
        }
        match stored_state.as_str() {
            "completed" if stored_role.is_some() && stored_role != principal.role => {
                // The answer was authorized for another role; it cannot be re-decided
                // without running the request again, which would be a second effect.
                return Ok(Claim::Refuse(AppError::Forbidden(
                    "your role changed since this Idempotency-Key was first used; \
                     send the request again with a new key if your role allows it"
                        .into(),
                )));
            }
            "completed" => {
                let mut response = Response::new(Body::from(Bytes::from(body.unwrap_or_default())));
                *response.status_mut() =
                    StatusCode::from_u16(status.unwrap_or(200) as u16).unwrap_or(StatusCode::OK);
                if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                    response.headers_mut().insert(CONTENT_TYPE, ct);
                }
                response
                    .headers_mut()
                    .insert("idempotency-replayed", HeaderValue::from_static("true"));
                return Ok(Claim::Replay(response));
            }
            "committed" => {
                return Ok(Claim::Refuse(AppError::IdempotencyInProgress(
                    "this request was already applied, but its response was lost; do not retry it"
                        .into(),
                )));
            }
            _ => {}
        }
        return Ok(Claim::Refuse(AppError::IdempotencyInProgress(
            "a request with this Idempotency-Key is still in progress".into(),
        )));
    }
    Err(AppError::Conflict)
}
