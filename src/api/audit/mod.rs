//! For auditors: the tenant's audit log (list, verify, export), one file's history with
//! time travel, and the transparency log's signed heads and Merkle proofs.

pub(crate) mod history;
pub(crate) mod log;
pub(crate) mod transparency;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/audit", get(log::list))
        .route("/v1/audit/verify", get(log::verify))
        .route("/v1/audit/export", get(log::export))
        .route("/v1/files/{id}/history", get(history::list))
        .route("/v1/audit/tree-head", get(transparency::tree_head))
        .route("/v1/audit/proofs/inclusion", get(transparency::inclusion))
        .route(
            "/v1/audit/proofs/consistency",
            get(transparency::consistency),
        )
}
