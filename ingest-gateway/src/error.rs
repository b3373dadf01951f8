use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ingest_shared::message::ValidationErrors;
use serde_json::json;

/// Every way a gateway request can fail. Internal details are logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("invalid signature")]
    InvalidSignature,
    #[error("webhook timestamp outside the tolerance")]
    StaleTimestamp,
    #[error("forbidden")]
    Forbidden,
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("request body timed out")]
    BodyTimeout,
    #[error("could not read the request body")]
    BadBody,
    #[error("validation failed: {0}")]
    Validation(ValidationErrors),
    #[error("queue unavailable: {reason}")]
    Unavailable {
        reason: &'static str,
        retry_after_secs: u64,
    },
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError {
    /// The `result` label and log field of a `/webhook` call that ended with this error.
    pub fn webhook_result(&self) -> &'static str {
        match self {
            ApiError::PayloadTooLarge { .. } => "too_large",
            ApiError::InvalidSignature | ApiError::Forbidden => "invalid_signature",
            ApiError::StaleTimestamp => "stale_timestamp",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Validation(_)
            | ApiError::UnsupportedMediaType
            | ApiError::BodyTimeout
            | ApiError::BadBody
            | ApiError::NotFound
            | ApiError::MethodNotAllowed => "validation_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, detail) = match &self {
            ApiError::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!(format!("request body larger than {limit} bytes")),
            ),
            ApiError::InvalidSignature => (StatusCode::UNAUTHORIZED, json!("invalid signature")),
            ApiError::StaleTimestamp => (
                StatusCode::UNAUTHORIZED,
                json!("webhook timestamp outside the tolerance"),
            ),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, json!("verification failed")),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!("Content-Type must be application/json"),
            ),
            ApiError::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                json!("request body not received in time"),
            ),
            ApiError::BadBody => (
                StatusCode::BAD_REQUEST,
                json!("could not read the request body"),
            ),
            ApiError::Validation(errors) => (StatusCode::UNPROCESSABLE_ENTITY, json!(errors.0)),
            ApiError::Unavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!("temporarily unavailable, retry later"),
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, json!("Not Found")),
            ApiError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, json!("Method Not Allowed"))
            }
        };
        let mut response = (status, Json(json!({ "detail": detail }))).into_response();
        if let ApiError::Unavailable {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}
