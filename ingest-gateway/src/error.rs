use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ingest_shared::message::ValidationErrors;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

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
    #[error("internal error")]
    Internal,
    #[error("not authenticated")]
    NotAuthenticated,
    #[error("not found")]
    NotFound,
    /// `GET /messages/{message_id}` for an id no stored message has.
    #[error("message not found")]
    MessageNotFound,
    /// `MAX_CONCURRENT_EXPORTS` exports are being sent (503 with `Retry-After`).
    #[error("too many exports in progress")]
    TooManyExports { retry_after_secs: u64 },
    /// A redrive's PubAck said `duplicate`: the id is inside the stream's duplicate window, so
    /// nothing was delivered (409 with `Retry-After`).
    #[error("inside the duplicate window")]
    DuplicateWindow { retry_after_secs: u64 },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("no such source")]
    UnknownSource,
    #[error("client address not allowed for this source")]
    AddressNotAllowed,
    #[error("rate limit of this source exceeded")]
    RateLimited { retry_after_secs: u64 },
}

impl ApiError {
    /// The `result` label and log field of a `/webhook` call that ended with this error.
    pub fn webhook_result(&self) -> &'static str {
        match self {
            ApiError::PayloadTooLarge { .. } => "too_large",
            ApiError::InvalidSignature | ApiError::Forbidden => "invalid_signature",
            ApiError::StaleTimestamp => "stale_timestamp",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::AddressNotAllowed => "forbidden",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal
            | ApiError::Validation(_)
            | ApiError::UnsupportedMediaType
            | ApiError::BodyTimeout
            | ApiError::BadBody
            | ApiError::NotAuthenticated
            | ApiError::NotFound
            | ApiError::MessageNotFound
            | ApiError::TooManyExports { .. }
            | ApiError::DuplicateWindow { .. }
            | ApiError::MethodNotAllowed
            | ApiError::UnknownSource => "validation_error",
        }
    }
}

impl ApiError {
    /// A failed read query: logged in full here, answered without details. Connection trouble,
    /// a statement timeout or a missing schema is 503 (retrying later can work); anything else
    /// is a bug, 500.
    pub fn from_db(what: &'static str, error: sqlx::Error, retry_after_secs: u64) -> Self {
        let transient = match &error {
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                // 08: connection, 53: resources, 57: operator intervention (statement timeout,
                // shutdown), 42P01: relation missing (migrations still running).
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57")
                    || code == "42P01"
            }),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::RowNotFound => true,
            _ => false,
        };
        if transient {
            tracing::warn!(%error, what, "read query failed");
            ApiError::Unavailable {
                reason: "database unavailable",
                retry_after_secs,
            }
        } else {
            tracing::error!(%error, what, "read query failed");
            ApiError::Internal
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
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!("internal server error"),
            ),
            ApiError::NotAuthenticated => (StatusCode::UNAUTHORIZED, json!("not authenticated")),
            ApiError::NotFound => (StatusCode::NOT_FOUND, json!("Not Found")),
            ApiError::MessageNotFound => (StatusCode::NOT_FOUND, json!("message not found")),
            ApiError::TooManyExports { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!("too many exports in progress (MAX_CONCURRENT_EXPORTS), retry later"),
            ),
            ApiError::DuplicateWindow { retry_after_secs } => (
                StatusCode::CONFLICT,
                json!(format!(
                    "the message id is inside JetStream's duplicate window, so nothing was \
                     redriven; retry in {retry_after_secs} s (the dead letter is kept)"
                )),
            ),
            ApiError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, json!("Method Not Allowed"))
            }
            ApiError::UnknownSource => (StatusCode::NOT_FOUND, json!("unknown source")),
            ApiError::AddressNotAllowed => (
                StatusCode::FORBIDDEN,
                json!("client address not allowed for this source"),
            ),
            ApiError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                json!("rate limit of this source exceeded, retry later"),
            ),
        };
        let mut response = (status, Json(json!({ "detail": detail }))).into_response();
        // The body was not read to its end, so the server closes the connection after this
        // answer; saying so keeps a keep-alive client from sending its next request into it.
        if matches!(
            self,
            ApiError::PayloadTooLarge { .. } | ApiError::BodyTimeout | ApiError::BadBody
        ) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let ApiError::NotAuthenticated = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::Unavailable {
            retry_after_secs, ..
        }
        | ApiError::DuplicateWindow { retry_after_secs }
        | ApiError::TooManyExports { retry_after_secs }
        | ApiError::RateLimited { retry_after_secs } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

// The error bodies as the OpenAPI document describes them (doc comments become descriptions
// there); `ApiError::into_response` writes them.

/// `{"detail":"..."}`: 401, 404, 405, 408, 409, 413, 415, 500, 503.
#[derive(Serialize, ToSchema)]
pub struct DetailBody {
    #[schema(example = "invalid signature")]
    pub detail: String,
}

/// 422, FastAPI style.
#[derive(Serialize, ToSchema)]
pub struct ValidationErrorBody {
    pub detail: Vec<ValidationErrorItem>,
}

#[derive(Serialize, ToSchema)]
pub struct ValidationErrorItem {
    /// Where: `["query","limit"]`, `["body","from"]`, or `["body", <position>]` for bad JSON.
    pub loc: Vec<LocItem>,
    #[schema(example = "Input should be greater than or equal to 1")]
    pub msg: String,
    #[serde(rename = "type")]
    #[schema(example = "greater_than_equal")]
    pub kind: String,
}

/// Documentation only: the errors themselves are built from `ingest_shared::message::Loc`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum LocItem {
    Key(String),
    Index(u64),
}
