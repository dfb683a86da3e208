//! CSRF protection of every console request that changes state (any method but GET,
//! HEAD, OPTIONS), before its handler runs — so no handler can forget it. The token
//! (src/auth/browser.rs) comes as the `X-CSRF-Token` header (htmx and our scripts set it
//! from the page's `<meta name="csrf-token">`) or as the `csrf_token` field of a plain
//! form (`application/x-www-form-urlencoded`, read here up to 64 KiB and handed on
//! unchanged). It must be:
//!
//! - the session's token, when the session cookie signs someone in: the request's
//!   credentials are then marked as proven, which is what lets the `TenantContext`
//!   extractor accept a state change made with the cookie;
//! - or, for the sign-in and sign-up forms (no session yet), the token bound to the
//!   pre-session cookie the form's page set.
//!
//! Anything else is `403 csrf_token_invalid`, as an HTML page, and nothing runs.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ConsoleError;
use crate::auth::Credentials;
use crate::auth::browser::{self, CSRF_FIELD, CSRF_HEADER};
use crate::auth::credentials::Bearer;
use crate::error::AppError;
use crate::state::AppState;

/// A console form is a few fields; a larger body is not one of ours.
const MAX_FORM_BYTES: usize = 64 * 1024;

pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !browser::is_unsafe(request.method()) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let header_token = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let form = parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .starts_with(b"application/x-www-form-urlencoded")
    });
    let (token, body) = match (header_token, form) {
        (Some(token), _) => (Some(token), body),
        (None, true) => match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(bytes) => {
                let token = form_field(&bytes, CSRF_FIELD);
                (token, Body::from(bytes))
            }
            Err(_) => {
                return ConsoleError::App(AppError::PayloadTooLarge(
                    "the form is too large".into(),
                ))
                .into_response();
            }
        },
        (None, false) => (None, body),
    };
    let Some(token) = token else {
        return ConsoleError::App(AppError::CsrfRejected).into_response();
    };
    let mut proven = false;
    if let Some(Credentials(Ok(Bearer::Browser(grant)))) = parts.extensions.get_mut::<Credentials>()
        && state.csrf.verify_session(grant.session_id, &token)
    {
        grant.csrf_proven = true;
        proven = true;
    }
    if !proven && let Some(nonce) = browser::cookie(&parts.headers, browser::PRESESSION_COOKIE) {
        proven = state.csrf.verify_presession(&nonce, &token);
    }
    if !proven {
        return ConsoleError::App(AppError::CsrfRejected).into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// The first value of `name` in a urlencoded body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_the_form() {
        assert_eq!(
            form_field(b"email=a%40b.c&csrf_token=abc%2Bd&x=1", CSRF_FIELD).as_deref(),
            Some("abc+d")
        );
        assert_eq!(form_field(b"email=a", CSRF_FIELD), None);
    }
}
