//! `POST /webhook`: verify, validate, publish to JetStream, answer only after the PubAck.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::publish::PublishAck;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use ingest_shared::signature::{StandardWebhookError, StandardWebhookHeaders};
use ingest_shared::telemetry::TRACEPARENT_HEADER;
use ingest_shared::{RECEIVED_AT_HEADER, REQUEST_ID_HEADER, message};

use crate::error::ApiError;
use crate::observe::{RequestId, TraceParent, WebhookOutcome};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhook", post(receive))
}

/// The answer to every accepted webhook, built once instead of as a JSON value per request.
const OK_BODY: ([(header::HeaderName, &str); 1], &str) = (
    [(header::CONTENT_TYPE, "application/json")],
    r#"{"status":"ok"}"#,
);

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
    answer(
        result,
        outcome,
        OK_BODY,
        ("webhook_requests_total", &RESULTS),
    )
}

/// The answer of a webhook route (`/webhook`, `/webhook/whatsapp`): `ok` or the error's own
/// response, the request counted in `counter` by result (one of `results`, its documented
/// labels), and the outcome left on the response for the access log.
pub(crate) fn answer(
    result: Result<(), ApiError>,
    mut outcome: WebhookOutcome,
    ok: impl IntoResponse,
    (counter, results): (&'static str, &[&'static str]),
) -> Response {
    let mut response = match result {
        Ok(()) => ok.into_response(),
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
    // Only documented label values, so a new error kind cannot grow the series unnoticed.
    let result = if results.contains(&outcome.result) {
        outcome.result
    } else {
        "validation_error"
    };
    metrics::counter!(counter, "result" => result).increment(1);
    response.extensions_mut().insert(outcome);
    response
}

/// What travels to the worker in NATS headers so its log lines name the same request.
#[derive(Clone, Copy)]
pub(crate) struct Correlation<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) trace_parent: Option<&'a str>,
}

/// Now, in microseconds since the Unix epoch (the `X-Received-At` header's unit).
pub(crate) fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

impl<'a> Correlation<'a> {
    pub(crate) fn of(request_id: &'a RequestId, trace_parent: &'a TraceParent) -> Self {
        Self {
            request_id: &request_id.0,
            trace_parent: trace_parent.0.as_deref(),
        }
    }
}

async fn ingest(
    state: &AppState,
    ids: Correlation<'_>,
    headers: &HeaderMap,
    body: Body,
    outcome: &mut WebhookOutcome,
) -> Result<(), ApiError> {
    let received_at = unix_micros();
    let limit = state.config.max_body_bytes;
    let body = read_body(headers, body, limit, state.config.body_timeout).await?;

    // Before parsing: a forged request learns nothing about the schema.
    verify_signature(state, headers, &body)?;

    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let message = message::parse(&body).map_err(ApiError::Validation)?;
    outcome.message_id = Some(message.message_id.clone());

    let ack = publish(state, &message.message_id, ids, received_at, body).await?;
    outcome.dup = ack.duplicate;
    outcome.result = if ack.duplicate {
        "duplicate"
    } else {
        "created"
    };
    Ok(())
}

/// Checks the request against every scheme the endpoint accepts (`WEBHOOK_SCHEMES`): Standard
/// Webhooks when its headers are present and the scheme is on, else `X-Signature`. Counts which
/// key slot matched, so an operator sees when a rotated-out secret stops being used.
fn verify_signature(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<usize, ApiError> {
    let config = &state.config;
    let standard = StandardWebhookHeaders {
        id: headers.get("webhook-id").map(|v| v.as_bytes()),
        timestamp: headers.get("webhook-timestamp").map(|v| v.as_bytes()),
        signature: headers.get("webhook-signature").map(|v| v.as_bytes()),
    };
    let slot = if config.schemes.standard_webhooks && standard.signature.is_some() {
        let now = (unix_micros() / 1_000_000) as i64;
        config
            .standard_secrets
            .verify_standard(&standard, body, now, config.tolerance_secs)
            .map_err(|e| match e {
                StandardWebhookError::InvalidSignature => ApiError::InvalidSignature,
                StandardWebhookError::OutsideTolerance => ApiError::StaleTimestamp,
            })?
    } else if config.schemes.x_signature {
        config
            .secrets
            .verify(body, headers.get("x-signature").map(|v| v.as_bytes()))
            .ok_or(ApiError::InvalidSignature)?
    } else {
        return Err(ApiError::InvalidSignature);
    };
    metrics::counter!("webhook_signature_key_slot_total", "endpoint" => "webhook", "slot" => slot.to_string())
        .increment(1);
    Ok(slot)
}

pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Ok(Err(_)) => Err(ApiError::BadBody),
    }
}

/// No Content-Type is taken as JSON, as the older API did; any other declared type is refused.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5
            && essence[essence.len() - 5..].eq_ignore_ascii_case("+json")
            && essence[..essence.len() - 5]
                .to_ascii_lowercase()
                .starts_with("application/"))
}

/// Publishes the verified bytes with `Nats-Msg-Id = message_id` and waits for JetStream to say
/// it has stored them. Anything short of a PubAck within the deadline is a 503.
pub(crate) async fn publish(
    state: &AppState,
    message_id: &str,
    ids: Correlation<'_>,
    received_at_us: u128,
    body: Bytes,
) -> Result<PublishAck, ApiError> {
    tracing::Span::current().record("message_id", message_id);
    let unavailable = |reason| ApiError::Unavailable {
        reason,
        retry_after_secs: state.config.retry_after_secs,
    };
    // While disconnected the client would buffer the publish and we would wait out the whole
    // deadline; answer at once instead.
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        return Err(unavailable("nats disconnected"));
    }
    let mut nats_headers = async_nats::HeaderMap::new();
    nats_headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id);
    nats_headers.insert(REQUEST_ID_HEADER, ids.request_id);
    if let Some(trace_parent) = ids.trace_parent {
        nats_headers.insert(TRACEPARENT_HEADER, trace_parent);
    }
    nats_headers.insert(RECEIVED_AT_HEADER, received_at_us.to_string());

    let started = Instant::now();
    let acked = tokio::time::timeout(state.config.publish_timeout, async {
        let pending = state
            .publisher
            .publish(state.subject.clone(), nats_headers, body)
            .await
            .map_err(|_| {
                tracing::error!("the publisher task is gone");
                unavailable("publish not sent")
            })?
            .map_err(|e| {
                tracing::warn!(error = %e, "publish not sent");
                unavailable("publish not sent")
            })?;
        pending.await.map_err(|e| {
            tracing::warn!(error = %e, "publish not acknowledged");
            unavailable("publish not acknowledged")
        })
    })
    .await;
    metrics::histogram!("gateway_publish_latency_ms")
        .record(started.elapsed().as_secs_f64() * 1000.0);
    acked.unwrap_or_else(|_| Err(unavailable("publish timed out")))
}
