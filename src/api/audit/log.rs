//! The auditor's API: `GET /v1/audit` (the audit log, filtered and paged),
//! `GET /v1/audit/verify` (the chain and checkpoint report of the caller's tenant) and
//! `GET /v1/audit/export` (the tenant's events as NDJSON). Roles `auditor` and `admin`
//! only (`AuditorOrAdmin`); the tenant always comes from the token. The reads are
//! `queries::audit`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::api::edge::extract::ApiQuery;
use crate::api::edge::read_routing::Fresh;
use crate::auth::AuditorOrAdmin;
use crate::error::{AppError, ErrorBody};
use crate::queries::audit::{
    AuditPage, AuditParams, VerifyAnswer, VerifyParams, audit_log, check_range, verify_chain,
};
use crate::state::AppState;
use crate::store::export::{ExportFilter, ndjson};

/// The tenant's audit log, newest first, filtered, one page at a time.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])),
    params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody),
               (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuditorOrAdmin,
    Fresh(fresh): Fresh,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, AppError> {
    Ok(Json(audit_log(&state, &caller, fresh, p).await?))
}

/// Recomputes every hash chain of the caller's tenant, checks who signed it, its
/// checkpoint chain and the newest checkpoint against the log, and reports the
/// unprotected window (docs/audit.md). 200 either way; `intact` says whether anything
/// broke.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    params(VerifyParams),
    responses((status = 200, description = "the verify report"), (status = 400, body = ErrorBody),
               (status = 403, body = ErrorBody)))]
pub async fn verify(
    State(state): State<AppState>,
    caller: AuditorOrAdmin,
    ApiQuery(p): ApiQuery<VerifyParams>,
) -> Result<Json<VerifyAnswer>, AppError> {
    Ok(Json(verify_chain(&state, &caller, p).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// Events recorded at or after this instant (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Events recorded before this instant (RFC 3339).
    pub until: Option<DateTime<Utc>>,
}

/// The tenant's events as NDJSON (one event per line with metadata and hashes, in
/// append order), streamed in constant memory.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", security(("bearer" = [])),
    params(ExportParams),
    responses((status = 200, content_type = "application/x-ndjson", description = "one event per line"),
               (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    AuditorOrAdmin(ctx): AuditorOrAdmin,
    ApiQuery(p): ApiQuery<ExportParams>,
) -> Result<Response, AppError> {
    check_range(p.since, p.until, ("since", "until"))?;
    let filter = ExportFilter {
        tenant: ctx.tenant_id,
        since: p.since,
        until: p.until,
    };
    let body = Body::from_stream(ndjson(state.db.clone(), filter));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}
