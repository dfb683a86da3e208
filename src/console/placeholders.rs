//! Pages whose sections are still to be built (files), so the navigation works and each
//! section's route, role and layout are settled. Each is replaced by its own module.

use askama::Template;
use axum::response::Response;

use super::page::{Layout, Nav, render};
use super::session::Viewer;

#[derive(Template)]
#[template(path = "placeholder.html")]
struct Placeholder {
    page: Layout,
    what: &'static str,
}

fn placeholder(viewer: &Viewer, title: &str, nav: Nav, what: &'static str) -> Response {
    render(&Placeholder {
        page: Layout::new(viewer, title, nav),
        what,
    })
}

pub async fn files(viewer: Viewer) -> Response {
    placeholder(&viewer, "Files", Nav::Files, "your files")
}
