//! The HTTP API: one router per resource, assembled here with the edge layers.

mod api_keys;
mod audit;
pub(crate) mod auth;
mod budget;
mod caller;
mod cursor;
pub(crate) mod devices;
mod direct;
mod direct_session;
pub(crate) mod download;
pub mod edge;
mod erase;
mod events;
pub(crate) mod extract;
mod feed;
pub(crate) mod files;
pub(crate) mod files_list;
pub(crate) mod files_manage;
#[doc(hidden)]
pub mod fuzzing;
mod health;
pub(crate) mod history;
pub mod idempotency;
mod idempotency_upload;
mod jobs;
pub mod json;
mod middleware;
mod notifications;
mod openapi;
mod ops;
mod outage;
pub mod ratelimit;
mod read_routing;
mod register_guard;
pub(crate) mod sessions;
pub(crate) mod sharing;
mod text;
mod transparency;
pub(crate) mod tus;
pub(crate) mod upload;
mod users;
mod webhooks;

use axum::Router;
use axum::http::HeaderName;
use axum::routing::{delete, get, post, put};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;

use crate::error::{AppError, ErrorBody, ErrorDetail};
use crate::state::AppState;
use json::JsonBodyLimitLayer;
use openapi::LayerResponses;
use ratelimit::RateLimitLayer;

#[derive(OpenApi)]
#[openapi(
    info(title = "Chronicle", description = "Event-sourced file backend"),
    paths(
        health::health, health::ready, ops::metrics, ops::openapi,
        auth::register, auth::login, auth::refresh, auth::logout, auth::invite,
        users::me, users::set_role, users::ban, users::unban, erase::erase,
        sessions::list, sessions::revoke, devices::list,
        api_keys::create, api_keys::list, api_keys::revoke,
        upload::create_file, upload::create_version, direct::start, direct::complete,
        download::current, download::version, download::thumbnail,
        jobs::list, jobs::retry,
        notifications::list, notifications::mark_read, events::stream,
        files_list::list, files::get, files::versions, files_list::tags,
        files_manage::rename, files_manage::tag, files_manage::untag, files_manage::delete,
        files_manage::restore, files_manage::restore_version, files_manage::bulk,
        sharing::grants, sharing::share_user, sharing::share_role, sharing::unshare_user,
        sharing::unshare_role, sharing::hold, sharing::release, sharing::create_link,
        sharing::links, sharing::revoke_link, sharing::download,
        audit::list, audit::verify, audit::export, history::list,
        feed::page, feed::stream,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::deliveries, webhooks::redeliver,
        transparency::tree_head, transparency::inclusion, transparency::consistency,
        tus::options, tus::options_upload, tus::create::create, tus::head, tus::patch, tus::terminate,
    ),
    components(schemas(ErrorBody, ErrorDetail, health::Health, upload::UploadAccepted,
        direct::NewDirectUpload, direct::DirectUploadSession, direct::DirectPart, direct::CompleteDirectUpload)),
    modifiers(&BearerAuth, &LayerResponses)
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the authenticated paths refer to.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The whole API. Layers run outside-in: request id → security headers → CORS → metrics
/// and logging → timeout → outage guard → bearer token verified → rate limit → text rule
/// → JSON body limit → routing → idempotency (a route layer: only for routes and methods
/// that exist) → handler. So 429s, 413s and 404s are logged, counted, and carry CORS and
/// security headers like any other answer, and a CORS preflight is answered before it
/// can consume rate-limit budget.
///
/// Later routers: a `/v1/auth` router adds `ratelimit::RateLimitLayer::auth(&state)`; a
/// streaming upload route reads its body as a stream (untouched by the JSON limit), and a
/// router needing a different JSON limit layers its own `JsonBodyLimitLayer`.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The API with other routes merged in (the web console at `/`, src/console), behind the
/// same edge, credentials and rate-limit layers. `api` does not know what they are:
/// `app.rs` passes them in, so `api` never imports the surfaces above it.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let config = state.config.clone();
    let request_id = HeaderName::from_static(middleware::REQUEST_ID);
    let mut router = Router::new()
        .route("/health", get(health::health))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(
            // Password guessing and token grinding get a stricter per-IP budget.
            Router::new()
                .route("/v1/auth/register", post(auth::register))
                .route("/v1/auth/login", post(auth::login))
                .route("/v1/auth/refresh", post(auth::refresh))
                .route_layer(RateLimitLayer::auth(&state)),
        )
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/tenants/current/invitations", post(auth::invite))
        .route("/v1/me", get(users::me))
        .route("/v1/users/{id}/role", put(users::set_role))
        .route("/v1/users/{id}/ban", post(users::ban))
        .route("/v1/users/{id}/unban", post(users::unban))
        .route("/v1/users/{id}/erase", post(erase::erase))
        .route("/v1/sessions", get(sessions::list))
        // API keys for integrations (src/api/api_keys.rs).
        .route("/v1/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/v1/api-keys/{id}", delete(api_keys::revoke))
        .route("/v1/sessions/{id}", delete(sessions::revoke))
        .route("/v1/devices", get(devices::list))
        // Files: upload, read, manage (src/api/upload.rs, files*.rs), download.
        .route("/v1/files", get(files_list::list).post(upload::create_file))
        .route(
            "/v1/files/{id}",
            get(files::get)
                .patch(files_manage::rename)
                .delete(files_manage::delete),
        )
        .route(
            "/v1/files/{id}/versions",
            get(files::versions).post(upload::create_version),
        )
        .route(
            "/v1/files/{id}/tags/{tag}",
            put(files_manage::tag).delete(files_manage::untag),
        )
        .route("/v1/files/{id}/restore", post(files_manage::restore))
        .route(
            "/v1/files/{id}/versions/{n}/restore",
            post(files_manage::restore_version),
        )
        .route("/v1/tags", get(files_list::tags))
        // Direct-to-S3 uploads: presigned part URLs (src/api/direct.rs).
        .route("/v1/files/direct", post(direct::start))
        .route("/v1/files/direct/{id}/complete", post(direct::complete))
        .route("/v1/files/{id}/content", get(download::current))
        .route(
            "/v1/files/{id}/versions/{n}/content",
            get(download::version),
        )
        .route("/v1/files/{id}/thumbnail", get(download::thumbnail))
        // Sharing: grants, legal holds, links (src/api/sharing.rs, docs/sharing.md).
        .route("/v1/files/bulk", post(files_manage::bulk))
        .route("/v1/files/{id}/grants", get(sharing::grants))
        .route(
            "/v1/files/{id}/grants/users/{user_id}",
            put(sharing::share_user).delete(sharing::unshare_user),
        )
        .route(
            "/v1/files/{id}/grants/roles/{role}",
            put(sharing::share_role).delete(sharing::unshare_role),
        )
        .route(
            "/v1/files/{id}/hold",
            put(sharing::hold).delete(sharing::release),
        )
        .route(
            "/v1/files/{id}/links",
            get(sharing::links).post(sharing::create_link),
        )
        .route(
            "/v1/files/{id}/links/{link_id}",
            delete(sharing::revoke_link),
        )
        .route("/l/{token}", get(sharing::download))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/notifications", get(notifications::list))
        .route(
            "/v1/notifications/{id}/read",
            post(notifications::mark_read),
        )
        .route("/v1/events", get(events::stream))
        // Resumable uploads, tus 1.0.0 (src/api/tus).
        .merge(tus::routes())
        // History for auditors (src/api/audit.rs, src/api/history.rs).
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/audit/export", get(audit::export))
        .route("/v1/feed", get(feed::page))
        .route("/v1/feed/stream", get(feed::stream))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/v1/files/{id}/history", get(history::list))
        // The transparency log: signed heads and Merkle proofs (src/api/transparency.rs).
        .route("/v1/audit/tree-head", get(transparency::tree_head))
        .route("/v1/audit/proofs/inclusion", get(transparency::inclusion))
        .route(
            "/v1/audit/proofs/consistency",
            get(transparency::consistency),
        )
        // Idempotency keys only for a route and method that exist: a route layer runs
        // after routing, so an unknown path is 404 and a wrong method 405 (with `Allow`)
        // whatever key it carries, and neither claims nor compares a key. It must come
        // before `method_not_allowed_fallback`, which then replaces each route's default
        // fallback (that this layer wrapped) with the bare 405 handler.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotency,
        ))
        // After the idempotency layer: the console's forms take no Idempotency-Key.
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(JsonBodyLimitLayer::new(config.max_json_body_bytes))
        // The text rule (text.rs) on the URI and request id, before anything is recorded.
        .layer(axum::middleware::from_fn(text::guard))
        // Read-your-writes marks for read replicas (needs the verified token).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            read_routing::read_your_writes,
        ))
        .layer(RateLimitLayer::global(&state))
        // The bearer token, verified once for everything inside (src/auth/credentials.rs).
        .layer(axum::middleware::from_fn_with_state(
            state.verifier(),
            crate::auth::credentials::verify,
        ))
        .layer(axum::middleware::from_fn_with_state(
            outage::OutageGuard::start(state.clone(), state.live.shutdown().clone()),
            outage::unavailable_when_down,
        ))
        .layer(axum::middleware::from_fn(middleware::request_timeout))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ));
    if let Some(cors) = edge::Cors::from_config(&config) {
        router = router.layer(axum::middleware::from_fn_with_state(cors, edge::cors));
    }
    router
        .layer(axum::middleware::from_fn_with_state(
            edge::SecurityHeaders::from_config(&config),
            edge::security_headers,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::NotFound("no such route".into())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

    /// (path, method) of every `.route(` call under src/api, read from the source.
    fn routes_in(dir: &Path, found: &mut BTreeSet<(String, &'static str)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                routes_in(&path, found);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Production code only: test modules route made-up paths.
            let code = text.split("#[cfg(test)]").next().unwrap();
            for piece in code.split(".route(").skip(1) {
                let Some(literal) = piece.trim_start().strip_prefix('"') else {
                    continue;
                };
                let route = literal.split('"').next().unwrap().to_string();
                // The call's arguments: up to its closing parenthesis.
                let mut depth = 1;
                let end = piece
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map_or(piece.len(), |(i, _)| i);
                let args = &piece[..end];
                for method in METHODS {
                    let call = format!("{method}(");
                    let called = args.match_indices(&call).any(|(i, _)| {
                        i == 0 || !args[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                    });
                    if called {
                        found.insert((route.clone(), method));
                    }
                }
            }
        }
    }

    /// /openapi.json is what client generators read: a route missing from it does not
    /// exist for them.
    #[test]
    fn every_route_and_method_is_in_the_openapi_document() {
        let mut routes = BTreeSet::new();
        routes_in(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api"),
            &mut routes,
        );
        assert!(routes.len() > 40, "found only {routes:?}");
        let doc = ApiDoc::openapi();
        let missing: Vec<_> = routes
            .iter()
            .filter(|(route, method)| {
                let Some(item) = doc.paths.paths.get(route.as_str()) else {
                    return true;
                };
                let operation = match *method {
                    "get" => &item.get,
                    "put" => &item.put,
                    "post" => &item.post,
                    "delete" => &item.delete,
                    "options" => &item.options,
                    "head" => &item.head,
                    _ => &item.patch,
                };
                operation.is_none()
            })
            .collect();
        assert!(missing.is_empty(), "not in openapi.json: {missing:?}");
    }

    /// A `{name}` in a path that no parameter declares makes the document invalid
    /// (generators and Schemathesis refuse the operation), and a header typed `null` can
    /// only be sent as the text "null".
    #[test]
    fn every_path_parameter_is_declared_and_no_header_is_null() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut problems = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let names: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, operation) in item.as_object().unwrap() {
                let parameters = operation["parameters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for name in &names {
                    let declared = parameters.iter().any(|p| {
                        p["in"] == "path"
                            && p["name"] == *name
                            && p["required"] == true
                            && p["schema"].is_object()
                    });
                    if !declared {
                        problems.push(format!("{method} {path}: path parameter {name}"));
                    }
                }
                for p in parameters.iter().filter(|p| p["in"] == "header") {
                    let types = &p["schema"]["type"];
                    if types == "null"
                        || types.as_array().is_some_and(|t| t.contains(&"null".into()))
                    {
                        problems.push(format!("{method} {path}: header {} admits null", p["name"]));
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
