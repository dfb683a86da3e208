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
//! A repeated key of a single-valued field is refused. A listing with a repeatable
//! parameter (`?tag=a&tag=b`) takes its values apart first (`ApiQuery::from_uri_split`).

use axum::extract::rejection::{PathRejection, RawPathParamsRejection};
use axum::extract::{FromRequestParts, Path, Query, RawPathParams};
use axum::http::Uri;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::api::edge::text;
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
        Query::<T>::try_from_uri(uri)
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| AppError::BadRequest(rejection.body_text()))
    }

    /// The query of `uri` without the repeatable parameter `key`, parsed into `T`, and
    /// the values of `key` in order (`?tag=a&tag=b` → `["a", "b"]`).
    pub fn from_uri_split(uri: &Uri, key: &str) -> Result<(T, Vec<String>), AppError> {
        let query = uri.query().unwrap_or_default();
        text::check_query(query)?;
        let bad =
            |e: String| AppError::BadRequest(format!("Failed to deserialize query string: {e}"));
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| bad(e.to_string()))?;
        let (repeated, rest): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| k == key);
        let rest = serde_urlencoded::to_string(rest).map_err(|e| bad(e.to_string()))?;
        let value = serde_urlencoded::from_str(&rest).map_err(|e| bad(e.to_string()))?;
        Ok((value, repeated.into_iter().map(|(_, v)| v).collect()))
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
