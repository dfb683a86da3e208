//! Charts for analysts (auditors and admins, as `policy::reads_history` says for the
//! tenant-wide views): storage per user and for the tenant, deduplication savings,
//! uploads and virus detections per day, processing latency percentiles and dead
//! letters, from the `analytics` views (`views.rs`).
//!
//! The page renders the totals as text and empty figures; `assets/analytics.js` fetches
//! `/analytics/data.json` and draws the series with the vendored uPlot (no inline
//! script: the CSP forbids it). Each chart also has a text summary for screen readers.

mod views;

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::error::ConsoleError;
use super::page::{Layout, Nav, render};
use super::session::Viewer;
use crate::auth::policy;
use crate::error::AppError;
use crate::state::AppState;
use views::Analytics;

fn analyst(viewer: &Viewer) -> Result<(), ConsoleError> {
    if policy::reads_history(&viewer.ctx) {
        Ok(())
    } else {
        Err(AppError::Forbidden("your role does not allow this page".into()).into())
    }
}

#[derive(Template)]
#[template(path = "analytics.html")]
struct AnalyticsPage {
    page: Layout,
    data: Analytics,
}

/// Bytes for people: `1.5 MiB`.
fn human(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl AnalyticsPage {
    fn bytes(&self, n: &i64) -> String {
        human(*n)
    }

    fn percent(&self, ratio: &f64) -> String {
        format!("{:.1} %", ratio * 100.0)
    }

    fn sum(&self, values: &[i64]) -> i64 {
        values.iter().sum()
    }
}

/// `GET /analytics`.
pub async fn page(State(state): State<AppState>, viewer: Viewer) -> Result<Response, ConsoleError> {
    analyst(&viewer)?;
    let data = views::read(&state, &viewer.ctx).await?;
    Ok(render(&AnalyticsPage {
        page: Layout::new(&viewer, "Analytics", Nav::Analytics),
        data,
    }))
}

/// `GET /analytics/data.json`: the series the charts draw.
pub async fn data(State(state): State<AppState>, viewer: Viewer) -> Result<Response, ConsoleError> {
    analyst(&viewer)?;
    Ok(Json(views::read(&state, &viewer.ctx).await?).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(super::human(0), "0 B");
        assert_eq!(super::human(1023), "1023 B");
        assert_eq!(super::human(1536), "1.5 KiB");
        assert_eq!(super::human(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
