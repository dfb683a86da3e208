//! Running Chronicle: health and readiness probes, Prometheus metrics, the OpenAPI
//! document (and the responses every route may give, `openapi.rs`), and the job queue.

pub(crate) mod health;
pub(crate) mod jobs;
pub(crate) mod openapi;
pub(crate) mod ops;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health::health))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
}
