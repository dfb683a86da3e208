//! Signing in, signing up and signing out in the browser. The forms call the same use
//! cases as `/v1/auth` (`commands::accounts::{login, register, logout}`): the same checks,
//! budgets and events, so a console sign-in is a session like any other (listed under
//! Devices, revocable from anywhere). The session's refresh token becomes the session
//! cookie (src/auth/browser.rs).

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ConsoleError;
use super::page::{Layout, render, render_with};
use super::session::Viewer;
use crate::api::edge::caller::{caller_metadata, origin};
use crate::auth::browser::{self, PRESESSION_COOKIE, SESSION_COOKIE};
use crate::auth::tokens::REFRESH_TTL_SECS;
use crate::commands::accounts::{self, NewAccount, SignedIn};
use crate::error::{AppError, AuthFailure};
use crate::state::AppState;

/// How long a sign-in or sign-up form stays usable.
const PRESESSION_TTL_SECS: i64 = 24 * 60 * 60;

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    page: Layout,
    email: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "sign_up.html")]
struct SignUpPage {
    page: Layout,
    form: SignUpForm,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInForm {
    email: String,
    password: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignUpForm {
    tenant_name: String,
    invitation_token: String,
    handle: String,
    name: String,
    email: String,
    password: String,
}

/// A form field left empty is a field not given.
fn given(field: &str) -> Option<String> {
    let field = field.trim();
    (!field.is_empty()).then(|| field.to_string())
}

/// `/`: the files of a signed-in person, else the sign-in page.
pub async fn home(viewer: Result<Viewer, ConsoleError>) -> Response {
    let to = if viewer.is_ok() { "/files" } else { "/sign-in" };
    see_other(to)
}

fn see_other(to: &'static str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static(to))],
    )
        .into_response()
}

/// The pre-session nonce of this browser, or a new one (then set as a cookie).
fn presession(headers: &HeaderMap) -> (String, bool) {
    match browser::cookie(headers, PRESESSION_COOKIE) {
        Some(nonce) if !nonce.is_empty() => (nonce, false),
        _ => (browser::new_nonce(), true),
    }
}

/// A visitor's page with the pre-session token, setting the cookie when it is new.
fn visitor_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    build: impl FnOnce(String) -> Response,
) -> Response {
    let (nonce, new) = presession(headers);
    let mut response = build(state.csrf.for_presession(&nonce));
    *response.status_mut() = status;
    if new {
        response.headers_mut().append(
            header::SET_COOKIE,
            browser::set_cookie(PRESESSION_COOKIE, &nonce, PRESESSION_TTL_SECS),
        );
    }
    response
}

pub async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Result<Viewer, ConsoleError>,
) -> Response {
    if viewer.is_ok() {
        return see_other("/files");
    }
    visitor_page(&state, &headers, StatusCode::OK, |csrf| {
        render(&SignInPage {
            page: Layout::visitor("Sign in", csrf),
            email: String::new(),
            error: None,
        })
    })
}

pub async fn sign_up_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Result<Viewer, ConsoleError>,
) -> Response {
    if viewer.is_ok() {
        return see_other("/files");
    }
    visitor_page(&state, &headers, StatusCode::OK, |csrf| {
        render(&SignUpPage {
            page: Layout::visitor("Sign up", csrf),
            form: SignUpForm::default(),
            error: None,
        })
    })
}

/// Signed in: the session cookie, the pre-session one forgotten, on to the files.
fn signed_in(signed: SignedIn) -> Response {
    let mut response = see_other("/files");
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        browser::set_cookie(
            SESSION_COOKIE,
            &signed.refresh.to_cookie_value(),
            REFRESH_TTL_SECS,
        ),
    );
    h.append(
        header::SET_COOKIE,
        browser::set_cookie(PRESESSION_COOKIE, "", 0),
    );
    response
}

/// What a refused form tells the person, and with which status; `None`: not the form's
/// fault (an outage, a bug), shown as an error page.
fn form_error(err: &AppError) -> Option<(StatusCode, String)> {
    let message = match err {
        AppError::Unauthorized(AuthFailure::InvalidCredentials) => {
            "Email or password is wrong.".to_string()
        }
        AppError::Unauthorized(AuthFailure::UserBanned) => "This account is banned.".to_string(),
        AppError::Validation(m) | AppError::AlreadyExists(m) => capitalised(m),
        AppError::RateLimited { retry_after_secs } => {
            format!("Too many attempts; try again in {retry_after_secs} seconds.")
        }
        _ => return None,
    };
    Some((err.status(), message))
}

fn capitalised(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => format!(
            "{}{}.",
            first.to_uppercase(),
            chars.as_str().trim_end_matches('.')
        ),
        None => String::new(),
    }
}

pub async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return refused_form(rejection),
    };
    let origin = origin(&state, peer.ip(), &headers);
    match accounts::login(&state, &origin, &form.email, form.password).await {
        Ok(signed) => signed_in(signed),
        Err(err) => match form_error(&err) {
            Some((status, message)) => visitor_page(&state, &headers, status, |csrf| {
                render_with(
                    status,
                    &SignInPage {
                        page: Layout::visitor("Sign in", csrf),
                        email: form.email,
                        error: Some(message),
                    },
                )
            }),
            None => ConsoleError::from(err).into_response(),
        },
    }
}

/// A new tenant and its admin (as `POST /v1/auth/register` with `tenant_name`), or a
/// member of the tenant whose invitation token is given; then signed in. Both or neither
/// is the use case's own `422`, shown on the form.
pub async fn sign_up(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<SignUpForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return refused_form(rejection),
    };
    let account = NewAccount {
        tenant_name: given(&form.tenant_name),
        invitation_token: given(&form.invitation_token),
        handle: form.handle.clone(),
        name: form.name.clone(),
        email: form.email.clone(),
        password: form.password.clone(),
    };
    let origin = origin(&state, peer.ip(), &headers);
    let done = match accounts::register(&state, &origin, account).await {
        Ok(_) => accounts::login(&state, &origin, &form.email, form.password.clone()).await,
        Err(err) => Err(err),
    };
    match done {
        Ok(signed) => signed_in(signed),
        Err(err) => match form_error(&err) {
            Some((status, message)) => visitor_page(&state, &headers, status, |csrf| {
                render_with(
                    status,
                    &SignUpPage {
                        page: Layout::visitor("Sign up", csrf),
                        form: SignUpForm {
                            password: String::new(),
                            ..form
                        },
                        error: Some(message),
                    },
                )
            }),
            None => ConsoleError::from(err).into_response(),
        },
    }
}

/// A body that is not a form (another content type, bad encoding): the page of a 400 or
/// 415, not axum's plain text.
fn refused_form(rejection: FormRejection) -> Response {
    let err = match rejection.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::UnsupportedMediaType(
            "send the form as application/x-www-form-urlencoded".into(),
        ),
        _ => AppError::BadRequest("the form could not be read".into()),
    };
    ConsoleError::from(err).into_response()
}

/// Ends the session (as `POST /v1/auth/logout`): the cookie stops working everywhere.
pub async fn sign_out(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    accounts::logout(&state, &viewer.ctx, &caller_metadata(&viewer.ctx, &headers)).await?;
    let mut response = see_other("/sign-in");
    response.headers_mut().insert(
        header::SET_COOKIE,
        browser::set_cookie(SESSION_COOKIE, "", 0),
    );
    Ok(response)
}
