//! The HTTP API: one router per resource, assembled here with the edge layers.

pub mod edge;
mod health;
pub mod json;
mod middleware;
mod ops;
pub mod ratelimit;

use std::time::Duration;

use axum::Router;
use axum::http::HeaderName;
use axum::routing::get;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;

use crate::error::{AppError, ErrorBody, ErrorDetail};
use crate::state::AppState;
use json::JsonBodyLimitLayer;
use ratelimit::RateLimitLayer;

#[derive(OpenApi)]
#[openapi(
    info(title = "Chronicle", description = "Event-sourced file backend"),
    paths(health::health, health::ready, ops::metrics, ops::openapi),
    components(schemas(ErrorBody, ErrorDetail, health::Health))
)]
pub struct ApiDoc;

/// The whole API. Layers run outside-in: request id → security headers → CORS → metrics
/// and logging → timeout → rate limit → JSON body limit → handler. So 429s, 413s and 404s
/// are logged, counted, and carry CORS and security headers like any other answer, and a
/// CORS preflight is answered before it can consume rate-limit budget.
///
/// Later routers: a `/v1/auth` router adds `ratelimit::RateLimitLayer::auth(&state)`; a
/// streaming upload route reads its body as a stream (untouched by the JSON limit), and a
/// router needing a different JSON limit layers its own `JsonBodyLimitLayer`.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let request_id = HeaderName::from_static(middleware::REQUEST_ID);
    let mut router = Router::new()
        .route("/health", get(health::health))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(JsonBodyLimitLayer::new(config.max_json_body_bytes))
        .layer(RateLimitLayer::global(&state))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ));
    if let Some(cors) = edge::Cors::from_config(&config) {
        router = router.layer(axum::middleware::from_fn_with_state(cors, edge::cors));
    }
    router
        .layer(axum::middleware::from_fn_with_state(
            edge::SecurityHeaders::from_config(&config),
            edge::security_headers,
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
