//! JSON request bodies: a size limit per router and an extractor whose rejections use the
//! one error shape (axum's own answer in plain text).
//!
//! `JsonBodyLimitLayer` sets the limit that body-buffering extractors (`JsonBody`,
//! `axum::Json`, `Bytes`, `String`) enforce. The innermost layer wins, so the app-wide
//! default (`MAX_JSON_BODY_BYTES`) is overridden for one router by layering it again with
//! another size; a streaming upload reads its body as a stream, which this limit does not
//! touch, and enforces its own cap.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use tower::{Layer, Service};

use crate::error::AppError;

#[derive(Debug, Clone, Copy)]
pub struct JsonBodyLimitLayer {
    max_bytes: usize,
}

impl JsonBodyLimitLayer {
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl<S> Layer<S> for JsonBodyLimitLayer {
    type Service = JsonBodyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonBodyLimit {
            inner,
            max_bytes: self.max_bytes,
        }
    }
}

#[derive(Debug, Clone)]
pub struct JsonBodyLimit<S> {
    inner: S,
    max_bytes: usize,
}

impl<S> Service<Request> for JsonBodyLimit<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let max_bytes = self.max_bytes;
        // No early refusal on Content-Length here: an inner router may allow more (the
        // innermost limit wins). Extractors stop reading at the limit either way.
        DefaultBodyLimit::max(max_bytes).apply(&mut request);
        request.extensions_mut().insert(BodyLimit(max_bytes));
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A handler using a plain axum extractor gets a text/plain 413 from axum; the
            // API has one error shape, so that answer is replaced here.
            let is_json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
                return Ok(too_large(max_bytes).into_response());
            }
            Ok(response)
        })
    }
}

/// The limit in force, so `JsonBody` can name it in its 413.
#[derive(Debug, Clone, Copy)]
struct BodyLimit(usize);

pub(in crate::api) fn too_large(max_bytes: usize) -> AppError {
    AppError::PayloadTooLarge(format!(
        "request body exceeds the limit of {max_bytes} bytes"
    ))
}

/// `axum::Json` as a request extractor, with rejections in the one error shape:
/// 413 too large, 415 not `application/json`, 400 not JSON or text breaking the text rule
/// (`text.rs`), 422 JSON of the wrong shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let limit = request.extensions().get::<BodyLimit>().copied();
        // Parsed as a document first so every string is checked, whatever `T` keeps.
        let mut document = match axum::Json::<serde_json::Value>::from_request(request, state).await
        {
            Ok(axum::Json(document)) => document,
            Err(rejection) => return Err(rejection_to_error(rejection, limit)),
        };
        crate::api::edge::text::check_json(&document)?;
        // Every JSON body of this API is an object (the document says so). serde would
        // also fill a struct from an array, positionally, and one whose fields all have
        // defaults from `[]`: that is a body of the wrong shape, not an empty request.
        if !document.is_object() {
            return Err(AppError::Validation(
                "the request body must be a JSON object".into(),
            ));
        }
        whole_numbers_as_integers(&mut document);
        serde_json::from_value(document).map(JsonBody).map_err(|e| {
            AppError::Validation(format!(
                "Failed to deserialize the JSON body into the target type: {e}"
            ))
        })
    }
}

/// JSON does not tell `317` from `317.0`, and JSON Schema calls both the integer 317;
/// serde's integer types take only the first. Every number with no fraction that fits
/// an `i64` or `u64` is made an integer, so an integer field takes `317.0` and `3.17e2`
/// as the document promises, and a fraction is still refused. (A float field takes an
/// integer anyway.)
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && n.is_f64()) else {
                return;
            };
            // 2^64 and -2^63 are exact in f64; the casts are exact inside these bounds.
            if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                *n = (f as u64).into();
            } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                *n = (f as i64).into();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers_as_integers),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

fn rejection_to_error(rejection: JsonRejection, limit: Option<BodyLimit>) -> AppError {
    match rejection {
        JsonRejection::JsonDataError(err) => AppError::Validation(err.body_text()),
        JsonRejection::JsonSyntaxError(_) => {
            AppError::BadRequest("request body is not valid JSON".into())
        }
        JsonRejection::MissingJsonContentType(_) => {
            AppError::UnsupportedMediaType("expected Content-Type: application/json".into())
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => match limit {
            Some(BodyLimit(max_bytes)) => too_large(max_bytes),
            None => AppError::PayloadTooLarge("request body is too large".into()),
        },
        other => AppError::BadRequest(other.body_text()),
    }
}

#[cfg(test)]
mod tests {
    //! The layer and extractor on a tiny router: no product route takes JSON yet.
    use super::*;
    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::routing::post;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    struct Note {
        text: String,
    }

    async fn note(JsonBody(note): JsonBody<Note>) -> String {
        note.text
    }

    async fn plain(axum::Json(note): axum::Json<serde_json::Value>) -> String {
        note.to_string()
    }

    fn app(limit: usize) -> Router {
        Router::new()
            .route("/note", post(note))
            .route("/plain", post(plain))
            .layer(JsonBodyLimitLayer::new(limit))
    }

    fn body_of(len: usize) -> String {
        format!(r#"{{"text":"{}"}}"#, "x".repeat(len))
    }

    async fn send(app: Router, path: &str, body: Body) -> (StatusCode, serde_json::Value) {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// A body without Content-Length (chunked), so only reading it can find the size.
    fn streamed(text: String) -> Body {
        let chunks: Vec<Result<Bytes, Infallible>> = text
            .into_bytes()
            .chunks(1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Body::from_stream(futures::stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_body_under_the_limit_is_accepted() {
        let (status, _) = send(app(4096), "/note", Body::from(body_of(100))).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn an_oversized_body_gets_413_in_the_error_shape() {
        let (status, body) = send(app(4096), "/note", Body::from(body_of(5000))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], "payload_too_large");
        assert!(body["error"]["message"].as_str().unwrap().contains("4096"));
    }

    #[tokio::test]
    async fn an_oversized_streamed_body_gets_413_in_the_error_shape() {
        for path in ["/note", "/plain"] {
            let (status, body) = send(app(4096), path, streamed(body_of(5000))).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
            assert_eq!(body["error"]["code"], "payload_too_large", "{path}");
        }
        let (status, _) = send(app(4096), "/plain", streamed(body_of(100))).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn an_inner_router_can_raise_the_default() {
        let big = Router::new()
            .route("/big", post(note))
            .layer(JsonBodyLimitLayer::new(64 * 1024));
        let app = Router::new()
            .route("/note", post(note))
            .merge(big)
            .layer(JsonBodyLimitLayer::new(4096));
        let (status, _) = send(app.clone(), "/big", streamed(body_of(10_000))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = send(app.clone(), "/big", Body::from(body_of(10_000))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = send(app, "/note", streamed(body_of(10_000))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn other_json_rejections_use_the_error_shape_too() {
        let (status, body) = send(app(4096), "/note", Body::from("{not json")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "bad_request");
        let (status, body) = send(app(4096), "/note", Body::from(r#"{"txt":1}"#)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["code"], "validation_failed");
        let request = Request::post("/note").body(Body::from("{}")).unwrap();
        let response = app(4096).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[derive(serde::Deserialize)]
    struct Optional {
        #[serde(default)]
        #[allow(dead_code)]
        role: Option<String>,
    }

    async fn optional(JsonBody(_): JsonBody<Optional>) -> &'static str {
        "ok"
    }

    #[derive(serde::Deserialize)]
    struct Sized {
        size: u32,
        offset: i64,
    }

    async fn sized(JsonBody(body): JsonBody<Sized>) -> String {
        format!("{} {}", body.size, body.offset)
    }

    /// Whole numbers written with a fraction or an exponent are integers, as JSON Schema
    /// says; a real fraction, or a whole number past the field's range, is still 422.
    #[tokio::test]
    async fn whole_numbers_written_as_floats_fill_integer_fields() {
        let app = || Router::new().route("/sized", post(sized));
        for body in [
            r#"{"size": 317, "offset": -2}"#,
            r#"{"size": 317.0, "offset": -2.0}"#,
            r#"{"size": 3.17e2, "offset": -2e0}"#,
        ] {
            let request = Request::post("/sized")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap();
            let response = app().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{body}");
            let text = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(&text[..], b"317 -2", "{body}");
        }
        for body in [
            r#"{"size": 317.5, "offset": 0}"#,
            r#"{"size": 4294967296.0, "offset": 0}"#,
            r#"{"size": -1.0, "offset": 0}"#,
            r#"{"size": 1e300, "offset": 0}"#,
        ] {
            let (status, answer) = send(app(), "/sized", Body::from(body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(answer["error"]["code"], "validation_failed", "{body}");
        }
    }

    /// serde fills a struct from an array positionally, and one whose fields all have
    /// defaults from `[]`; the extractor refuses any body that is not an object.
    #[tokio::test]
    async fn a_body_that_is_not_an_object_is_refused_even_when_serde_would_take_it() {
        let app = || Router::new().route("/optional", post(optional));
        let (status, _) = send(app(), "/optional", Body::from("{}")).await;
        assert_eq!(status, StatusCode::OK);
        for body in [r#"[]"#, r#"["admin"]"#, "null", "7", r#""role""#] {
            let (status, answer) = send(app(), "/optional", Body::from(body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(answer["error"]["code"], "validation_failed", "{body}");
        }
    }
}
