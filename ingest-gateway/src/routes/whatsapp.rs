//! `/webhook/whatsapp`: Meta's WhatsApp Cloud API webhooks. The subscription handshake, and
//! notifications whose every chat message is published on its own, with its WhatsApp id as
//! `Nats-Msg-Id`, through the ingest steps (ingest/) as `/webhook`.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use ingest_shared::metric::Metric;
use ingest_shared::whatsapp;
use secrecy::ExposeSecret;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, DetailBody, ValidationErrorBody};
use crate::ingest::{self, Message, Sender, StatusBody};
use crate::metrics::SenderMetrics;
use crate::observe::{RequestId, TraceParent};
use crate::sources::client::ClientAddr;
use crate::sources::{Kind, Source, WHATSAPP_ID};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(handshake, receive))
}

const MAX_CHALLENGE_LEN: usize = 256;

#[derive(Deserialize)]
pub(crate) struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

#[utoipa::path(
    get,
    path = "/webhook/whatsapp",
    operation_id = "whatsapp_handshake",
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
// Meta calls this once when the webhook is configured, and echoes nothing but the challenge.
// (Not a doc comment: that would become the operation's description in the OpenAPI document.)
async fn handshake(
    State(state): State<AppState>,
    Query(query): Query<Handshake>,
) -> Result<Response, ApiError> {
    let sources = state.sources.load();
    let source = sources.get(WHATSAPP_ID).ok_or(ApiError::UnknownSource)?;
    answer_handshake(source, query)
}

/// Meta's handshake for a source of kind `whatsapp`, under its `verify_token`.
pub(crate) fn answer_handshake(
    source: &Source,
    handshake: Handshake,
) -> Result<Response, ApiError> {
    if source.kind != crate::sources::Kind::WhatsApp {
        return Err(ApiError::MethodNotAllowed);
    }
    let expected = source.verify_token.as_ref().ok_or(ApiError::Forbidden)?;
    match (
        handshake.mode.as_deref(),
        handshake.verify_token,
        handshake.challenge,
    ) {
        (Some("subscribe"), Some(token), Some(challenge))
            if constant_time_eq(token.as_bytes(), expected.expose_secret().as_bytes())
                && !challenge.is_empty()
                && challenge.len() <= MAX_CHALLENGE_LEN =>
        {
            Ok((
                [
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                challenge,
            )
                .into_response())
        }
        _ => Err(ApiError::Forbidden),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[utoipa::path(
    post,
    path = "/webhook/whatsapp",
    operation_id = "whatsapp_notification",
    tag = "ingest",
    summary = "Receive a WhatsApp Cloud API notification",
    description = "Each `entry[].changes[].value.messages[]` item is stored as one message, of any         type: `msg_type` is Meta's `type`, `text` its readable part (a caption, a reply's title, an         emoji), and its raw payload keeps Meta's message object, `metadata` and `contacts`.         `statuses[]` are counted only. 200 only once every message of the envelope is stored in         JetStream.",
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
        WHATSAPP_ID,
        client,
        (&request_id, &trace_parent),
        &headers,
        body,
    )
    .await
}

const MESSAGES: Metric = Metric::new_counter(
    "whatsapp_messages_total",
    "Chat messages unpacked from WhatsApp envelopes and stored in JetStream, by result",
)
.labels(&["result"]);
const STATUSES: Metric = Metric::new_counter(
    "whatsapp_statuses_total",
    "WhatsApp delivery statuses received (counted, not stored), by status",
)
.labels(&["status"]);
/// Statuses counted by name; anything else is `other`, so a sender cannot grow the label set.
const STATUS_NAMES: [&str; 5] = ["sent", "delivered", "read", "failed", "other"];

pub const METRICS: SenderMetrics = SenderMetrics {
    endpoint: "whatsapp",
    requests: Metric::new_counter(
        "whatsapp_requests_total",
        "POST /webhook/whatsapp calls, by how they ended",
    )
    .labels(&["result"]),
    results: &[
        "created",
        "duplicate",
        "invalid_signature",
        "validation_error",
        "unavailable",
    ],
    keys: |config| config.sources.most_keys(|kind| kind == Kind::WhatsApp),
    own: &[
        (&MESSAGES, &["created", "duplicate"]),
        (&STATUSES, &STATUS_NAMES),
    ],
};

/// Meta's notification envelope: every chat message in it is stored on its own; delivery
/// statuses are counted, not stored.
pub(crate) struct WhatsApp;

impl Sender for WhatsApp {
    const METRICS: &'static SenderMetrics = &METRICS;

    fn verify(source: &Source, headers: &HeaderMap, body: &[u8]) -> Result<usize, ApiError> {
        ingest::hub_signature(source, headers, body)
    }

    fn unpack(body: Bytes) -> Result<Vec<Message>, ApiError> {
        let envelope = whatsapp::unpack(&body).map_err(ApiError::Validation)?;
        for status in &envelope.statuses {
            let name = STATUS_NAMES
                .into_iter()
                .find(|name| name == status)
                .unwrap_or("other");
            STATUSES.counter(&[name]).increment(1);
        }
        Ok(envelope
            .messages
            .into_iter()
            .map(|m| Message {
                id: m.message_id,
                body: Bytes::from(m.body),
            })
            .collect())
    }

    fn stored(duplicate: bool) {
        let result = if duplicate { "duplicate" } else { "created" };
        MESSAGES.counter(&[result]).increment(1);
    }

    fn span() -> tracing::Span {
        tracing::info_span!("whatsapp")
    }
}
