//! Getting bytes in: multipart uploads of new files and versions (with their
//! idempotency keys), resumable tus uploads, and direct-to-S3 uploads with presigned
//! part URLs. Every path ends in the one "commit an upload" use case
//! (`commands::uploads::commit_version`).

pub(crate) mod direct;
pub(crate) mod direct_session;
pub(crate) mod multipart;
pub(crate) mod tus;

use axum::Router;
use axum::routing::post;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/files", post(multipart::create_file))
        .route("/v1/files/{id}/versions", post(multipart::create_version))
        .route("/v1/files/direct", post(direct::start))
        .route("/v1/files/direct/{id}/complete", post(direct::complete))
        // Resumable uploads, tus 1.0.0.
        .merge(tus::routes())
}
