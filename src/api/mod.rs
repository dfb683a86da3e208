//! The HTTP API: one router per resource, assembled here with the edge layers.

mod health;
mod middleware;
mod ops;

use std::time::Duration;

use axum::Router;
use axum::http::HeaderName;
use axum::routing::get;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;

use crate::error::{AppError, ErrorBody, ErrorDetail};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Chronicle", description = "Event-sourced file backend"),
    paths(health::health, health::ready, ops::metrics, ops::openapi),
    components(schemas(ErrorBody, ErrorDetail, health::Health))
)]
pub struct ApiDoc;

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static(middleware::REQUEST_ID);
    Router::new()
        .route("/health", get(health::health))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::NotFound("no such route".into())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
