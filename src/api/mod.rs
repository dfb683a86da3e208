//! The HTTP API: one folder per resource (accounts, files, uploads, audit,
//! notifications, operations), each with its own `routes()`, assembled here behind the
//! layers of `edge` (what every request passes through). Handlers parse, call one use
//! case in `commands/` or one read query, and render.

pub(crate) mod accounts;
pub(crate) mod audit;
pub mod edge;
pub(crate) mod files;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod notifications;
pub(crate) mod operations;
pub mod serve;
pub(crate) mod uploads;

use axum::Router;
use axum::http::HeaderName;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;

use crate::error::{AppError, ErrorBody, ErrorDetail};
use crate::state::AppState;
use edge::json::JsonBodyLimitLayer;
use edge::ratelimit::RateLimitLayer;
use edge::{headers, idempotency, observe, outage, read_routing, text, unread};
use operations::openapi::LayerResponses;

#[derive(OpenApi)]
#[openapi(
    info(title = "Chronicle", description = "Event-sourced file backend"),
    paths(
        operations::health::health, operations::health::ready, operations::ops::metrics,
        operations::ops::openapi,
        accounts::auth::register, accounts::auth::login, accounts::auth::refresh,
        accounts::auth::logout, accounts::auth::invite, accounts::usage::usage,
        accounts::users::me, accounts::users::set_role, accounts::users::ban,
        accounts::users::unban, accounts::erase::erase,
        accounts::sessions::list, accounts::sessions::revoke, accounts::devices::list,
        accounts::api_keys::create, accounts::api_keys::list, accounts::api_keys::revoke,
        uploads::multipart::create_file, uploads::multipart::create_version,
        uploads::direct::start, uploads::direct::complete,
        files::download::current, files::download::version, files::download::thumbnail,
        operations::jobs::list, operations::jobs::retry,
        notifications::inbox::list, notifications::inbox::mark_read, notifications::inbox::mark_all_read,
        notifications::stream::stream,
        files::list::list, files::show::get, files::show::versions, files::list::tags,
        files::manage::rename, files::manage::tag, files::manage::untag, files::manage::delete,
        files::manage::restore, files::manage::restore_version, files::manage::bulk,
        files::sharing::grants, files::sharing::share_user, files::sharing::share_role,
        files::sharing::unshare_user, files::sharing::unshare_role, files::sharing::hold,
        files::sharing::release, files::sharing::create_link, files::sharing::links,
        files::sharing::revoke_link, files::sharing::download,
        audit::log::list, audit::log::verify, audit::log::export, audit::history::list,
        notifications::feed::page, notifications::feed::stream,
        notifications::webhooks::create, notifications::webhooks::list,
        notifications::webhooks::get, notifications::webhooks::update,
        notifications::webhooks::delete, notifications::webhooks::deliveries,
        notifications::webhooks::redeliver,
        audit::transparency::tree_head, audit::transparency::inclusion,
        audit::transparency::consistency,
        uploads::tus::options, uploads::tus::options_upload, uploads::tus::create::create,
        uploads::tus::head, uploads::tus::patch, uploads::tus::terminate,
    ),
    components(schemas(ErrorBody, ErrorDetail, operations::health::Health,
        uploads::multipart::UploadAccepted, uploads::direct::NewDirectUpload,
        uploads::direct::DirectUploadSession, uploads::direct::DirectPart,
        uploads::direct::CompleteDirectUpload)),
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

/// The whole API. Layers run outside-in: request id → security headers → CORS → unread
/// bodies finished (or the connection closed) after the answer → metrics and logging →
/// a panic answered `500` → timeout → outage guard → bearer token verified → rate limit
/// → text rule → JSON body limit → routing → idempotency (a route layer: only for
/// routes and methods that exist) → handler. So 429s, 413s and 404s are logged,
/// counted, and carry CORS and security headers like any other answer, and a CORS
/// preflight is answered before it can consume rate-limit budget.
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
    let request_id = HeaderName::from_static(observe::REQUEST_ID);
    let mut router = Router::new()
        .merge(operations::routes())
        .merge(accounts::routes(&state))
        .merge(files::routes())
        .merge(uploads::routes())
        .merge(audit::routes())
        .merge(notifications::routes())
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
        .layer(axum::middleware::from_fn(observe::request_timeout))
        .layer(CatchPanicLayer::custom(observe::panicked))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        // Outside every layer that may answer before the body is read (unread.rs).
        .layer(axum::middleware::from_fn(unread::finish_unread_bodies));
    if let Some(cors) = headers::Cors::from_config(&config) {
        router = router.layer(axum::middleware::from_fn_with_state(cors, headers::cors));
    }
    router
        .layer(axum::middleware::from_fn_with_state(
            headers::SecurityHeaders::from_config(&config),
            headers::security_headers,
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
