//! History for auditors: the tenant's audit log with filters, a file's timeline (each
//! event with who, when, what, its hash and whether the chain verifies up to it) with
//! time travel to any point, the chain and checkpoint check, and the NDJSON export
//! (a link to `GET /v1/audit/export`, which accepts the console's cookie).
//!
//! Every read is the JSON API's own handler or query called with the viewer's context
//! (`api::audit`, `api::history`), so roles, tenant isolation (another tenant's file is
//! `404`) and validation are the API's.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ConsoleError;
use super::page::{Layout, Nav, render};
use super::session::Viewer;
use crate::api::edge::extract::ApiPath;
use crate::auth::{AuditorOrAdmin, policy};
use crate::error::AppError;
use crate::queries::audit::{AuditEntry, AuditParams, VerifyParams, audit_log, verify_chain};
use crate::queries::files::FileView;
use crate::queries::history::{HistoryParams, TimeTravel, history_of, time_travel};
use crate::state::AppState;
use crate::store::history::{StoredEvent, StreamRef};
use crate::store::verify::{BreakKind, VerifyReport, stream_marks};

/// The most events a timeline shows (the API's largest page).
const TIMELINE_LIMIT: u32 = 200;

/// The auditor's role check, as the API's `AuditorOrAdmin` makes it.
fn auditor(viewer: &Viewer) -> Result<AuditorOrAdmin, ConsoleError> {
    if !policy::reads_history(&viewer.ctx) {
        return Err(AppError::Forbidden("your role does not allow this page".into()).into());
    }
    Ok(AuditorOrAdmin(viewer.ctx))
}

/// The filter form as the browser sends it: empty fields are absent, times are the
/// `datetime-local` inputs' `YYYY-MM-DDTHH:MM`, read as UTC.
#[derive(Debug, Default, Deserialize)]
pub struct LogFilter {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target_type: String,
    #[serde(default)]
    target_id: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    cursor: String,
}

fn some(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn instant(name: &str, text: &str) -> Result<Option<DateTime<Utc>>, AppError> {
    let Some(text) = some(text) else {
        return Ok(None);
    };
    if let Ok(at) = DateTime::parse_from_rfc3339(&text) {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&text, f).ok())
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| AppError::BadRequest(format!("{name} is not a date and time")))
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    page: Layout,
    filter: LogFilter,
    entries: Vec<AuditEntry>,
    /// The query string of the next page, when there is one.
    next: Option<String>,
}

/// `GET /audit`: the audit log, newest first, filtered.
pub async fn log(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(filter): Query<LogFilter>,
) -> Result<Response, ConsoleError> {
    let role = auditor(&viewer)?;
    let params = AuditParams {
        actor: some(&filter.actor),
        action: some(&filter.action),
        target_type: some(&filter.target_type),
        target_id: some(&filter.target_id),
        from: instant("from", &filter.from)?,
        to: instant("to", &filter.to)?,
        cursor: some(&filter.cursor),
        limit: Some(50),
    };
    let found = audit_log(&state, &role, false, params).await?;
    let next = found.next_cursor.map(|cursor| {
        let mut pairs = Vec::new();
        for (k, v) in [
            ("actor", &filter.actor),
            ("action", &filter.action),
            ("target_type", &filter.target_type),
            ("target_id", &filter.target_id),
            ("from", &filter.from),
            ("to", &filter.to),
        ] {
            if !v.is_empty() {
                pairs.push((k, v.as_str()));
            }
        }
        pairs.push(("cursor", cursor.as_str()));
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    });
    Ok(render(&AuditPage {
        page: Layout::new(&viewer, "History & audit", Nav::Audit),
        filter,
        entries: found.items,
        next,
    }))
}

/// One entry of a file's timeline.
struct TimelineEntry {
    event: StoredEvent,
    /// `None`: the chain verifies from the first event through this one.
    broken: Option<BreakKind>,
    /// The payload, compact, for "what changed".
    change: String,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    page: Layout,
    file_id: Uuid,
    entries: Vec<TimelineEntry>,
    /// The point shown (stream sequence) and the last one.
    at: i64,
    end: i64,
    /// The file as it was at `at`.
    then: FileView,
    more: bool,
}

#[derive(Debug, Deserialize)]
pub struct AtPoint {
    /// The stream sequence to show the file at (1 = created); default: now.
    at: Option<String>,
}

/// `GET /audit/files/{id}`: the file's timeline and the file as it was at `?at=<n>`.
pub async fn file(
    State(state): State<AppState>,
    viewer: Viewer,
    path: Result<ApiPath<Uuid>, AppError>,
    Query(point): Query<AtPoint>,
) -> Result<Response, ConsoleError> {
    let role = auditor(&viewer)?;
    let ApiPath(id) = path?;
    // The API's history answers 404 for another tenant's (or no) file.
    let found = history_of(
        &state,
        &role,
        id,
        HistoryParams {
            after: None,
            limit: Some(TIMELINE_LIMIT),
        },
    )
    .await?;
    let aggregate_id = id.to_string();
    let stream = StreamRef {
        tenant: viewer.ctx.tenant_id,
        aggregate_type: "file",
        aggregate_id: &aggregate_id,
    };
    let marks = stream_marks(&state.db, stream)
        .await
        .map_err(AppError::from)?;
    let end = marks.last().map_or(0, |m| m.0);
    let at = match point.at.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => end,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=end).contains(n))
            .ok_or_else(|| AppError::BadRequest(format!("at must be between 1 and {end}")))?,
    };
    let then = time_travel(
        &state,
        &viewer.ctx,
        id,
        TimeTravel {
            as_of: None,
            at_version: Some(at),
        },
    )
    .await?;
    let entries = found
        .items
        .into_iter()
        .map(|event| {
            let broken = marks
                .iter()
                .find(|m| m.0 == event.sequence)
                .and_then(|m| m.1);
            let mut change = event.payload.to_string();
            if change.len() > 300 {
                let cut = (0..=300)
                    .rev()
                    .find(|i| change.is_char_boundary(*i))
                    .unwrap_or(0);
                change.truncate(cut);
                change.push('…');
            }
            TimelineEntry {
                event,
                broken,
                change,
            }
        })
        .collect();
    Ok(render(&HistoryPage {
        page: Layout::new(
            &viewer,
            format!("History of {}", then.display_name),
            Nav::Audit,
        ),
        file_id: id,
        entries,
        at,
        end,
        then,
        more: found.next_after.is_some(),
    }))
}

#[derive(Template)]
#[template(path = "verify.html")]
struct VerifyPage {
    page: Layout,
    intact: bool,
    report: VerifyReport,
}

/// `GET /audit/verify`: recomputes the tenant's chains and checks its checkpoints (the
/// API's `GET /v1/audit/verify`), and shows the report.
pub async fn verify(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    let role = auditor(&viewer)?;
    let answer = verify_chain(
        &state,
        &role,
        VerifyParams {
            trusted_digest: None,
        },
    )
    .await?;
    Ok(render(&VerifyPage {
        page: Layout::new(&viewer, "Verify the history", Nav::Audit),
        intact: answer.intact,
        report: answer.report,
    }))
}

#[derive(Debug, Deserialize)]
pub struct OpenFile {
    #[serde(default)]
    id: String,
}

/// `GET /audit/file?id=…`: the "open a file's history" form, sent to its page.
pub async fn open(viewer: Viewer, Query(form): Query<OpenFile>) -> Result<Response, ConsoleError> {
    auditor(&viewer)?;
    let id = Uuid::parse_str(form.id.trim())
        .map_err(|_| AppError::BadRequest("that is not a file id".into()))?;
    Ok(axum::response::Redirect::to(&format!("/audit/files/{id}")).into_response())
}
