//! `/webhook/whatsapp`: Meta's WhatsApp Cloud API webhooks. The subscription handshake, and
//! notifications whose every chat message is published on its own, with its WhatsApp id as
//! `Nats-Msg-Id`, through the same path as `/webhook`.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use ingest_shared::whatsapp;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::observe::{RequestId, TraceParent, WebhookOutcome};
use crate::routes::webhook::{Correlation, answer, is_json, publish, read_body, unix_micros};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhook/whatsapp", get(handshake).post(receive))
}

/// Every `result` label of `whatsapp_requests_total`.
pub const RESULTS: [&str; 5] = [
    "created",
    "duplicate",
    "invalid_signature",
    "validation_error",
    "unavailable",
];
/// Statuses counted by name; anything else is `other`, so a sender cannot grow the label set.
pub const STATUSES: [&str; 5] = ["sent", "delivered", "read", "failed", "other"];

const MAX_CHALLENGE_LEN: usize = 256;

#[derive(Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Meta calls this once when the webhook is configured, and echoes nothing but the challenge.
async fn handshake(
    State(state): State<AppState>,
    Query(handshake): Query<Handshake>,
) -> Result<Response, ApiError> {
    let expected = state
        .config
        .whatsapp_verify_token
        .as_ref()
        .ok_or(ApiError::Forbidden)?;
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

async fn receive(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Extension(trace_parent): Extension<TraceParent>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut outcome = WebhookOutcome::default();
    let ids = Correlation::of(&request_id, &trace_parent);
    let result = ingest(&state, ids, &headers, body, &mut outcome).await;
    let ok = Json(json!({"status": "ok"}));
    answer(result, outcome, ok, ("whatsapp_requests_total", &RESULTS))
}

#[tracing::instrument(name = "whatsapp", skip_all)]
async fn ingest(
    state: &AppState,
    ids: Correlation<'_>,
    headers: &HeaderMap,
    body: Body,
    outcome: &mut WebhookOutcome,
) -> Result<(), ApiError> {
    let received_at = unix_micros();
    let body = read_body(
        headers,
        body,
        state.config.max_body_bytes,
        state.config.body_timeout,
    )
    .await?;
    let slot = state
        .config
        .whatsapp_secrets
        .verify(
            &body,
            headers.get("x-hub-signature-256").map(|v| v.as_bytes()),
        )
        .ok_or(ApiError::InvalidSignature)?;
    metrics::counter!("webhook_signature_key_slot_total", "endpoint" => "whatsapp", "slot" => slot.to_string())
        .increment(1);
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let envelope = whatsapp::unpack(&body).map_err(ApiError::Validation)?;
    for status in &envelope.statuses {
        let label = STATUSES
            .iter()
            .find(|s| **s == status.as_str())
            .copied()
            .unwrap_or("other");
        metrics::counter!("whatsapp_statuses_total", "status" => label).increment(1);
    }
    if !envelope.messages.is_empty() {
        outcome.message_id = Some(
            envelope
                .messages
                .iter()
                .map(|m| m.message_id.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
    }

    // All at once: Meta gets its 200 only when every message is stored, and a 503 otherwise;
    // on its retry, JetStream's dedup and the upsert absorb the part that was stored.
    let acks = futures::future::join_all(envelope.messages.iter().map(|m| {
        publish(
            state,
            &m.message_id,
            ids,
            received_at,
            Bytes::from(m.body.clone()),
        )
    }))
    .await;
    let mut duplicates = 0;
    for ack in acks {
        let ack = ack?;
        let result = if ack.duplicate {
            duplicates += 1;
            "duplicate"
        } else {
            "created"
        };
        metrics::counter!("whatsapp_messages_total", "result" => result).increment(1);
    }
    let all_duplicates = !envelope.messages.is_empty() && duplicates == envelope.messages.len();
    outcome.dup = all_duplicates;
    outcome.result = if all_duplicates {
        "duplicate"
    } else {
        "created"
    };
    Ok(())
}
