//! `Path` and `Query` extractors whose rejections are the one error shape (axum's own
//! answer in `text/plain`), and which apply the text rule (`text.rs`) first. Every
//! handler takes these, so none converts a rejection by hand.
//!
//! - a path parameter breaking the text rule: 400 `bad_request`;
//! - a path that cannot name a resource (a malformed id or version number): 404
//!   `not_found`, as an unknown id: the path names nothing;
//! - a query string breaking the text rule or not parsable into the parameters: 400
//!   `bad_request`. Listing parameter structs are `deny_unknown_fields`, so a parameter
//!   the route does not know (`?q=` on a route without search, a typo) is a 400 too,
//!   never silently ignored.
//!
//! `ApiQuery` parses with `serde_html_form`, which (unlike `serde_urlencoded`) reads a
//! repeated key (`?tag=a&tag=b`) into a `Vec` field; a repeated key of a single-valued
//! field is refused.

use axum::extract::rejection::{PathRejection, RawPathParamsRejection};
use axum::extract::{FromRequestParts, Path, RawPathParams};
use axum::http::Uri;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::text;
use crate::error::AppError;

/// `axum::extract::Path` under the text rule, rejections in the error shape.
#[derive(Debug, Clone, Copy)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|rejection| match rejection {
                RawPathParamsRejection::InvalidUtf8InPathParam(_) => AppError::BadRequest(
                    "a path segment is not valid UTF-8: text must be UTF-8 without control characters"
                        .into(),
                ),
                other => AppError::Internal(anyhow::anyhow!("path parameters: {}", other.body_text())),
            })?;
        for (name, value) in &raw {
            text::check(&format!("path parameter {name:?}"), value)?;
        }
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => Err(AppError::NotFound(
                "no such resource: the path holds a malformed id".into(),
            )),
            Err(other) => Err(AppError::Internal(anyhow::anyhow!(
                "path parameters: {}",
                other.body_text()
            ))),
        }
    }
}

/// `axum::extract::Query` under the text rule, rejections in the error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> ApiQuery<T> {
    /// The query of `uri`, for extractors that read it themselves.
    pub fn from_uri(uri: &Uri) -> Result<Self, AppError> {
        text::check_query(uri.query().unwrap_or_default())?;
        serde_html_form::from_str(uri.query().unwrap_or_default())
            .map(ApiQuery)
            .map_err(|e| AppError::BadRequest(format!("invalid query string: {e}")))
    }
}

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        Self::from_uri(&parts.uri)
    }
}

/// The parameters of a listing that takes none: any query parameter is a 400.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NoParams {}
