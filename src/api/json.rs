//! `ApiJson<T>`: axum's `Json` with its rejections mapped onto the one error shape
//! (400 malformed, 415 wrong content type, 422 wrong fields, 413 too large).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use crate::error::AppError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::MissingJsonContentType(_) => {
                    AppError::UnsupportedMediaType("expected Content-Type: application/json".into())
                }
                JsonRejection::JsonDataError(e) => AppError::Validation(e.body_text()),
                JsonRejection::JsonSyntaxError(_) => {
                    AppError::BadRequest("the body is not valid JSON".into())
                }
                other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    AppError::PayloadTooLarge("the request body is too large".into())
                }
                other => AppError::BadRequest(other.body_text()),
            }),
        }
    }
}
