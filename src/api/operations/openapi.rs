//! What the layers around every handler answer, added to `/openapi.json` in one place so
//! the document tells the truth on every operation (scripts/schemathesis.sh checks it):
//! - 401 on every operation with the `bearer` security requirement (`TenantContext`);
//! - 429 with `Retry-After` wherever the rate limiter runs (all but health and metrics);
//! - 400 where there are path or query parameters (a malformed id or query string);
//! - 400, 413, 415, 422 where the body is JSON (`JsonBody`);
//! - the `Idempotency-Key` header, and its 400/409/422, on state-changing requests;
//! - `Tus-Resumable: 1.0.0` and its 412 on the tus routes, and the shapes of
//!   `Upload-Metadata` and `Upload-Checksum`;
//! - no `null` in a header's type (a header is text or absent);
//! - 408 (request timeout) and 503 (a dependency is down) on every `/v1` route;
//! - the `ErrorBody` schema on every error status a handler listed without a body;
//! - a description on every response (required by OpenAPI and by client generators).
//!
//! Handlers still document their own statuses (403, 404, 409, …) in `#[utoipa::path]`.

use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, Required, Response, ResponseBuilder,
};

use crate::api::edge::idempotency;
use crate::api::edge::ratelimit;
use crate::api::uploads::tus::headers as tus_headers;

/// The `utoipa::Modify` that adds the layers' answers.
pub struct LayerResponses;

impl utoipa::Modify for LayerResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("options", &mut item.options),
                ("head", &mut item.head),
                ("patch", &mut item.patch),
            ];
            for (method, operation) in operations {
                if let Some(operation) = operation {
                    document(path, method, operation);
                }
            }
        }
    }
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// Adds `status` unless the handler documented it itself.
fn answer(operation: &mut Operation, status: u16, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::T(error_response(description)));
}

fn parameters(operation: &Operation) -> impl Iterator<Item = &Parameter> {
    operation
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) => Some(p),
            RefOr::Ref(_) => None,
        })
}

fn has_parameter_in(operation: &Operation, place: ParameterIn) -> bool {
    parameters(operation).any(|p| p.parameter_in == place)
}

fn body_types(operation: &Operation) -> Vec<String> {
    match &operation.request_body {
        Some(RefOr::T(RequestBody { content, .. })) => content.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn document(path: &str, method: &str, operation: &mut Operation) {
    let authenticated = operation.security.iter().flatten().any(|requirement| {
        serde_json::to_value(requirement).is_ok_and(|v| v.get("bearer").is_some())
    });
    if authenticated {
        answer(
            operation,
            401,
            "missing, invalid or expired access token, revoked session or banned user",
        );
    }
    if !ratelimit::EXEMPT.contains(&path) {
        let retry_after = HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new().schema_type(SchemaType::Type(Type::Integer)),
            ))
            .description(Some("seconds until the budget allows another request"))
            .build();
        operation
            .responses
            .responses
            .entry("429".into())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::from(error_response(
                        "rate_limited: the request budget of this client is spent",
                    ))
                    .header("Retry-After", retry_after)
                    .build(),
                )
            });
    }
    if path.starts_with("/v1/") {
        answer(operation, 408, "request_timeout: the request took too long");
        answer(
            operation,
            503,
            "service_unavailable: a dependency (Postgres, Redis, storage) is down; retry",
        );
    }
    if path.contains('{') {
        answer(operation, 400, "bad_request: a malformed path parameter");
    }
    if has_parameter_in(operation, ParameterIn::Query) {
        answer(operation, 400, "bad_request: a malformed query parameter");
    }
    let bodies = body_types(operation);
    if bodies.iter().any(|t| t == "application/json") {
        answer(operation, 400, "bad_request: the body is not JSON");
        answer(
            operation,
            413,
            "payload_too_large: the body is over the limit",
        );
        answer(
            operation,
            415,
            "unsupported_media_type: Content-Type is not application/json",
        );
        answer(
            operation,
            422,
            "validation_failed: the body does not have the expected shape or values",
        );
    }
    let state_changing = matches!(method, "post" | "put" | "patch" | "delete");
    // Multipart uploads take a key too (claimed once the file is in, `streamed_keys`); a
    // tus chunk takes none (`idempotency::carries_tus_bytes`).
    let tus_bytes = bodies
        .iter()
        .any(|t| t == "application/offset+octet-stream");
    if state_changing && !tus_bytes && !idempotency::EXCLUDED.contains(&path) {
        idempotency_key(operation);
    }
    if parameters(operation).any(|p| p.name == "Tus-Resumable") {
        tus_headers(operation);
    }
    headers_are_never_null(operation);
    fill_error_bodies(operation);
    describe_every_response(operation);
}

/// OpenAPI requires a description on every response; client generators refuse a
/// document without one. A handler's bare `(status = 200, body = …)` gets the status's
/// reason phrase.
fn describe_every_response(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        if let RefOr::T(response) = response
            && response.description.is_empty()
        {
            let reason = status
                .parse::<u16>()
                .ok()
                .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
                .unwrap_or("response");
            response.description = reason.to_string();
        }
    }
}

fn idempotency_key(operation: &mut Operation) {
    let key = Parameter::builder()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "a repeat within 24 hours with the same request returns the stored response \
             without a second effect (1 to 255 visible ASCII characters)",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[!-~]+$")),
        ))
        .build();
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(RefOr::T(key));
    answer(operation, 400, "bad_request: a malformed Idempotency-Key");
    answer(
        operation,
        409,
        "idempotency_key_in_progress: a request with this Idempotency-Key is running",
    );
    answer(
        operation,
        422,
        "idempotency_key_reused: this Idempotency-Key was used for a different request",
    );
}

/// The tus version header must name 1.0.0 (anything else is 412); `Upload-Metadata` and
/// `Upload-Checksum` have the shapes their parsers accept (tus/headers.rs, where a test
/// holds the two together).
fn tus_headers(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        let RefOr::T(p) = parameter else { continue };
        match p.name.as_str() {
            "Tus-Resumable" => {
                p.required = Required::True;
                p.schema = Some(RefOr::T(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::String))
                        .enum_values(Some(["1.0.0"]))
                        .into(),
                ));
            }
            "Upload-Metadata" => {
                p.schema = Some(RefOr::T(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::String))
                        .max_length(Some(tus_headers::MAX_METADATA))
                        .pattern(Some(tus_headers::METADATA_PATTERN))
                        .into(),
                ));
            }
            "Upload-Checksum" => {
                p.schema = Some(RefOr::T(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::String))
                        .pattern(Some(tus_headers::CHECKSUM_PATTERN))
                        .into(),
                ));
            }
            _ => {}
        }
    }
    answer(
        operation,
        412,
        "tus_version_unsupported: Tus-Resumable is not 1.0.0 (Tus-Version names it)",
    );
}

/// A header is text or absent, never `null`: an optional header declared with an
/// `Option<T>` type would otherwise admit `null`, which a client can only send as the
/// text "null" (and the API refuses).
fn headers_are_never_null(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if let RefOr::T(p) = parameter
            && p.parameter_in == ParameterIn::Header
            && let Some(RefOr::T(Schema::Object(object))) = &mut p.schema
            && let SchemaType::Array(types) = &mut object.schema_type
        {
            types.retain(|t| *t != Type::Null);
            if let [only] = types.as_slice() {
                object.schema_type = SchemaType::Type(only.clone());
            }
        }
    }
}

/// Error statuses a handler listed without a body get the one error shape.
fn fill_error_bodies(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        if !(status.starts_with('4') || status.starts_with('5')) {
            continue;
        }
        if let RefOr::T(response) = response
            && response.content.is_empty()
        {
            let description = response.description.clone();
            *response = error_response(&description);
        }
    }
}
