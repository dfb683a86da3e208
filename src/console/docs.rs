//! The API reference at `/docs`: the OpenAPI document the API serves at `/openapi.json`,
//! rendered by the vendored Swagger UI. It is started from `assets/docs.js` (the CSP
//! allows no inline script) and reads the document from the same origin; "Try it out"
//! calls go through the browser, so they carry the console's cookie and, for changes,
//! the CSRF header `docs.js` adds.

use askama::Template;
use axum::response::Response;

use super::page::{Layout, Nav, render};
use super::session::Viewer;

#[derive(Template)]
#[template(path = "docs.html")]
struct DocsPage {
    page: Layout,
}

/// `GET /docs`.
pub async fn page(viewer: Viewer) -> Response {
    render(&DocsPage {
        page: Layout::new(&viewer, "API docs", Nav::Docs),
    })
}
