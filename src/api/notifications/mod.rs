//! Telling people and programs what happened: the caller's notifications and their live
//! SSE stream, the tenant-wide event feed (pages and stream) and signed webhooks.

pub(crate) mod feed;
pub(crate) mod inbox;
pub(crate) mod stream;
pub(crate) mod webhooks;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/notifications", get(inbox::list))
        .route("/v1/notifications/read", post(inbox::mark_all_read))
        .route("/v1/notifications/{id}/read", post(inbox::mark_read))
        .route("/v1/events", get(stream::stream))
        .route("/v1/feed", get(feed::page))
        .route("/v1/feed/stream", get(feed::stream))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
            post(webhooks::redeliver),
        )
}
