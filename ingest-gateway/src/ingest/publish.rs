//! Publishing one message to JetStream and waiting for its PubAck: the sender endpoints' last
//! step, and the dead-letter redrive's (crate::dead_letters::redrive).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::publish::PublishAck;
use axum::body::Bytes;
use ingest_shared::telemetry::TRACEPARENT_HEADER;
use ingest_shared::{RECEIVED_AT_HEADER, REQUEST_ID_HEADER, SOURCE_HEADER};

use super::Correlation;
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

/// Now, in microseconds since the Unix epoch (the `X-Received-At` header's unit).
pub(crate) fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

/// Publishes the verified bytes with `Nats-Msg-Id = message_id` and waits for JetStream to say
/// it has stored them. Anything short of a PubAck within the deadline is a 503. `source` is the
/// id of the source the message came in through, which the worker stores; empty when it is not
/// known (a redriven dead letter that has none), and then no header is sent and the worker stores none.
pub(crate) async fn publish(
    state: &AppState,
    source: &str,
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
    if !source.is_empty() {
        nats_headers.insert(SOURCE_HEADER, source);
    }

    let started = Instant::now();
    let acked = tokio::time::timeout(state.config.publish_timeout, async {
        let pending = state
            .batcher
            .publish(state.subject.clone(), nats_headers, body)
            .await
            .map_err(|_| {
                tracing::error!("the batcher task is gone");
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
    metrics::publish_latency(started.elapsed());
    acked.unwrap_or_else(|_| Err(unavailable("publish timed out")))
}
