//! Pages whose sections are still to be built (files come next; history and audit,
//! analytics, admin and the API reference after), so the navigation works and each
//! section's route, role and layout are settled. Each is replaced by its own module.

use askama::Template;
use axum::response::Response;

use super::error::ConsoleError;
use super::page::{Layout, Nav, render};
use super::session::Viewer;
use crate::auth::policy;
use crate::error::AppError;

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

/// The policy's refusal, as the API gives it for the same role.
fn refused() -> ConsoleError {
    AppError::Forbidden("your role does not allow this page".into()).into()
}

pub async fn files(viewer: Viewer) -> Response {
    placeholder(&viewer, "Files", Nav::Files, "your files")
}

pub async fn audit(viewer: Viewer) -> Result<Response, ConsoleError> {
    if !policy::reads_history(&viewer.ctx) {
        return Err(refused());
    }
    Ok(placeholder(
        &viewer,
        "History & audit",
        Nav::Audit,
        "the audit log and verification",
    ))
}

pub async fn analytics(viewer: Viewer) -> Result<Response, ConsoleError> {
    if !policy::reads_history(&viewer.ctx) {
        return Err(refused());
    }
    Ok(placeholder(
        &viewer,
        "Analytics",
        Nav::Analytics,
        "charts from the analytics views",
    ))
}

pub async fn admin(viewer: Viewer) -> Result<Response, ConsoleError> {
    if !policy::administers(&viewer.ctx) {
        return Err(refused());
    }
    Ok(placeholder(
        &viewer,
        "Admin",
        Nav::Admin,
        "users, jobs, projections and API keys",
    ))
}

pub async fn docs(viewer: Viewer) -> Response {
    placeholder(&viewer, "API docs", Nav::Docs, "the API reference")
}
