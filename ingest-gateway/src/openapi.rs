//! `GET /openapi.json`: the OpenAPI 3 document, generated from the handlers' annotations, so a
//! client or a fuzzer can be built from it. Endpoints that predate the document are described by
//! the stubs below, next to the shapes they answer with.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::error::ApiError;
use crate::routes::{messages, stats};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ingest-webhooks gateway",
        description = "Signed message webhooks in; analysts' reads out. Every error is JSON with a `detail`."
    ),
    paths(
        webhook,
        whatsapp_handshake,
        whatsapp_notification,
        health_live,
        health_ready,
        metrics,
        messages::list,
        stats::stats,
        openapi_json
    ),
    components(schemas(
        WebhookMessage,
        StatusBody,
        DetailBody,
        ValidationErrorBody,
        ValidationErrorItem,
        LocItem,
        LiveBody,
        ReadyBody,
        messages::MessageItem,
        messages::MessagesPage,
        stats::Stats,
        stats::SenderCount
    )),
    tags(
        (name = "ingest", description = "Receiving webhooks"),
        (name = "read", description = "Querying what was stored"),
        (name = "ops", description = "Health, metrics and this document")
    )
)]
pub struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

static DOCUMENT: LazyLock<Result<String, String>> =
    LazyLock::new(|| ApiDoc::openapi().to_json().map_err(|e| e.to_string()));

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    summary = "This OpenAPI 3 document",
    responses((status = 200, description = "The document", content_type = "application/json", body = Object))
)]
async fn openapi_json() -> Response {
    match &*DOCUMENT {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot render the OpenAPI document");
            ApiError::Internal.into_response()
        }
    }
}

/// The RFC 7240 `Prefer` header of the read API (documentation only; prefer.rs reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct PreferHeader {
    /// `consistency=eventual` skips the read-your-writes wait (for dashboards that poll);
    /// on `/messages`, `count=exact` counts every match and `count=estimated` counts up to
    /// 1,000. Several are separated by commas; unknown ones are ignored.
    #[param(rename = "Prefer", example = "count=exact")]
    prefer: Option<String>,
}

/// `{"detail":"..."}`: 401, 404, 405, 408, 413, 415, 500, 503.
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

/// The webhook body (unknown fields are ignored).
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
    pub kind: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StatusBody {
    #[schema(example = "ok")]
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct LiveBody {
    #[schema(example = "alive")]
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct ReadyBody {
    /// `ready` or `not_ready`.
    pub status: String,
    /// The checks that failed: `secret`, `database`, `stream`.
    pub missing: Vec<String>,
    /// Each check's outcome: `ok` or why not.
    pub checks: BTreeMap<String, String>,
}

#[utoipa::path(
    post,
    path = "/webhook",
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
#[allow(dead_code)]
fn webhook() {}

#[utoipa::path(
    get,
    path = "/webhook/whatsapp",
    tag = "ingest",
    summary = "WhatsApp Cloud API subscription handshake",
    params(
        ("hub.mode" = String, Query, description = "must be `subscribe`"),
        ("hub.verify_token" = String, Query, description = "must equal WHATSAPP_VERIFY_TOKEN"),
        ("hub.challenge" = String, Query, description = "echoed back as plain text")
    ),
    responses(
        (status = 200, description = "The challenge, as plain text", content_type = "text/plain", body = String),
        (status = 403, description = "Wrong mode or token, or no token configured", body = DetailBody),
    )
)]
#[allow(dead_code)]
fn whatsapp_handshake() {}

#[utoipa::path(
    post,
    path = "/webhook/whatsapp",
    tag = "ingest",
    summary = "Receive a WhatsApp Cloud API notification",
    description = "Each `entry[].changes[].value.messages[]` item is stored as one message;         `statuses[]` are counted only. 200 only once every message of the envelope is stored in         JetStream.",
    params(
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=<hex HMAC-SHA256 of the raw body under WHATSAPP_APP_SECRET>`")
    ),
    request_body(content = Object, content_type = "application/json", description = "Meta's notification envelope"),
    responses(
        (status = 200, description = "Every message stored (new or duplicate)", body = StatusBody),
        (status = 400, description = "The body could not be read", body = DetailBody),
        (status = 401, description = "Signature missing or wrong", body = DetailBody),
        (status = 408, description = "Body not received in time", body = DetailBody),
        (status = 413, description = "Body over MAX_BODY_BYTES", body = DetailBody),
        (status = 415, description = "Content-Type is not JSON", body = DetailBody),
        (status = 422, description = "Not a notification, or a message is invalid", body = ValidationErrorBody),
        (status = 503, description = "JetStream unavailable; retry", body = DetailBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    )
)]
#[allow(dead_code)]
fn whatsapp_notification() {}

#[utoipa::path(
    get,
    path = "/health/live",
    tag = "ops",
    summary = "Liveness",
    responses((status = 200, description = "The process runs", body = LiveBody))
)]
#[allow(dead_code)]
fn health_live() {}

#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "ops",
    summary = "Readiness",
    description = "Ready when the secret is set, Postgres answers with the schema applied and the \
        JetStream stream exists.",
    responses(
        (status = 200, description = "Ready", body = ReadyBody),
        (status = 503, description = "Not ready; `missing` names what", body = ReadyBody),
    )
)]
#[allow(dead_code)]
fn health_ready() {}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String))
)]
#[allow(dead_code)]
fn metrics() {}
