//! `/metrics` (Prometheus text) and `/openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;

use crate::error::AppError;
use crate::metrics::ProjectorLabels;
use crate::projections::status::status;
use crate::state::AppState;

/// Prometheus metrics. Projection lag and parked events are read from the database at
/// scrape time, so they are right whichever instance runs the projectors.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, AppError> {
    for p in status(&state.db).await? {
        let labels = ProjectorLabels { projector: p.name };
        state
            .metrics
            .projection_lag_events
            .get_or_create(&labels)
            .set(p.lag_events);
        state
            .metrics
            .projection_lag_seconds
            .get_or_create(&labels)
            .set(p.lag_seconds);
        state
            .metrics
            .projector_parked_events
            .get_or_create(&labels)
            .set(p.parked_events);
        state
            .metrics
            .projector_failing_events
            .get_or_create(&labels)
            .set(p.failing_events);
    }
    let queue = crate::queue::Queue::new(state.redis_conn.clone(), &state.config.redis_key_prefix);
    match queue.depth().await {
        Ok((ready, delayed)) => {
            for (label, n) in [("ready", ready), ("delayed", delayed)] {
                let labels = crate::metrics::QueueLabels { state: label };
                state
                    .metrics
                    .queue_depth
                    .get_or_create(&labels)
                    .set(n as i64);
            }
        }
        Err(err) => tracing::warn!(error = %err, "queue depth unavailable for /metrics"),
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    ))
}

/// This document: OpenAPI 3.1, generated from the handlers.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> impl IntoResponse {
    Json(crate::api::ApiDoc::openapi())
}
