//! Browser-facing edge: security headers on every response and strict CORS for the one
//! frontend origin (`FRONTEND_URL`).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::{Config, Environment};

/// Set unless a handler chose its own (a future download route may need a different CSP).
/// This is a JSON API: nothing it returns should ever be rendered, framed or sniffed.
const SECURITY_HEADERS: &[(header::HeaderName, &str)] = &[
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
];

/// Two years, the usual preload-grade value. Only in production: a local `http://` host
/// must not be pinned to HTTPS in a developer's browser.
const HSTS: &str = "max-age=63072000; includeSubDomains";

#[derive(Clone, Copy)]
pub struct SecurityHeaders {
    hsts: bool,
}

impl SecurityHeaders {
    pub fn from_config(config: &Config) -> Self {
        Self {
            hsts: config.environment == Environment::Production,
        }
    }
}

pub async fn security_headers(
    State(policy): State<SecurityHeaders>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    if policy.hsts {
        headers
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert_with(|| HeaderValue::from_static(HSTS));
    }
    response
}

/// OPTIONS too: a browser's tus client may discover the server's capabilities with it,
/// and OPTIONS is never a "simple" method, so the browser preflights it first.
const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
/// The tus request headers (tus-js-client sends them) after the API's own.
const ALLOW_HEADERS: &str = "authorization, content-type, idempotency-key, if-match, if-none-match, x-request-id, \
     tus-resumable, upload-length, upload-offset, upload-metadata, upload-checksum, \
     upload-defer-length";
/// What the frontend may read besides the CORS-safelisted headers; the tus ones name each
/// header (with credentials, `*` would be a header literally called `*`).
const EXPOSE_HEADERS: &str = "x-request-id, location, etag, content-disposition, retry-after, \
     ratelimit-limit, ratelimit-remaining, ratelimit-reset, ratelimit-policy, \
     upload-offset, upload-length, upload-defer-length, upload-expires, tus-resumable, \
     tus-version, tus-extension, tus-max-size, tus-checksum-algorithm, chronicle-file-id, \
     chronicle-version-id, chronicle-version-number";
const PREFLIGHT_MAX_AGE_SECS: &str = "600";

/// The one origin allowed to call the API from a browser, with credentials.
#[derive(Clone)]
pub struct Cors {
    origin: HeaderValue,
}

impl Cors {
    /// `None` when `FRONTEND_URL` is unset: no origin is allowed, no CORS headers are sent.
    pub fn from_config(config: &Config) -> Option<Self> {
        let origin = HeaderValue::from_str(config.frontend_url.as_deref()?).ok()?;
        Some(Self { origin })
    }
}

/// Strict CORS, written out rather than configured on `tower_http::cors`: that layer sends
/// some `Access-Control-*` headers (allow-methods, expose-headers) to every origin. Here a
/// foreign origin gets none, and its preflight falls through to the router like any other
/// `OPTIONS` request. The frontend's preflight is answered here, before any route: an
/// `OPTIONS /v1/uploads` with `Access-Control-Request-Method` is a preflight, one without
/// it is tus capability discovery (src/api/uploads/tus).
pub async fn cors(State(cors): State<Cors>, request: Request, next: Next) -> Response {
    let allowed = request.headers().get(header::ORIGIN) == Some(&cors.origin);
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);

    let mut response = if allowed && preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS),
        );
        response
    } else {
        next.run(request).await
    };

    let h = response.headers_mut();
    // The answer depends on Origin, so shared caches must not serve one origin's to another.
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, cors.origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        if !preflight {
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
    }
    response
}
