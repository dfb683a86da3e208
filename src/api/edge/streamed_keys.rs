//! `Idempotency-Key` on streamed uploads (`POST /v1/files`, `POST /v1/files/{id}/versions`),
//! with the semantics of every other keyed request (`idempotency.rs`) — but the body is
//! never buffered nor stored twice. The middleware authenticates the caller and leaves
//! the key pending for the handler; the handler streams the file to temporary storage
//! as always, then claims the key with a fingerprint of what it received (method, path,
//! the file's SHA-256 and size, its name and type, display name and tags):
//! - the first request with the key claims it and commits (the key is marked
//!   `committed` in the events' transaction, then its `202` is stored);
//! - a repeat with the same fingerprint gets that stored `202`; its temporary bytes are
//!   deleted, nothing is committed;
//! - a repeat with another body gets `422 idempotency_key_reused`, and one that arrives
//!   while the first is still between claim and answer `409 idempotency_key_in_progress`
//!   (two identical uploads in flight never both commit: the claim is one `INSERT`).
//!
//! Once the body is in, the claim, the commit and the storing of the answer run to
//! their end on a task of their own (the handler's `commands::to_the_end`): a client
//! that hangs up after its last byte retries with its key and finds its answer, not the
//! key held `in_progress` for its lease or `committed` with the answer lost.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::api::edge::idempotency::{
    Claim, ClaimedKey, Principal, claim, key_and_principal, settle,
};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::idempotency::{CURRENT, IdempotencyMarker};

/// A keyed upload whose key the handler has yet to claim.
pub(in crate::api) struct Pending {
    principal: Principal,
    key: String,
    /// The claim id the key will be claimed as; the marker carries it from the start.
    claim: uuid::Uuid,
    /// Method and URI: part of the fingerprint, as for buffered requests.
    target: String,
}

tokio::task_local! {
    static PENDING: Arc<Pending>;
}

pub(in crate::api) async fn run_keyed(
    state: &AppState,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let (key, principal, request) = key_and_principal(state, request).await?;
    let pending = Arc::new(Pending {
        target: format!("{}\n{}", request.method(), request.uri()),
        principal,
        key,
        claim: uuid::Uuid::new_v4(),
    });
    let marker = IdempotencyMarker {
        scope: pending.principal.scope.clone(),
        key: pending.key.clone(),
        claim: pending.claim,
    };
    // The handler claims the key and stores its answer (`claim_upload`, `settle_upload`).
    Ok(PENDING
        .scope(pending, CURRENT.scope(marker, next.run(request)))
        .await)
}

/// This upload's key, if it has one, for the handler to claim once the body is in.
pub(in crate::api) fn pending() -> Option<Arc<Pending>> {
    PENDING.try_with(Arc::clone).ok()
}

/// What claiming an upload's key decided.
pub(in crate::api) enum UploadClaim {
    /// Go on and commit, then `settle_upload`.
    Run(ClaimedKey),
    /// The stored answer of the first request with this key.
    Replay(Response),
}

/// Claims `pending` for a received body described by `fields`; `Err`: refused (another
/// body, still in progress). Unless it is `Run`, the caller discards its temporary bytes.
pub(in crate::api) async fn claim_upload(
    state: &AppState,
    pending: &Pending,
    fields: &[&str],
) -> Result<UploadClaim, AppError> {
    let mut hasher = Sha256::new();
    hasher.update(pending.target.as_bytes());
    for field in fields {
        // Length-prefixed, so no two field lists hash alike.
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    let fingerprint = format!("upload:{}", hex::encode(hasher.finalize()));
    match claim(
        state,
        &pending.principal,
        &pending.key,
        &fingerprint,
        pending.claim,
    )
    .await?
    {
        Claim::Run(claimed) => Ok(UploadClaim::Run(claimed)),
        Claim::Replay(response) => Ok(UploadClaim::Replay(response)),
        Claim::Refuse(err) => Err(err),
    }
}

/// Stores the answer of an upload that claimed its key (or frees the key, as for any
/// keyed request: `idempotency::settle`).
pub(in crate::api) async fn settle_upload(
    state: &AppState,
    claimed: ClaimedKey,
    answer: Result<Response, AppError>,
) -> Result<Response, AppError> {
    let response = answer.unwrap_or_else(IntoResponse::into_response);
    settle(state, claimed, response).await
}
