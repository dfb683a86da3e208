//! Static files of the console, embedded in the binary (rust-embed, in debug builds too)
//! and served under `/assets/`: our stylesheet and scripts, and the front-end libraries
//! in `vendor/` (scripts/build-web.sh produces them from web/package-lock.json).
//!
//! Caching: every file has an `ETag` (its SHA-256, computed at compile time), so a
//! revalidation is a `304`. Pages link files as `/assets/<path>?v=<etag>` ([`url`]);
//! such a request for the current version may be cached for a year (`immutable`),
//! since a new build changes the `v`. Without or with another `v`, `no-cache`.
//! Requests under `/assets/` skip the session cookie's lookup (src/auth/credentials.rs)
//! and the rate limit (src/api/edge/ratelimit.rs): they never need a caller.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;

use crate::state::AppState;

#[derive(Embed)]
#[folder = "src/console/assets/"]
struct Assets;

pub fn routes() -> Router<AppState> {
    Router::new().route("/assets/{*path}", get(serve))
}

/// The first 16 bytes of the file's SHA-256 in hex: its version.
fn version(file: &rust_embed::EmbeddedFile) -> String {
    hex::encode(&file.metadata.sha256_hash()[..16])
}

/// The URL of an embedded file, versioned for caching. An unknown path is a bug in a
/// template; its URL is unversioned (and answers 404).
pub fn url(path: &str) -> String {
    match Assets::get(path) {
        Some(file) => format!("/assets/{path}?v={}", version(&file)),
        None => {
            tracing::warn!(path, "a template links a missing asset");
            format!("/assets/{path}")
        }
    }
}

/// Media types of the kinds of file the console ships; anything else is not served.
fn content_type(path: &str) -> Option<&'static str> {
    let extension = path.rsplit_once('.')?.1;
    Some(match extension {
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

async fn serve(Path(path): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    let (Some(file), Some(kind)) = (Assets::get(&path), content_type(&path)) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let version = version(&file);
    let etag = format!("\"{version}\"");
    let current = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == format!("v={version}")));
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = file.data.into_owned().into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        response
    };
    let h = response.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is ASCII"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(super::CSP),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the pages link must be embedded, with a type the server sends.
    #[test]
    fn the_console_files_and_libraries_are_embedded() {
        for path in [
            "console.css",
            "console.js",
            "vendor/htmx.min.js",
            "vendor/tus.min.js",
            "vendor/uPlot.iife.min.js",
            "vendor/uPlot.min.css",
            "vendor/swagger-ui-bundle.js",
            "vendor/swagger-ui.css",
        ] {
            assert!(Assets::get(path).is_some(), "{path} is not embedded");
            assert!(content_type(path).is_some(), "{path} has no type");
            assert!(url(path).contains("?v="), "{path}");
        }
        assert_eq!(
            content_type("x.html"),
            None,
            "only the kinds listed are served"
        );
    }
}
