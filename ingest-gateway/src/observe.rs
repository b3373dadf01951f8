//! One middleware for every request: the request id, the trace context, the access log line and
//! the HTTP metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use ingest_shared::telemetry;
use tracing::Instrument;

use crate::metrics;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The request id of the request being served: the caller's `X-Request-Id` when sane, else new.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The caller's W3C `traceparent`, when present and well-formed; carried to the worker as is.
#[derive(Debug, Clone, Default)]
pub struct TraceParent(pub Option<String>);

impl TraceParent {
    pub fn trace_id(&self) -> Option<&str> {
        self.0
            .as_deref()
            .and_then(telemetry::trace_id_from_traceparent)
    }
}

/// What `/webhook` did, put in the response's extensions for the access log.
#[derive(Debug, Clone, Default)]
pub struct WebhookOutcome {
    /// The source's id (bounded by the configured set).
    pub source: Option<String>,
    pub message_id: Option<String>,
    pub dup: bool,
    pub result: &'static str,
}

/// Up to 128 characters of `[A-Za-z0-9._:-]`: enough for UUIDs, ULIDs and most tracers' ids,
/// and nothing that could forge a log field or a NATS header.
fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    ok.then(|| s.to_owned())
}

pub const UNMATCHED_PATH: &str = "unmatched";

pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = metrics::InFlight::start();
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // The route template, never the raw URL, so the metric's cardinality stays bounded.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED_PATH.to_owned());
    let trace_parent = TraceParent(
        request
            .headers()
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .filter(|v| telemetry::trace_id_from_traceparent(v).is_some())
            .map(str::to_owned),
    );
    let trace_id = trace_parent.trace_id().map(str::to_owned);
    let method = request.method().clone();
    let client_addr = request
        .extensions()
        .get::<crate::sources::client::ClientAddr>()
        .map(|c| c.0);
    // Never the query string: callers put tokens there.
    let path = request.uri().path().to_owned();
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    request.extensions_mut().insert(trace_parent);

    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        trace_id = trace_id.as_deref()
    );
    let mut response = next.run(request).instrument(span).await;

    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    metrics::http_request(route, status, latency_ms);

    let latency_ms = (latency_ms * 1000.0).round() / 1000.0;
    match response.extensions().get::<WebhookOutcome>() {
        Some(outcome) => tracing::info!(
            request_id = %request_id,
            method = %method,
            path = %path,
            status,
            latency_ms,
            trace_id = trace_id.as_deref(),
            client_addr = client_addr.map(tracing::field::display),
            source = outcome.source.as_deref(),
            message_id = outcome.message_id.as_deref(),
            dup = outcome.dup,
            result = outcome.result,
            "request"
        ),
        None => tracing::info!(
            request_id = %request_id,
            method = %method,
            path = %path,
            status,
            latency_ms,
            trace_id = trace_id.as_deref(),
            client_addr = client_addr.map(tracing::field::display),
            "request"
        ),
    }
    response
}
