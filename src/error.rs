//! The one error type. Every failure leaves the API as
//! `{"error":{"code":"snake_case_code","message":"..."}}` with a status that matches the
//! code. Internal failures are logged in full (inside the request span) and answered with
//! a generic message: no SQL, paths or stack traces ever reach a client.
//! The table of codes is docs/errors.md, pinned by `tests::code_table_matches_docs`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Malformed request: unparsable JSON, bad query string, bad header.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or invalid credentials; the kind says which (distinct codes).
    #[error("{}", .0.message())]
    Unauthorized(AuthFailure),
    #[error("{0}")]
    Forbidden(String),
    /// A state change authenticated by the console's session cookie without the
    /// session's CSRF token (src/auth/browser.rs).
    #[error(
        "this request needs the session's CSRF token (X-CSRF-Token header or csrf_token field)"
    )]
    CsrfRejected,
    /// Also used for other tenants' resources, so existence is never confirmed.
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The Idempotency-Key was used before with a different request.
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// A request with the same Idempotency-Key is running (or its outcome is unknown).
    #[error("{0}")]
    IdempotencyInProgress(String),
    /// A unique thing (email, handle) is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// A concurrent change won (optimistic concurrency exhausted its retries).
    #[error("the resource was changed concurrently; retry the request")]
    Conflict,
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The tenant's byte quota would be exceeded.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The client stopped sending the request body.
    #[error("the request was not completed in time")]
    RequestTimeout,
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A `Range` outside the content; carries the size for `Content-Range: bytes */size`.
    #[error("the requested range is outside the content ({size} bytes)")]
    RangeNotSatisfiable { size: u64 },
    /// Well-formed but semantically invalid input, or a domain rule refused it.
    #[error("{0}")]
    Validation(String),
    /// Carries the wait, so every 429 (middleware or handler) has its `Retry-After`.
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// A dependency is down (readiness, circuit open).
    #[error("{0}")]
    Unavailable(String),
    /// A documented part of the API that this build does not offer yet.
    #[error("{0}")]
    NotImplemented(String),
    /// tus: the client speaks a protocol version this server does not (412).
    #[error("{0}")]
    TusVersionUnsupported(String),
    /// tus: `Upload-Offset` is not where the upload stands (409).
    #[error("Upload-Offset {sent} does not match the upload's offset {expected}")]
    OffsetMismatch { sent: u64, expected: u64 },
    /// tus: another request is writing to this upload right now (423).
    #[error("another request is writing to this upload; retry after it finished")]
    UploadLocked,
    /// tus checksum extension: the chunk's bytes do not match `Upload-Checksum` (460).
    #[error("the chunk does not match its Upload-Checksum; it was discarded")]
    ChecksumMismatch,
    /// A legal hold is in force on the file: delete, purge and version retention are
    /// refused for everyone, admins included, until an auditor or admin releases it.
    #[error("the file is under legal hold")]
    LegalHold,
    /// The change would leave the tenant without an active admin (src/commands/users.rs).
    #[error("this is the tenant's last admin: make another user admin first")]
    LastAdmin,
    /// The tenant's minimum retention (`MIN_RETENTION_DAYS`) forbids purging the file yet.
    #[error("{0}")]
    RetentionLocked(String),
    /// The resource existed and is gone for good (an expired or terminated upload).
    #[error("{0}")]
    Gone(String),
    /// The server's storage has no room for the bytes (a full disk): nothing was kept,
    /// and the same request may succeed later.
    #[error("the server has no room to store these bytes right now; retry later")]
    InsufficientStorage,
    /// Anything unexpected. The detail is logged, never returned.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// Stable machine-readable code; part of the API contract.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::Unauthorized(kind) => kind.code(),
            AppError::Forbidden(_) => "forbidden",
            AppError::CsrfRejected => "csrf_token_invalid",
            AppError::NotFound(_) => "not_found",
            AppError::MethodNotAllowed => "method_not_allowed",
            AppError::AlreadyExists(_) => "already_exists",
            AppError::IdempotencyKeyReused => "idempotency_key_reused",
            AppError::IdempotencyInProgress(_) => "idempotency_key_in_progress",
            AppError::Conflict => "conflict",
            AppError::PayloadTooLarge(_) => "payload_too_large",
            AppError::QuotaExceeded(_) => "quota_exceeded",
            AppError::RequestTimeout => "request_timeout",
            AppError::UnsupportedMediaType(_) => "unsupported_media_type",
            AppError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            AppError::Validation(_) => "validation_failed",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::Unavailable(_) => "service_unavailable",
            AppError::NotImplemented(_) => "not_implemented",
            AppError::TusVersionUnsupported(_) => "tus_version_unsupported",
            AppError::OffsetMismatch { .. } => "offset_mismatch",
            AppError::UploadLocked => "upload_locked",
            AppError::ChecksumMismatch => "checksum_mismatch",
            AppError::Gone(_) => "gone",
            AppError::InsufficientStorage => "insufficient_storage",
            AppError::LegalHold => "legal_hold",
            AppError::LastAdmin => "last_admin",
            AppError::RetentionLocked(_) => "retention_locked",
            AppError::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::CsrfRejected => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::AlreadyExists(_) => StatusCode::CONFLICT,
            AppError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::IdempotencyInProgress(_) => StatusCode::CONFLICT,
            AppError::Conflict => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::QuotaExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            AppError::TusVersionUnsupported(_) => StatusCode::PRECONDITION_FAILED,
            AppError::OffsetMismatch { .. } => StatusCode::CONFLICT,
            AppError::UploadLocked => StatusCode::LOCKED,
            // tus's own status; a valid u16, so the fallback never runs.
            AppError::ChecksumMismatch => {
                StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST)
            }
            AppError::Gone(_) => StatusCode::GONE,
            AppError::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            AppError::LegalHold | AppError::RetentionLocked(_) | AppError::LastAdmin => {
                StatusCode::CONFLICT
            }
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a client may see.
    pub fn public_message(&self) -> String {
        match self {
            AppError::Internal(_) => "an internal error occurred".to_string(),
            other => other.to_string(),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.public_message(),
            },
        }
    }

    /// Every code with an example, for docs and tests.
    pub fn catalogue() -> Vec<AppError> {
        vec![
            AppError::BadRequest("example".into()),
            AppError::Unauthorized(AuthFailure::MissingToken),
            AppError::Unauthorized(AuthFailure::MalformedToken),
            AppError::Unauthorized(AuthFailure::WrongAlgorithm),
            AppError::Unauthorized(AuthFailure::BadSignature),
            AppError::Unauthorized(AuthFailure::Expired),
            AppError::Unauthorized(AuthFailure::WrongPurpose),
            AppError::Unauthorized(AuthFailure::InvalidCredentials),
            AppError::Unauthorized(AuthFailure::InvalidRefreshToken),
            AppError::Unauthorized(AuthFailure::RefreshTokenReused),
            AppError::Unauthorized(AuthFailure::SessionRevoked),
            AppError::Unauthorized(AuthFailure::UserBanned),
            AppError::Unauthorized(AuthFailure::ApiKeyInvalid),
            AppError::Unauthorized(AuthFailure::ApiKeyRevoked),
            AppError::Unauthorized(AuthFailure::ApiKeyExpired),
            AppError::Unauthorized(AuthFailure::ApiKeyCreatorRemoved),
            AppError::Forbidden("example".into()),
            AppError::CsrfRejected,
            AppError::NotFound("example".into()),
            AppError::MethodNotAllowed,
            AppError::AlreadyExists("example".into()),
            AppError::IdempotencyKeyReused,
            AppError::IdempotencyInProgress("example".into()),
            AppError::Conflict,
            AppError::RequestTimeout,
            AppError::PayloadTooLarge("example".into()),
            AppError::QuotaExceeded("example".into()),
            AppError::UnsupportedMediaType("example".into()),
            AppError::RangeNotSatisfiable { size: 1 },
            AppError::Validation("example".into()),
            AppError::RateLimited {
                retry_after_secs: 1,
            },
            AppError::Unavailable("example".into()),
            AppError::NotImplemented("example".into()),
            AppError::TusVersionUnsupported("example".into()),
            AppError::OffsetMismatch {
                sent: 0,
                expected: 1,
            },
            AppError::UploadLocked,
            AppError::ChecksumMismatch,
            AppError::Gone("example".into()),
            AppError::InsufficientStorage,
            AppError::LegalHold,
            AppError::LastAdmin,
            AppError::RetentionLocked("example".into()),
            AppError::Internal(anyhow::anyhow!("example")),
        ]
    }
}

/// Why a request was not authenticated. Each has its own code so clients (and tests)
/// can tell an expired token from a forged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    MissingToken,
    MalformedToken,
    /// Any algorithm but HS256, including `none`.
    WrongAlgorithm,
    /// Signed with another key, or altered.
    BadSignature,
    Expired,
    /// A token minted for another purpose (e.g. a refresh token used as access token).
    WrongPurpose,
    InvalidCredentials,
    InvalidRefreshToken,
    /// An already-rotated refresh token was presented: the session is revoked.
    RefreshTokenReused,
    SessionRevoked,
    UserBanned,
    /// An API key that does not parse, does not exist, or whose secret does not match.
    ApiKeyInvalid,
    ApiKeyRevoked,
    ApiKeyExpired,
    /// The admin who created the key was banned, erased or is no longer an admin.
    ApiKeyCreatorRemoved,
}

impl AuthFailure {
    pub fn code(self) -> &'static str {
        match self {
            AuthFailure::MissingToken => "token_missing",
            AuthFailure::MalformedToken => "token_malformed",
            AuthFailure::WrongAlgorithm => "token_algorithm_invalid",
            AuthFailure::BadSignature => "token_signature_invalid",
            AuthFailure::Expired => "token_expired",
            AuthFailure::WrongPurpose => "token_purpose_invalid",
            AuthFailure::InvalidCredentials => "invalid_credentials",
            AuthFailure::InvalidRefreshToken => "refresh_token_invalid",
            AuthFailure::RefreshTokenReused => "refresh_token_reused",
            AuthFailure::SessionRevoked => "session_revoked",
            AuthFailure::UserBanned => "user_banned",
            AuthFailure::ApiKeyInvalid => "api_key_invalid",
            AuthFailure::ApiKeyRevoked => "api_key_revoked",
            AuthFailure::ApiKeyExpired => "api_key_expired",
            AuthFailure::ApiKeyCreatorRemoved => "api_key_creator_removed",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::MissingToken => "an access token is required",
            AuthFailure::MalformedToken => "the access token is malformed",
            AuthFailure::WrongAlgorithm => "the access token uses a forbidden algorithm",
            AuthFailure::BadSignature => "the access token signature is invalid",
            AuthFailure::Expired => "the access token has expired",
            AuthFailure::WrongPurpose => "this token cannot be used here",
            AuthFailure::InvalidCredentials => "email or password is wrong",
            AuthFailure::InvalidRefreshToken => "the refresh token is invalid",
            AuthFailure::RefreshTokenReused => {
                "the refresh token was already used; the session has been revoked"
            }
            AuthFailure::SessionRevoked => "the session has been revoked",
            AuthFailure::UserBanned => "the account is banned",
            AuthFailure::ApiKeyInvalid => "the API key is not valid",
            AuthFailure::ApiKeyRevoked => "the API key has been revoked",
            AuthFailure::ApiKeyExpired => "the API key has expired",
            AuthFailure::ApiKeyCreatorRemoved => {
                "the admin who created this API key is banned, erased or no longer an admin"
            }
        }
    }
}

#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// `Retry-After` of every `503`: outages are usually short, and the answer is cheap.
pub const RETRY_AFTER_UNAVAILABLE_SECS: u64 = 2;

/// What a client sees when Postgres cannot be reached (message of the `503`).
pub const DATABASE_UNAVAILABLE: &str = "the database is unavailable; retry shortly";

/// Whether `err` says Postgres cannot be reached (rather than refused a query): no
/// connection in time, connection refused/reset, or a server shutting down or starting.
pub fn is_database_outage(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exception; 57P01–57P03: admin/crash shutdown, cannot
        // connect now (starting up or shutting down).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Whether `err` says Redis cannot be reached (rather than refused a command).
pub fn is_redis_outage(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || err.is_timeout()
}

impl AppError {
    /// An internal error caused by an unreachable Postgres or Redis is an outage:
    /// `503` with `Retry-After`, not `500`.
    fn outage_or_self(self) -> AppError {
        let AppError::Internal(err) = &self else {
            return self;
        };
        for cause in err.chain() {
            if let Some(e) = cause.downcast_ref::<sqlx::Error>()
                && is_database_outage(e)
            {
                tracing::warn!(error = format!("{err:#}"), "database unavailable");
                return AppError::Unavailable(DATABASE_UNAVAILABLE.into());
            }
            if let Some(e) = cause.downcast_ref::<redis::RedisError>()
                && is_redis_outage(e)
            {
                tracing::warn!(error = format!("{err:#}"), "redis unavailable");
                return AppError::Unavailable("a dependency is unavailable; retry shortly".into());
            }
        }
        self
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let this = self.outage_or_self();
        if let AppError::Internal(err) = &this {
            // `{:#}` prints the whole context chain; the span adds request id and route.
            tracing::error!(error = format!("{err:#}"), "internal error");
        }
        let mut response = (this.status(), Json(this.body())).into_response();
        match this {
            AppError::Unavailable(_) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(RETRY_AFTER_UNAVAILABLE_SECS),
                );
            }
            AppError::RateLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            AppError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        response
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        if is_database_outage(&err) {
            tracing::warn!(error = %err, "database unavailable");
            return AppError::Unavailable(DATABASE_UNAVAILABLE.into());
        }
        AppError::Internal(anyhow::Error::new(err).context("database"))
    }
}

impl From<crate::storage::StorageError> for AppError {
    fn from(err: crate::storage::StorageError) -> Self {
        match err {
            crate::storage::StorageError::Full(err) => AppError::storage_full(&err),
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl AppError {
    /// A write that found the disk full: `507`, and a warning an operator can alert on
    /// (the client's retry succeeds only once someone makes room).
    pub fn storage_full(err: &dyn std::fmt::Display) -> AppError {
        tracing::warn!(error = %err, "storage is full: an upload was refused");
        AppError::InsufficientStorage
    }

    /// A failed write to a local file: `507` when the disk is full, else internal.
    pub fn local_write(what: &str, err: std::io::Error) -> AppError {
        if crate::storage::is_full(&err) {
            AppError::storage_full(&err)
        } else {
            AppError::Internal(anyhow::Error::new(err).context(what.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_pinned() {
        let body =
            serde_json::to_value(AppError::NotFound("file not found".into()).body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "not_found", "message": "file not found"}})
        );
    }

    #[test]
    fn internal_errors_reveal_nothing() {
        let err = AppError::Internal(anyhow::anyhow!("relation \"events\" does not exist"));
        let text = serde_json::to_string(&err.body()).unwrap();
        assert!(!text.contains("relation"), "{text}");
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn rate_limited_answers_carry_retry_after() {
        let response = AppError::RateLimited {
            retry_after_secs: 42,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
    }

    #[test]
    fn an_unreachable_database_is_a_503_with_retry_after() {
        let direct = AppError::from(sqlx::Error::PoolTimedOut).into_response();
        assert_eq!(direct.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(direct.headers()[header::RETRY_AFTER], "2");
        // Wrapped in context on its way up: still an outage, not a 500.
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let wrapped = anyhow::Error::new(sqlx::Error::Io(refused)).context("loading the file");
        let response = AppError::Internal(wrapped).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        // A query the database refused stays internal.
        let refused_query = AppError::from(sqlx::Error::RowNotFound).into_response();
        assert_eq!(refused_query.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn code_table_matches_docs() {
        let docs = include_str!("../docs/errors.md");
        for err in AppError::catalogue() {
            let row = format!("| `{}` | {} |", err.code(), err.status().as_u16());
            assert!(docs.contains(&row), "docs/errors.md lacks row {row}");
        }
        let rows = docs.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(
            rows,
            AppError::catalogue().len(),
            "docs list codes the type lacks"
        );
    }
}
