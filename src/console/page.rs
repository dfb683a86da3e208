//! What every console page shares: the layout `base.html` renders (title, navigation,
//! the signed-in person, the CSRF token for forms and scripts) and the rendering of a
//! template into a response.
//!
//! A page's template struct holds a `page: Layout` field and its template starts with
//! `{% extends "base.html" %}`, filling `{% block content %}` (and optionally
//! `{% block scripts %}` for page scripts: `<script src="{{ page.asset("x.js") }}">`).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::assets;
use super::session::Viewer;
use crate::auth::policy;

/// The sections of the navigation, to mark the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Files,
    Audit,
    Analytics,
    Admin,
    Notifications,
    Devices,
    Docs,
    /// Sign-in, sign-up, error pages: no section.
    None,
}

/// A link of the navigation bar, as the layout renders it.
pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
    /// A count shown beside the label (unread notifications), when there is one.
    pub count: Option<i64>,
}

/// The layout's data.
pub struct Layout {
    pub title: String,
    /// The CSRF token for forms (`csrf_token` field) and scripts (`X-CSRF-Token`): the
    /// session's, or the pre-session's on the sign-in and sign-up pages.
    pub csrf: String,
    /// `handle (role)` of the signed-in person; `None` for visitors.
    pub signed_in_as: Option<String>,
    pub nav: Vec<NavLink>,
}

impl Layout {
    /// The layout of a page for the signed-in `viewer`, with `section` marked. Sections
    /// the person's role cannot use are left out (the policy decides, as in the API).
    pub fn new(viewer: &Viewer, title: impl Into<String>, section: Nav) -> Self {
        let ctx = &viewer.ctx;
        let mut nav = Vec::new();
        let unread = (viewer.unread > 0).then_some(viewer.unread);
        let mut link = |href, label, this: Nav| {
            nav.push(NavLink {
                href,
                label,
                current: this == section,
                count: unread.filter(|_| this == Nav::Notifications),
            })
        };
        link("/files", "Files", Nav::Files);
        if policy::reads_history(ctx) {
            link("/audit", "History & audit", Nav::Audit);
            link("/analytics", "Analytics", Nav::Analytics);
        }
        if policy::administers(ctx) {
            link("/admin", "Admin", Nav::Admin);
        }
        link("/notifications", "Notifications", Nav::Notifications);
        link("/devices", "Devices", Nav::Devices);
        link("/docs", "API docs", Nav::Docs);
        Self {
            title: title.into(),
            csrf: viewer.csrf.clone(),
            signed_in_as: Some(format!("{} ({})", viewer.handle, ctx.role.as_str())),
            nav,
        }
    }

    /// The same layout with the navigation's unread count taken from `unread`: for the
    /// notifications page, whose own count comes from a later read than the viewer's,
    /// so that the page never shows two different numbers.
    pub fn with_unread(mut self, unread: i64) -> Self {
        for link in self.nav.iter_mut().filter(|l| l.href == "/notifications") {
            link.count = (unread > 0).then_some(unread);
        }
        self
    }

    /// The layout of a page for a visitor (no navigation).
    pub fn visitor(title: impl Into<String>, csrf: String) -> Self {
        Self {
            title: title.into(),
            csrf,
            signed_in_as: None,
            nav: Vec::new(),
        }
    }

    /// The versioned URL of an embedded file (`assets/<path>`).
    pub fn asset(&self, path: &str) -> String {
        assets::url(path)
    }
}

/// The template rendered as a `200` HTML page.
pub fn render<T: Template>(template: &T) -> Response {
    render_with(StatusCode::OK, template)
}

/// The template rendered with `status` (a form shown again with its error: 401, 422 …).
pub fn render_with<T: Template>(status: StatusCode, template: &T) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "a console template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>An internal error occurred.</p>"),
            )
                .into_response()
        }
    }
}
