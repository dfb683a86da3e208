//! Idempotency keys for every state-changing request that carries an
//! `Idempotency-Key` header:
//! - same key + same request within 24 h → the stored status and body again, byte for
//!   byte, with `Idempotency-Replayed: true`, and no second effect;
//! - same key + a different request → `422 idempotency_key_reused`;
//! - a concurrent request with the same key → `409 idempotency_key_in_progress`;
//! - the key is marked `committed` in the same transaction as the command's events
//!   (store/idempotency.rs), so after a crash between commit and response a retry is
//!   refused rather than run twice.
//!
//! Keys are scoped to the caller (tenant and user, or "anonymous" before login). Login,
//! refresh and logout are excluded: replaying a response would hand out tokens again.
//! Streaming uploads are excluded too (their bodies are not buffered).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::state::AppState;
use crate::store::idempotency::{CURRENT, IdempotencyMarker};

pub const HEADER: &str = "idempotency-key";
pub(super) const EXCLUDED: &[&str] = &["/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout"];

fn scope_of(state: &AppState, request: &Request) -> String {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| state.tokens.verify_access(token.trim()).ok())
        .map(|c| format!("{}:{}", c.tenant, c.sub))
        .unwrap_or_else(|| "anonymous".to_string())
}

fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

enum Claim {
    /// This request owns the key: run it.
    Run,
    Replay(Response),
    Refuse(AppError),
}

pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let keyed = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) && request.headers().contains_key(HEADER)
        && !EXCLUDED.contains(&request.uri().path())
        && !request
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"multipart/"));
    if !keyed {
        return next.run(request).await;
    }
    match run_keyed(&state, request, next).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn run_keyed(state: &AppState, request: Request, next: Next) -> Result<Response, AppError> {
    let key = request.headers()[HEADER]
        .to_str()
        .unwrap_or_default()
        .to_string();
    if !valid_key(&key) {
        return Err(AppError::BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        ));
    }
    let scope = scope_of(state, &request);
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, state.config.max_json_body_bytes)
        .await
        .map_err(|_| AppError::PayloadTooLarge("the request body is too large".into()))?;
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(parts.uri.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let fingerprint = hex::encode(hasher.finalize());

    match claim(state, &scope, &key, &fingerprint).await? {
        Claim::Replay(response) => return Ok(response),
        Claim::Refuse(err) => return Err(err),
        Claim::Run => {}
    }
    let marker = IdempotencyMarker {
        scope: scope.clone(),
        key: key.clone(),
    };
    let request = Request::from_parts(parts, Body::from(bytes));
    let response = CURRENT.scope(marker, next.run(request)).await;

    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("buffering response: {e}")))?;
    if parts.status.is_server_error() {
        // Nothing was stored as done; free the key so a retry can run (a key already
        // marked committed stays: its effect happened).
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND state = 'in_progress'",
        )
        .bind(&scope)
        .bind(&key)
        .execute(&state.db)
        .await?;
    } else {
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        sqlx::query(
            "UPDATE idempotency_keys SET state = 'completed', status = $3, content_type = $4, body = $5
              WHERE scope = $1 AND key = $2",
        )
        .bind(&scope)
        .bind(&key)
        .bind(parts.status.as_u16() as i32)
        .bind(content_type)
        .bind(body.to_vec())
        .execute(&state.db)
        .await?;
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

type StoredRow = (
    String,
    String,
    Option<i32>,
    Option<String>,
    Option<Vec<u8>>,
    bool,
    bool,
);

async fn claim(
    state: &AppState,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Claim, AppError> {
    for _ in 0..3 {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, state) VALUES ($1, $2, $3, 'in_progress')
             ON CONFLICT DO NOTHING",
        )
        .bind(scope)
        .bind(key)
        .bind(fingerprint)
        .execute(&state.db)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Run);
        }
        let row: Option<StoredRow> = sqlx::query_as(
            "SELECT fingerprint, state, status, content_type, body,
                    created_at < now() - interval '24 hours' AS expired,
                    locked_until < now() AS lock_lapsed
               FROM idempotency_keys WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&state.db)
        .await?;
        let Some((
            stored_fingerprint,
            stored_state,
            status,
            content_type,
            body,
            expired,
            lock_lapsed,
        )) = row
        else {
            continue; // deleted meanwhile: try to claim again
        };
        if expired {
            sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at < now() - interval '24 hours'")
                .bind(scope)
                .bind(key)
                .execute(&state.db)
                .await?;
            continue;
        }
        if stored_fingerprint != fingerprint {
            return Ok(Claim::Refuse(AppError::IdempotencyKeyReused));
        }
        match stored_state.as_str() {
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
            "in_progress" if lock_lapsed => {
                // Its owner died before committing anything: take the key over.
                let taken = sqlx::query(
                    "UPDATE idempotency_keys SET locked_until = now() + interval '60 seconds'
                      WHERE scope = $1 AND key = $2 AND state = 'in_progress' AND locked_until < now()",
                )
                .bind(scope)
                .bind(key)
                .execute(&state.db)
                .await?;
                if taken.rows_affected() == 1 {
                    return Ok(Claim::Run);
                }
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
