//! `POST /webhook`: one signed message per request, stored through the ingest steps (ingest/).

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use ingest_shared::message;
use ingest_shared::metric::Metric;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, DetailBody, ValidationErrorBody};
use crate::ingest::{self, Message, Sender, StatusBody};
use crate::metrics::SenderMetrics;
use crate::observe::{RequestId, TraceParent};
use crate::sources::client::ClientAddr;
use crate::sources::{Kind, Source};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

// Documentation only: `ingest_shared::message` parses the body.
/// The webhook body. Other fields are not checked and are kept: the whole body is stored with
/// the message as its raw payload, so it must be JSON that Postgres's jsonb can hold (no NUL
/// character, no lone surrogate escape, at most 128 levels deep).
#[derive(Serialize, ToSchema)]
pub struct WebhookMessage {
    /// 1 to 256 characters, no control characters; the idempotency key.
    #[schema(min_length = 1, max_length = 256, example = "m1")]
    pub message_id: String,
    #[schema(pattern = r"^\+[0-9]{1,20}$", example = "+919876543210")]
    pub from: String,
    #[schema(pattern = r"^\+[0-9]{1,20}$", example = "+14155550100")]
    pub to: String,
    /// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, UTC only.
    #[schema(example = "2025-01-15T10:00:00Z")]
    pub ts: String,
    #[schema(max_length = 4096, example = "Hello")]
    pub text: Option<String>,
    /// The sender's message type (`text`, `image`, …), stored as given; 1 to 64 characters.
    #[serde(rename = "type")]
    #[schema(max_length = 64, example = "text")]
    pub msg_type: Option<String>,
}

#[utoipa::path(
    post,
    path = "/webhook",
    operation_id = "webhook",
    tag = "ingest",
    summary = "Receive one signed message",
    description = "Checks, in order: size (413), signature over the raw bytes (401, before any \
        parsing), content type (415), JSON and fields (422). 200 only once JetStream stored the \
        message; a repeated `message_id` is also 200 and never a second row.",
    params(
        ("X-Signature" = Option<String>, Header, description = "hex HMAC-SHA256 of the raw body under WEBHOOK_SECRET; any case; `sha256=` prefix allowed (scheme `x-signature`, the default)"),
        ("webhook-id" = Option<String>, Header, description = "Standard Webhooks (scheme `standard-webhooks`): the delivery id"),
        ("webhook-timestamp" = Option<i64>, Header, description = "Standard Webhooks: unix seconds; outside WEBHOOK_TOLERANCE_SECS of now -> 401"),
        ("webhook-signature" = Option<String>, Header, description = "Standard Webhooks: space-separated `v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}>`"),
        ("X-Request-Id" = Option<String>, Header, description = "kept when up to 128 characters of [A-Za-z0-9._:-], else a new UUID; echoed in the response")
    ),
    request_body(content = WebhookMessage, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (new or duplicate)", body = StatusBody),
        (status = 400, description = "The body could not be read", body = DetailBody),
        (status = 401, description = "Signature missing or wrong", body = DetailBody),
        (status = 408, description = "Body not received in time", body = DetailBody),
        (status = 413, description = "Body over MAX_BODY_BYTES", body = DetailBody),
        (status = 415, description = "Content-Type is not JSON", body = DetailBody),
        (status = 422, description = "Not JSON, or a field is invalid", body = ValidationErrorBody),
        (status = 503, description = "JetStream unavailable; retry", body = DetailBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    )
)]
async fn receive(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Extension(trace_parent): Extension<TraceParent>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let client = client.map(|c| c.0.0);
    super::sources::accept(
        &state,
        crate::sources::DEFAULT_ID,
        client,
        (&request_id, &trace_parent),
        &headers,
        body,
    )
    .await
}

/// Every `result` label of `webhook_requests_total`.
pub const RESULTS: [&str; 7] = [
    "created",
    "duplicate",
    "invalid_signature",
    "stale_timestamp",
    "validation_error",
    "too_large",
    "unavailable",
];

pub const METRICS: SenderMetrics = SenderMetrics {
    endpoint: "webhook",
    requests: Metric::new_counter(
        "webhook_requests_total",
        "POST /webhook calls, by how they ended",
    )
    .labels(&["result"]),
    results: &RESULTS,
    keys: |config| config.sources.most_keys(|kind| kind != Kind::WhatsApp),
    own: &[],
};

/// The body is the message, stored byte for byte.
pub(crate) struct Webhook;

impl Sender for Webhook {
    const METRICS: &'static SenderMetrics = &METRICS;

    fn verify(source: &Source, headers: &HeaderMap, body: &[u8]) -> Result<usize, ApiError> {
        ingest::webhook_signature(source, headers, body)
    }

    fn unpack(body: Bytes) -> Result<Vec<Message>, ApiError> {
        let message = message::parse(&body).map_err(ApiError::Validation)?;
        Ok(vec![Message {
            id: message.message_id,
            body,
        }])
    }
}
