//! The web console: server-rendered HTML pages at `/` for people who would rather look
//! than write curl (docs/console.md). It is another surface over the same use cases and
//! the same policy as the JSON API (it calls `api`'s use cases; `api` never imports it):
//!
//! - pages are askama templates (compile-checked) extending `base.html`; htmx swaps parts
//!   of them; our own scripts live in `assets/` (no inline script or style: the CSP
//!   below forbids both);
//! - a person signs in with a cookie holding an ordinary session's refresh token
//!   (src/auth/browser.rs). The API's credentials layer accepts that cookie too, so the
//!   browser's tus uploads (`/v1/uploads`) and live events (`/v1/events`) go through the
//!   one authorization policy, with the CSRF token in `X-CSRF-Token` for state changes;
//! - every state-changing console request carries the CSRF token (`csrf.rs`);
//! - static files are embedded in the binary (`assets.rs`); the front-end libraries in
//!   `assets/vendor/` come from web/package-lock.json through scripts/build-web.sh.
//!
//! Adding a page: a handler taking [`session::Viewer`] (the signed-in person; a visitor
//! is sent to the sign-in page), a template struct with a `page: page::Layout` field whose
//! template starts with `{% extends "base.html" %}`, rendered with [`page::render`].

mod admin;
mod analytics;
mod assets;
mod audit;
mod auth;
mod csrf;
mod devices;
mod docs;
mod error;
mod files;
mod notifications;
mod page;
mod session;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};

use crate::api::edge::ratelimit::RateLimitLayer;
use crate::state::AppState;

pub use error::ConsoleError;
pub use page::{Layout, Nav, render};
pub use session::Viewer;

/// The console's Content-Security-Policy: only our own scripts, styles and connections;
/// images may also be `data:` (none of ours are yet) and `blob:` (previews of files
/// chosen for upload); no framing, no `<base>`, forms post only to us.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// The console's routes, merged at `/` by the API's router (`api::router_with`). None of
/// them starts with `/v1`, `/l/`, `/health`, `/metrics` or `/openapi.json`.
pub fn routes(state: &AppState) -> Router<AppState> {
    // Password guessing through the console spends the same per-IP budget as through
    // the API.
    let credentials = Router::new()
        .route("/sign-in", post(auth::sign_in))
        .route("/sign-up", post(auth::sign_up))
        .route_layer(RateLimitLayer::auth(state));
    Router::new()
        .route("/", get(auth::home))
        .route("/sign-in", get(auth::sign_in_page))
        .route("/sign-up", get(auth::sign_up_page))
        .merge(credentials)
        .route("/sign-out", post(auth::sign_out))
        .route("/notifications", get(notifications::page))
        .route("/notifications/read", post(notifications::read_all))
        .route("/notifications/{id}/read", post(notifications::read_one))
        .route("/devices", get(devices::page))
        .route("/devices/sessions/{id}/revoke", post(devices::revoke))
        .route("/files", get(files::list))
        .route("/files/table", get(files::table))
        .route("/files/{id}", get(files::page))
        .route("/audit", get(audit::log))
        .route("/audit/file", get(audit::open))
        .route("/audit/files/{id}", get(audit::file))
        .route("/audit/verify", get(audit::verify))
        .route("/analytics", get(analytics::page))
        .route("/analytics/data.json", get(analytics::data))
        .route("/admin", get(admin::page))
        .route("/admin/invitations", post(admin::invite))
        .route("/admin/users/{id}/role", post(admin::set_role))
        .route("/admin/users/{id}/ban", post(admin::ban))
        .route("/admin/users/{id}/unban", post(admin::unban))
        .route("/admin/users/{id}/erase", post(admin::erase))
        .route("/admin/jobs/{id}/retry", post(admin::retry))
        .route("/admin/api-keys", post(admin::create_key))
        .route("/admin/api-keys/{id}/revoke", post(admin::revoke_key))
        .route("/docs", get(docs::page))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            csrf::require_token,
        ))
        .layer(axum::middleware::from_fn(page_headers))
        .merge(assets::routes())
}

/// Every console page: the CSP, and never cached (pages hold the CSRF token and the
/// person's data). Set before the API's edge layer, which keeps what a handler set.
async fn page_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
