//! The transparency log for auditors (docs/transparency.md): the newest signed tree
//! head, and inclusion and consistency proofs against signed heads, of the caller's
//! tenant. Roles `auditor` and `admin` only; the tenant always comes from the token.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::api::edge::extract::ApiQuery;
use crate::auth::AuditorOrAdmin;
use crate::error::{AppError, ErrorBody};
use crate::state::AppState;
use crate::transparency::proofs::{
    self, ConsistencyProof, InclusionProof, TreeHead, prove_consistency, prove_inclusion,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TreeHeadParams {
    /// A signed tree size (default: the newest signed head).
    #[param(minimum = 1)]
    pub tree_size: Option<u64>,
}

/// The tenant's newest signed tree head (or the one of `tree_size`).
#[utoipa::path(get, path = "/v1/audit/tree-head", tag = "audit", security(("bearer" = [])),
    params(TreeHeadParams),
    responses((status = 200, body = TreeHead),
              (status = 403, body = ErrorBody, description = "not an auditor or admin"),
              (status = 404, body = ErrorBody, description = "no signed head (of that size) yet"),
              (status = 422, body = ErrorBody, description = "tree_size 0")))]
pub async fn tree_head(
    State(state): State<AppState>,
    AuditorOrAdmin(ctx): AuditorOrAdmin,
    ApiQuery(p): ApiQuery<TreeHeadParams>,
) -> Result<Json<TreeHead>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let head = proofs::tree_head(&mut tx, ctx.tenant_id.0, p.tree_size).await?;
    tx.commit().await?;
    Ok(Json(head.into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InclusionParams {
    /// The event (`global_position` in exports, `id` in the audit log).
    pub global_position: i64,
    /// A signed tree size (default: the newest signed head).
    #[param(minimum = 1)]
    pub tree_size: Option<u64>,
}

/// Proves that one event of the tenant's log is in a signed tree, revealing no other event.
#[utoipa::path(get, path = "/v1/audit/proofs/inclusion", tag = "audit", security(("bearer" = [])),
    params(InclusionParams),
    responses((status = 200, body = InclusionProof),
              (status = 403, body = ErrorBody, description = "not an auditor or admin"),
              (status = 404, body = ErrorBody,
               description = "no such event in the tenant's log, no signed head of tree_size, or the event is not yet covered by a signed head (retry in a few seconds)"),
              (status = 422, body = ErrorBody,
               description = "the event was logged after tree_size, or tree_size is 0")))]
pub async fn inclusion(
    State(state): State<AppState>,
    AuditorOrAdmin(ctx): AuditorOrAdmin,
    ApiQuery(p): ApiQuery<InclusionParams>,
) -> Result<Json<InclusionProof>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let proof = prove_inclusion(&mut tx, ctx.tenant_id.0, p.global_position, p.tree_size).await?;
    tx.commit().await?;
    Ok(Json(proof))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParams {
    /// The older tree size (e.g. of a head the auditor kept).
    #[param(minimum = 1)]
    pub from: u64,
    /// A signed tree size, at least `from` (default: the newest signed head).
    #[param(minimum = 1)]
    pub to: Option<u64>,
}

/// Proves that the tenant's tree of `from` leaves is a prefix of its signed tree of `to`
/// leaves: the log only grew.
#[utoipa::path(get, path = "/v1/audit/proofs/consistency", tag = "audit", security(("bearer" = [])),
    params(ConsistencyParams),
    responses((status = 200, body = ConsistencyProof),
              (status = 403, body = ErrorBody, description = "not an auditor or admin"),
              (status = 404, body = ErrorBody, description = "no signed head (of size `to`) yet"),
              (status = 422, body = ErrorBody, description = "from is 0 or larger than to")))]
pub async fn consistency(
    State(state): State<AppState>,
    AuditorOrAdmin(ctx): AuditorOrAdmin,
    ApiQuery(p): ApiQuery<ConsistencyParams>,
) -> Result<Json<ConsistencyProof>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let proof = prove_consistency(&mut tx, ctx.tenant_id.0, p.from, p.to).await?;
    tx.commit().await?;
    Ok(Json(proof))
}
