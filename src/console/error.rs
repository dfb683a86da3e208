//! How the console answers a failure: an HTML page with the status the JSON API would
//! give (404 for another tenant's ids, exactly as for ids that do not exist; 403 for a
//! missing CSRF token), or — when nobody is signed in — a trip to the sign-in page.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::page::{Layout, render_with};
use crate::auth::browser;
use crate::error::AppError;

#[derive(Debug)]
pub enum ConsoleError {
    /// Nobody (or a revoked session) is signed in: to the sign-in page. `htmx`: the
    /// request came from htmx, which must be told to leave the page (`HX-Redirect`)
    /// rather than follow a redirect into a fragment.
    SignIn { htmx: bool },
    /// Any refusal or failure of the use case, as the API would answer it.
    App(AppError),
}

impl From<AppError> for ConsoleError {
    fn from(err: AppError) -> Self {
        ConsoleError::App(err)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    page: Layout,
    status: u16,
    heading: &'static str,
    message: String,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let err = match self {
            ConsoleError::SignIn { htmx } => return to_sign_in(htmx),
            ConsoleError::App(AppError::Unauthorized(_)) => return to_sign_in(false),
            ConsoleError::App(err) => err,
        };
        let message = err.public_message();
        // The API's answer logs internal errors once and carries `Retry-After`; keep its
        // status and headers, replace its JSON body with a page.
        let api = err.into_response();
        let status = api.status();
        let heading = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::TOO_MANY_REQUESTS => "Too many requests",
            StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
            s if s.is_server_error() => "Something went wrong",
            _ => "The request was refused",
        };
        let message = match status {
            StatusCode::NOT_FOUND => "There is nothing here, or it is not yours to see.".into(),
            StatusCode::SERVICE_UNAVAILABLE => {
                "A service Chronicle needs is unavailable; try again in a moment.".into()
            }
            _ => message,
        };
        let page = ErrorPage {
            page: Layout::visitor(heading, String::new()),
            status: status.as_u16(),
            heading,
            message,
        };
        let mut response = render_with(status, &page);
        for name in [header::RETRY_AFTER] {
            if let Some(value) = api.headers().get(&name) {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }
}

/// To the sign-in page, forgetting a cookie that no longer signs anyone in.
fn to_sign_in(htmx: bool) -> Response {
    let mut response = if htmx {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        r.headers_mut()
            .insert("hx-redirect", HeaderValue::from_static("/sign-in"));
        r
    } else {
        (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, HeaderValue::from_static("/sign-in"))],
        )
            .into_response()
    };
    response.headers_mut().insert(
        header::SET_COOKIE,
        browser::set_cookie(browser::SESSION_COOKIE, "", 0),
    );
    response
}
