//! Request-scoped cross-cutting concerns: a request id on every request, response and
//! log line; per-route metrics; one log line per request (health probes stay quiet).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::metrics::{HttpLabels, RouteLabels};
use crate::state::AppState;

pub const REQUEST_ID: &str = "x-request-id";

pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let span = tracing::info_span!(
        "request",
        %method,
        %route,
        request_id = %request_id,
        tenant_id = tracing::field::Empty
    );
    // Counted as the handler reads it: a body nobody reads costs no network either.
    let received = state.metrics.http_request_body_bytes.clone();
    let request = request.map(|body| {
        axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
            if let Some(data) = frame.data_ref() {
                received.inc_by(data.len() as u64);
            }
            frame
        }))
    });
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .http_latency
        .get_or_create(&RouteLabels {
            method,
            route: route.clone(),
        })
        .observe(elapsed.as_secs_f64());
    if !route.starts_with("/health") && route != "/metrics" {
        span.in_scope(|| {
            tracing::info!(status, elapsed_ms = elapsed.as_secs_f64() * 1e3, "request")
        });
    }
    response
}

/// How long a request may take, body included. Streaming uploads are exempt: they may
/// legitimately take hours, and the upload handler abandons one whose client goes
/// silent instead (an idle timeout).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub async fn request_timeout(request: Request, next: Next) -> Response {
    if streams_body(&request) {
        return next.run(request).await;
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            axum::response::IntoResponse::into_response(crate::error::AppError::RequestTimeout)
        }
    }
}

/// Uploads: multipart bodies and tus chunks are read as streams by their handlers.
fn streams_body(request: &Request) -> bool {
    request.method() != axum::http::Method::GET
        && request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| {
                let v = v.as_bytes();
                v.starts_with(b"multipart/form-data")
                    || v.starts_with(b"application/offset+octet-stream")
            })
}

/// The answer to a handler that panicked (`tower_http::catch_panic`, inside `observe`
/// so it is logged and counted as a 500): the one error shape, without the panic's
/// message, and the connection kept. Without it the panic ends the connection's task
/// and the client gets no answer at all.
pub fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(not a string)");
    // Logged in full inside the request span, like any internal error.
    let err = anyhow::anyhow!("a handler panicked: {message}");
    axum::response::IntoResponse::into_response(crate::error::AppError::Internal(err))
}
