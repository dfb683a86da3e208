//! Devices: the person's sessions (each sign-in, the console's included) and the devices
//! they came from, with a button to revoke a session — the API's queries and use case
//! (`api::sessions`, `api::devices`). Revoking the session this page is viewed with
//! signs the browser out on its next request.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::error::ConsoleError;
use super::page::{Layout, Nav, render};
use super::session::Viewer;
use crate::api::edge::extract::ApiPath;
use crate::commands::sessions;
use crate::queries::devices::{DeviceView, devices_of};
use crate::queries::sessions::{SessionView, sessions_of};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    page: Layout,
    sessions: Vec<SessionView>,
    devices: Vec<DeviceView>,
}

pub async fn page(State(state): State<AppState>, viewer: Viewer) -> Result<Response, ConsoleError> {
    let sessions = sessions_of(&state, &viewer.ctx).await?;
    let devices = devices_of(&state, &viewer.ctx).await?;
    Ok(render(&DevicesPage {
        page: Layout::new(&viewer, "Devices", Nav::Devices),
        sessions,
        devices,
    }))
}

/// Revokes one of the person's sessions, then back to the list (or, for the session in
/// use, to the sign-in page).
pub async fn revoke(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    path: Result<ApiPath<Uuid>, crate::error::AppError>,
) -> Result<Response, ConsoleError> {
    let ApiPath(id) = path?;
    let meta = crate::api::edge::caller::caller_metadata(&viewer.ctx, &headers);
    sessions::revoke(&state, &viewer.ctx, &meta, id).await?;
    let to = if id == viewer.ctx.session_id {
        "/sign-in"
    } else {
        "/devices"
    };
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static(to))],
    )
        .into_response())
}
