//! Operations for admins: the tenant's people (invite, change a role, ban or lift a
//! ban, erase), jobs and dead letters (retry), the projections with their lag and
//! parked events, and API keys (create — the secret is shown once —, list, revoke).
//!
//! Every change is the use case the API runs (`commands::users::change`,
//! `commands::jobs::retry`, `commands::erase`, `commands::api_keys`, and the API's
//! invitation handler), with the event metadata of `api::edge::caller::caller_metadata`; who may
//! do it is the `Admin` extractor's rule (`policy::administers`) as in the API. Each
//! form posts, then the browser is sent back to `/admin` with what was done.

mod reads;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ConsoleError;
use super::page::{Layout, Nav, render};
use super::session::Viewer;
use crate::aggregates::{ApiKey, Role};
use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::ApiPath;
use crate::auth::{Admin, policy};
use crate::commands::api_keys::{self, NewKey};
use crate::commands::erase::erase_user;
use crate::commands::jobs;
use crate::commands::store;
use crate::commands::users::{UserChange, change};
use crate::error::AppError;
use crate::ids::UserId;
use crate::projections::api_keys::ApiKeyView;
use crate::projections::status::{ProjectorStatus, status};
use crate::queries::jobs::{JobQuery, JobView, jobs_of};
use crate::state::AppState;
use reads::Person;

fn admin(viewer: &Viewer) -> Result<Admin, ConsoleError> {
    if !policy::administers(&viewer.ctx) {
        return Err(AppError::Forbidden("your role does not allow this page".into()).into());
    }
    Ok(Admin(viewer.ctx))
}

/// A secret shown once, right after it was made.
struct Secret {
    what: &'static str,
    value: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    page: Layout,
    me: Uuid,
    done: Option<&'static str>,
    secret: Option<Secret>,
    people: Vec<Person>,
    dead_letters: Vec<JobView>,
    recent_jobs: Vec<JobView>,
    projectors: Vec<ProjectorStatus>,
    keys: Vec<ApiKeyView>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// What a form did, from the fixed list (`?done=` never echoes free text).
fn done_text(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "role" => "The role was changed.",
        "ban" => "The user is banned: their sessions and keys are refused from now on.",
        "unban" => "The ban was lifted.",
        "erase" => "The user was erased.",
        "retry" => "The job was sent back to the queue.",
        "revoke" => "The API key was revoked.",
        _ => return None,
    })
}

async fn jobs_with(
    state: &AppState,
    role: Admin,
    status: Option<&str>,
) -> Result<Vec<JobView>, AppError> {
    let jobs = jobs_of(
        state,
        &role,
        JobQuery {
            status: status.map(str::to_string),
            limit: Some(50),
            before: None,
            before_id: None,
        },
    )
    .await?;
    Ok(jobs)
}

async fn show(
    state: &AppState,
    viewer: &Viewer,
    done: Option<&'static str>,
    secret: Option<Secret>,
) -> Result<Response, ConsoleError> {
    let role = admin(viewer)?;
    let people = reads::people(state, &viewer.ctx).await?;
    let dead_letters = jobs_with(state, role, Some("dead_letter")).await?;
    let recent_jobs = jobs_with(state, role, None).await?;
    let projectors = status(&state.db).await.map_err(AppError::from)?;
    let keys = if policy::manages_keys(&viewer.ctx) {
        keys_of(state, viewer).await?
    } else {
        Vec::new()
    };
    Ok(render(&AdminPage {
        page: Layout::new(viewer, "Admin", Nav::Admin),
        me: viewer.ctx.user_id.0,
        done,
        secret,
        people,
        dead_letters,
        recent_jobs,
        projectors,
        keys,
    }))
}

/// `GET /admin`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    show(&state, &viewer, done_text(done.done.as_deref()), None).await
}

async fn keys_of(state: &AppState, viewer: &Viewer) -> Result<Vec<ApiKeyView>, AppError> {
    let mut tx = viewer.ctx.begin(&state.db).await?;
    let keys = crate::projections::api_keys::list(&mut tx, viewer.ctx.tenant_id).await?;
    tx.commit().await?;
    Ok(keys)
}

fn back(done: &str) -> Response {
    Redirect::to(&format!("/admin?done={done}")).into_response()
}

#[derive(Debug, Deserialize)]
pub struct RoleForm {
    role: String,
}

/// A role as the forms name it; `system_worker` is not a person's role.
fn role_named(text: &str) -> Result<Role, AppError> {
    match text {
        "user" => Ok(Role::User),
        "auditor" => Ok(Role::Auditor),
        "admin" => Ok(Role::Admin),
        _ => Err(AppError::Validation(
            "role must be user, auditor or admin".into(),
        )),
    }
}

/// `POST /admin/users/{id}/role`.
pub async fn set_role(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    path: Result<ApiPath<Uuid>, AppError>,
    Form(form): Form<RoleForm>,
) -> Result<Response, ConsoleError> {
    let role = admin(&viewer)?;
    let ApiPath(id) = path?;
    let meta = caller_metadata(&viewer.ctx, &headers);
    let new = role_named(&form.role)?;
    change(&state, &role, &meta, UserId(id), UserChange::SetRole(new)).await?;
    Ok(back("role"))
}

/// `POST /admin/users/{id}/ban` and `/unban`.
pub async fn ban(
    state: State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    path: Result<ApiPath<Uuid>, AppError>,
) -> Result<Response, ConsoleError> {
    standing(state, viewer, headers, path, UserChange::Ban, "ban").await
}

pub async fn unban(
    state: State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    path: Result<ApiPath<Uuid>, AppError>,
) -> Result<Response, ConsoleError> {
    standing(state, viewer, headers, path, UserChange::Unban, "unban").await
}

async fn standing(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    path: Result<ApiPath<Uuid>, AppError>,
    what: UserChange,
    done: &str,
) -> Result<Response, ConsoleError> {
    let role = admin(&viewer)?;
    let ApiPath(id) = path?;
    let meta = caller_metadata(&viewer.ctx, &headers);
    change(&state, &role, &meta, UserId(id), what).await?;
    Ok(back(done))
}

/// `POST /admin/users/{id}/erase`: as `POST /v1/users/{id}/erase` (not oneself).
pub async fn erase(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    path: Result<ApiPath<Uuid>, AppError>,
) -> Result<Response, ConsoleError> {
    admin(&viewer)?;
    let ApiPath(id) = path?;
    if id == viewer.ctx.user_id.0 {
        return Err(AppError::Validation("you cannot erase yourself".into()).into());
    }
    let meta = caller_metadata(&viewer.ctx, &headers);
    erase_user(
        &state.db,
        &state.events,
        state.config.snapshot_every,
        viewer.ctx.tenant_id,
        UserId(id),
        &meta,
    )
    .await?;
    Ok(back("erase"))
}

/// `POST /admin/invitations`: an invitation (`commands::accounts::invite`), its token
/// shown once.
pub async fn invite(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<RoleForm>,
) -> Result<Response, ConsoleError> {
    let role = admin(&viewer)?;
    let invited = role_named(&form.role)?;
    let meta = caller_metadata(&viewer.ctx, &headers);
    let (token, _) = crate::commands::accounts::invite(&state, &role, &meta, invited).await?;
    let secret = Secret {
        what: "Invitation token (give it to the person; they register with it)",
        value: token.to_cookie_value(),
    };
    show(&state, &viewer, None, Some(secret)).await
}

/// `POST /admin/jobs/{id}/retry`.
pub async fn retry(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    path: Result<ApiPath<Uuid>, AppError>,
) -> Result<Response, ConsoleError> {
    let role = admin(&viewer)?;
    let ApiPath(id) = path?;
    let meta = caller_metadata(&viewer.ctx, &headers);
    jobs::retry(&state, &role, &meta, id).await?;
    Ok(back("retry"))
}

#[derive(Debug, Deserialize)]
pub struct KeyForm {
    name: String,
    role: String,
}

fn key_manager(viewer: &Viewer) -> Result<(), ConsoleError> {
    admin(viewer)?;
    if policy::manages_keys(&viewer.ctx) {
        Ok(())
    } else {
        Err(AppError::Forbidden("your session may not manage API keys".into()).into())
    }
}

/// `POST /admin/api-keys`: a new key, shown once.
pub async fn create_key(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<KeyForm>,
) -> Result<Response, ConsoleError> {
    key_manager(&viewer)?;
    let meta = caller_metadata(&viewer.ctx, &headers);
    let new = NewKey {
        name: form.name,
        role: role_named(&form.role)?,
        scopes: None,
        expires_at: None,
    };
    let ctx = viewer.ctx;
    let created = api_keys::create(
        &store::<ApiKey>(&state, ctx.tenant_id),
        ctx.tenant_id,
        ctx.user_id,
        new,
        &meta,
    )
    .await?;
    let secret = Secret {
        what: "API key (copy it now: it is never shown again)",
        value: created.key,
    };
    show(&state, &viewer, None, Some(secret)).await
}

/// `POST /admin/api-keys/{id}/revoke`.
pub async fn revoke_key(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    path: Result<ApiPath<Uuid>, AppError>,
) -> Result<Response, ConsoleError> {
    key_manager(&viewer)?;
    let ApiPath(id) = path?;
    let meta = caller_metadata(&viewer.ctx, &headers);
    api_keys::revoke(&store::<ApiKey>(&state, viewer.ctx.tenant_id), id, &meta).await?;
    Ok(back("revoke"))
}
