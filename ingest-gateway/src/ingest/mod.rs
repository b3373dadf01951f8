//! The steps every sender endpoint takes, in this order: read the body within limits, verify the
//! signature over the raw bytes, check the content type, unpack the messages, publish each to
//! JetStream and wait for its PubAck, answer. A sender endpoint (a file in routes/) implements
//! [`Sender`] for what is its own (where the signature is, what the body holds, what it counts:
//! its [`SenderMetrics`], also listed in `routes::SENDERS` so they exist from start-up) and
//! calls [`receive`] from its handler.

pub(crate) mod batcher;
mod body;
pub(crate) mod publish;
mod signature;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::Instrument;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::metrics::{self, SenderMetrics};
use crate::observe::{RequestId, TraceParent, WebhookOutcome};
use crate::sources::Source;
use crate::state::AppState;

pub use signature::{hub_signature, webhook_signature};

/// What a sender endpoint does its own way; everything else is [`receive`]'s.
pub trait Sender {
    /// What the endpoint counts, under which names and labels.
    const METRICS: &'static SenderMetrics;

    /// Checks the signature over the raw body; the position of the key that matched.
    fn verify(source: &Source, headers: &HeaderMap, body: &[u8]) -> Result<usize, ApiError>;

    /// The messages of a verified JSON body, each published on its own.
    fn unpack(body: Bytes) -> Result<Vec<Message>, ApiError>;

    /// Called for each message JetStream stored, in order.
    fn stored(_duplicate: bool) {}

    /// The span the steps run in; none of its own by default.
    fn span() -> tracing::Span {
        tracing::Span::none()
    }
}

/// One message to publish: its id (`Nats-Msg-Id`, so JetStream drops a repeat) and its bytes.
pub struct Message {
    pub id: String,
    pub body: Bytes,
}

// [`OK_BODY`] as the OpenAPI document describes it.
#[derive(Serialize, ToSchema)]
pub struct StatusBody {
    #[schema(example = "ok")]
    pub status: String,
}

/// Built once instead of as a JSON value per request.
const OK_BODY: ([(header::HeaderName, &str); 1], &str) = (
    [(header::CONTENT_TYPE, "application/json")],
    r#"{"status":"ok"}"#,
);

/// What travels to the worker in NATS headers so its log lines name the same request.
#[derive(Clone, Copy)]
pub(crate) struct Correlation<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) trace_parent: Option<&'a str>,
}

/// What a request arrived as: the source whose path it came on, and the client's address.
pub struct Arrival<'a> {
    pub source: &'a Source,
    pub client: Option<std::net::IpAddr>,
}

/// Runs every step for one request and answers: `ok`, or the error's own response. The request
/// is counted by how it ended and the outcome is left on the response for the access log.
pub async fn receive<S: Sender>(
    state: &AppState,
    arrival: Arrival<'_>,
    request_id: &RequestId,
    trace_parent: &TraceParent,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let source = arrival.source;
    let mut outcome = WebhookOutcome {
        source: Some(source.id.clone()),
        ..WebhookOutcome::default()
    };
    let ids = Correlation {
        request_id: &request_id.0,
        trace_parent: trace_parent.0.as_deref(),
    };
    let result = steps::<S>(state, arrival, ids, headers, body, &mut outcome)
        .instrument(S::span())
        .await;
    let mut response = match result {
        Ok(()) => OK_BODY.into_response(),
        Err(error) => {
            outcome.result = error.webhook_result();
            if let ApiError::Unavailable { reason, .. } = &error {
                tracing::warn!(
                    reason,
                    message_id = outcome.message_id.as_deref(),
                    "publish failed"
                );
            }
            error.into_response()
        }
    };
    metrics::sender_request(S::METRICS, outcome.result);
    metrics::source_request(&source.id, outcome.result);
    source.counters.count(outcome.result);
    response.extensions_mut().insert(outcome);
    response
}

async fn steps<S: Sender>(
    state: &AppState,
    arrival: Arrival<'_>,
    ids: Correlation<'_>,
    headers: &HeaderMap,
    body: Body,
    outcome: &mut WebhookOutcome,
) -> Result<(), ApiError> {
    let received_at = publish::unix_micros();
    let source = arrival.source;
    // Before the body is read: a client from elsewhere, or past its bucket, costs nothing more.
    source.admit(arrival.client)?;
    source.take_token()?;
    let body = body::read(
        headers,
        body,
        source.max_body_bytes,
        state.config.body_timeout,
    )
    .await?;

    // Before parsing: a forged request learns nothing about the schema.
    let slot = S::verify(source, headers, &body)?;
    metrics::signature_key_slot(S::METRICS, slot);

    if !body::is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let messages = S::unpack(body)?;
    if !messages.is_empty() {
        outcome.message_id = Some(
            messages
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
    }

    // All at once: the sender gets its 200 only when every message is stored, and a 503
    // otherwise; on its retry, JetStream's dedup and the upsert absorb the part that was stored.
    let acks = futures::future::join_all(
        messages
            .iter()
            .map(|m| publish::publish(state, &source.id, &m.id, ids, received_at, m.body.clone())),
    )
    .await;
    let mut duplicates = 0;
    for ack in acks {
        let ack = ack?;
        if ack.duplicate {
            duplicates += 1;
        }
        S::stored(ack.duplicate);
    }
    let all_duplicates = !messages.is_empty() && duplicates == messages.len();
    outcome.dup = all_duplicates;
    outcome.result = if all_duplicates {
        "duplicate"
    } else {
        "created"
    };
    Ok(())
}
