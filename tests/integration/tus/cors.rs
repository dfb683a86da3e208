//! A browser's tus client (tus-js-client) from the frontend origin: preflights allow the
//! tus methods and request headers, answers expose the tus response headers, and a
//! preflight on `/v1/uploads` stays a preflight although tus uses OPTIONS for discovery.

use reqwest::{Method, StatusCode};

use super::*;
use crate::files_api::World;

const FRONTEND: &str = "https://app.example.com";

fn listed(r: &Response, name: &str) -> Vec<String> {
    r.headers()
        .get(name)
        .map(|v| {
            v.to_str()
                .unwrap()
                .split(',')
                .map(|s| s.trim().to_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

async fn preflight(w: &World, origin: &str, at: &str, method: &str, headers: &str) -> Response {
    w.t.http
        .request(Method::OPTIONS, w.t.url(at))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn preflights_allow_the_tus_methods_and_headers_and_are_not_discovery() {
    let w = World::new(&[("FRONTEND_URL", "https://app.example.com/")]).await;
    let tus_headers = "authorization, tus-resumable, upload-length, upload-offset, \
                       upload-metadata, upload-checksum, upload-defer-length, content-type";
    for (at, method) in [
        ("/v1/uploads", "POST"),
        ("/v1/uploads", "OPTIONS"),
        ("/v1/uploads/0190a4a4-0000-7000-8000-000000000000", "PATCH"),
        ("/v1/uploads/0190a4a4-0000-7000-8000-000000000000", "HEAD"),
        ("/v1/uploads/0190a4a4-0000-7000-8000-000000000000", "DELETE"),
    ] {
        let r = preflight(&w, FRONTEND, at, method, tus_headers).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{method} {at}");
        assert_eq!(header(&r, "access-control-allow-origin"), FRONTEND);
        assert!(listed(&r, "access-control-allow-methods").contains(&method.to_lowercase()));
        let allowed = listed(&r, "access-control-allow-headers");
        for h in tus_headers.split(',').map(str::trim) {
            assert!(
                allowed.contains(&h.to_string()),
                "{h} not allowed: {allowed:?}"
            );
        }
        // Answered as a preflight, not by the tus discovery handler.
        assert!(!r.headers().contains_key("tus-version"), "{method} {at}");
    }
    // Another origin's preflight gets no CORS headers (its browser then refuses).
    let r = preflight(
        &w,
        "https://evil.example.com",
        "/v1/uploads",
        "POST",
        tus_headers,
    )
    .await;
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn discovery_and_uploads_expose_the_tus_headers_to_the_frontend() {
    let w = World::new(&[("FRONTEND_URL", "https://app.example.com/")]).await;
    // OPTIONS without Access-Control-Request-Method: tus discovery, readable by the page.
    let r =
        w.t.http
            .request(Method::OPTIONS, w.t.url("/v1/uploads"))
            .header("origin", FRONTEND)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "tus-version"), "1.0.0");
    assert_eq!(header(&r, "access-control-allow-origin"), FRONTEND);
    let exposed = listed(&r, "access-control-expose-headers");
    for h in [
        "tus-version",
        "tus-extension",
        "tus-max-size",
        "tus-checksum-algorithm",
        "tus-resumable",
    ] {
        assert!(exposed.contains(&h.to_string()), "{h} not exposed");
    }
    let r = tus(w.t.http.post(w.t.url("/v1/uploads")), &w.admin)
        .header("origin", FRONTEND)
        .header("Upload-Length", 3)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let at = header(&r, "location");
    let exposed = listed(&r, "access-control-expose-headers");
    for h in [
        "location",
        "upload-offset",
        "upload-expires",
        "upload-length",
    ] {
        assert!(exposed.contains(&h.to_string()), "{h} not exposed");
    }
    let r = tus(w.t.http.patch(w.t.url(&at)), &w.admin)
        .header("origin", FRONTEND)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", 0)
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "access-control-allow-origin"), FRONTEND);
    let exposed = listed(&r, "access-control-expose-headers");
    for h in [
        "chronicle-file-id",
        "chronicle-version-id",
        "chronicle-version-number",
    ] {
        assert!(r.headers().contains_key(h), "{h} missing");
        assert!(exposed.contains(&h.to_string()), "{h} not exposed");
    }
}
