//! Every metric the gateway exports: each name once, the start-up registration, and one function
//! per thing recorded. Call sites record through these functions and never name a series, so a
//! name or a label set changes here alone. docs/operations.md documents the same table (and
//! tests/observability.rs holds them to each other); `gateway_ready` is still set by
//! routes/health.rs.
//!
//! The crate of the same name is `::metrics` here.

use std::time::Duration;

use ::metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use crate::Config;
use crate::consistency::Outcome;
use crate::read::format::Format;
use crate::replica::Fallback;

const HTTP_REQUESTS: &str = "http_requests_total";
const IN_FLIGHT: &str = "http_requests_in_flight";
const REQUEST_LATENCY: &str = "request_latency_ms";
const SHED: &str = "gateway_shed_requests_total";
const PUBLISH_LATENCY: &str = "gateway_publish_latency_ms";
const NATS_CONNECTED: &str = "gateway_nats_connected";
/// Set by the shared readiness report (`ingest_shared::health`), which names its gauge.
pub const READY: &str = "gateway_ready";
const CONSISTENCY_OUTCOME: &str = "read_consistency_total";
const CONSISTENCY_WAIT: &str = "read_consistency_wait_ms";
const REPLICA_LAG_BYTES: &str = "read_replica_lag_bytes";
const REPLICA_LAG_SECONDS: &str = "read_replica_lag_seconds";
const REPLICA_FALLING_BACK: &str = "read_replica_falling_back";
const REPLICA_FALLBACK: &str = "read_replica_fallback_total";
const SIGNATURE_KEY_SLOT: &str = "webhook_signature_key_slot_total";
const WEBHOOK_REQUESTS: &str = "webhook_requests_total";
const WHATSAPP_REQUESTS: &str = "whatsapp_requests_total";
const WHATSAPP_MESSAGES: &str = "whatsapp_messages_total";
const WHATSAPP_STATUSES: &str = "whatsapp_statuses_total";
const EXPORTS_IN_PROGRESS: &str = "exports_in_progress";
const EXPORT_ROWS: &str = "export_rows_total";

/// Every `result` label of `webhook_requests_total`.
pub const WEBHOOK_RESULTS: [&str; 7] = [
    "created",
    "duplicate",
    "invalid_signature",
    "stale_timestamp",
    "validation_error",
    "too_large",
    "unavailable",
];
/// Every `result` label of `whatsapp_requests_total`.
const WHATSAPP_RESULTS: [&str; 5] = [
    "created",
    "duplicate",
    "invalid_signature",
    "validation_error",
    "unavailable",
];
/// Statuses counted by name; anything else is `other`, so a sender cannot grow the label set.
const WHATSAPP_STATUS_NAMES: [&str; 5] = ["sent", "delivered", "read", "failed", "other"];
const SHED_REASONS: [&str; 3] = ["overloaded", "timeout", "other"];
/// The `/webhook` statuses whose `http_requests_total` series exist from start-up.
const WEBHOOK_STATUSES: [&str; 6] = ["200", "401", "413", "415", "422", "503"];

/// A sender endpoint, as its metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /webhook`.
    Webhook,
    /// `POST /webhook/whatsapp`.
    WhatsApp,
}

impl Endpoint {
    const ALL: [Endpoint; 2] = [Endpoint::Webhook, Endpoint::WhatsApp];

    /// The `endpoint` label of `webhook_signature_key_slot_total`.
    fn label(self) -> &'static str {
        match self {
            Endpoint::Webhook => "webhook",
            Endpoint::WhatsApp => "whatsapp",
        }
    }

    /// The endpoint's request counter and every `result` label it documents.
    fn requests(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Endpoint::Webhook => (WEBHOOK_REQUESTS, &WEBHOOK_RESULTS),
            Endpoint::WhatsApp => (WHATSAPP_REQUESTS, &WHATSAPP_RESULTS),
        }
    }

    /// How many signing keys the endpoint has, one `slot` series each.
    fn keys(self, config: &Config) -> usize {
        match self {
            Endpoint::Webhook => config.secrets.len(),
            Endpoint::WhatsApp => config.whatsapp_secrets.len(),
        }
    }
}

/// Every labelled series docs/operations.md documents exists from start-up, at 0, so dashboards
/// and alerts never see "no data". `increment(0)`/`increment(0.0)` only: a test process runs
/// several apps on one recorder, and an `absolute(0)`/`set(0)` here would wipe another app's
/// values.
pub fn register(config: &Config) {
    describe();
    for status in WEBHOOK_STATUSES {
        counter!(HTTP_REQUESTS, "path" => "/webhook", "status" => status).increment(0);
    }
    let _ = histogram!(REQUEST_LATENCY, "path" => "/webhook");
    for name in [IN_FLIGHT, NATS_CONNECTED, READY, EXPORTS_IN_PROGRESS] {
        gauge!(name).increment(0.0);
    }
    for reason in SHED_REASONS {
        counter!(SHED, "reason" => reason).increment(0);
    }
    let _ = histogram!(PUBLISH_LATENCY);
    let _ = histogram!(CONSISTENCY_WAIT);
    for outcome in Outcome::ALL {
        counter!(CONSISTENCY_OUTCOME, "outcome" => outcome.as_str()).increment(0);
    }
    for name in [REPLICA_LAG_BYTES, REPLICA_LAG_SECONDS, REPLICA_FALLING_BACK] {
        gauge!(name).increment(0.0);
    }
    for reason in Fallback::ALL {
        counter!(REPLICA_FALLBACK, "reason" => reason.as_str()).increment(0);
    }
    for endpoint in Endpoint::ALL {
        let (name, results) = endpoint.requests();
        for result in results {
            counter!(name, "result" => *result).increment(0);
        }
        for slot in 0..endpoint.keys(config) {
            counter!(SIGNATURE_KEY_SLOT, "endpoint" => endpoint.label(), "slot" => slot.to_string())
                .increment(0);
        }
    }
    for result in ["created", "duplicate"] {
        counter!(WHATSAPP_MESSAGES, "result" => result).increment(0);
    }
    for status in WHATSAPP_STATUS_NAMES {
        counter!(WHATSAPP_STATUSES, "status" => status).increment(0);
    }
    for format in [Format::Ndjson, Format::Csv] {
        counter!(EXPORT_ROWS, "format" => format.name()).increment(0);
    }
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template and status"
    );
    describe_counter!(WEBHOOK_REQUESTS, "POST /webhook calls, by how they ended");
    describe_histogram!(
        REQUEST_LATENCY,
        Unit::Milliseconds,
        "HTTP request latency, by route template"
    );
    describe_gauge!(IN_FLIGHT, "HTTP requests being served");
    describe_histogram!(
        PUBLISH_LATENCY,
        Unit::Milliseconds,
        "Wait for JetStream's PubAck (or the failure)"
    );
    describe_gauge!(
        NATS_CONNECTED,
        "1 while the gateway's NATS connection is up"
    );
    describe_gauge!(READY, "1 while GET /health/ready answers 200");
    describe_counter!(
        CONSISTENCY_OUTCOME,
        "Reads by how they met read-your-writes: fresh, stale, skipped"
    );
    describe_histogram!(
        CONSISTENCY_WAIT,
        Unit::Milliseconds,
        "How long reads waited for the read-your-writes watermark"
    );
    describe_gauge!(
        REPLICA_LAG_BYTES,
        Unit::Bytes,
        "WAL the primary has written and the read replica has not replayed (last check)"
    );
    describe_gauge!(
        REPLICA_LAG_SECONDS,
        Unit::Seconds,
        "Age of the newest transaction the read replica replayed, 0 when it has replayed everything"
    );
    describe_gauge!(
        REPLICA_FALLING_BACK,
        "1 while reads go to the primary because the read replica cannot be reached"
    );
    describe_counter!(
        REPLICA_FALLBACK,
        "Reads served by the primary because the read replica could not be reached, by reason"
    );
    describe_gauge!(
        EXPORTS_IN_PROGRESS,
        "Streamed GET /messages exports (format=ndjson|csv) being sent"
    );
    describe_counter!(
        EXPORT_ROWS,
        "Rows written by streamed GET /messages exports, by format"
    );
}

/// Counts an export in `exports_in_progress` for as long as it lives, also when the client
/// goes away mid-stream.
pub struct ExportInProgress(());

impl ExportInProgress {
    pub fn start() -> Self {
        gauge!(EXPORTS_IN_PROGRESS).increment(1.0);
        Self(())
    }
}

impl Drop for ExportInProgress {
    fn drop(&mut self) {
        gauge!(EXPORTS_IN_PROGRESS).decrement(1.0);
    }
}

pub fn export_rows(format: Format, rows: usize) {
    counter!(EXPORT_ROWS, "format" => format.name()).increment(rows as u64);
}

/// One answered HTTP request, by route template (never the raw URL, so the series stay bounded).
pub fn http_request(route: String, status: u16, latency_ms: f64) {
    counter!(HTTP_REQUESTS, "path" => route.clone(), "status" => status.to_string()).increment(1);
    histogram!(REQUEST_LATENCY, "path" => route).record(latency_ms);
}

/// Counts a request in `http_requests_in_flight` until dropped, however the request ends,
/// including when the client hangs up and the handler's future is dropped mid-way.
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        gauge!(IN_FLIGHT).increment(1.0);
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(IN_FLIGHT).decrement(1.0);
    }
}

/// A request answered 503 by the overload protection; `reason` is one of [`SHED_REASONS`].
pub fn shed(reason: &'static str) {
    counter!(SHED, "reason" => reason).increment(1);
}

pub fn nats_connected(connected: bool) {
    gauge!(NATS_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

/// The wait for one PubAck, or for its failure.
pub fn publish_latency(elapsed: Duration) {
    histogram!(PUBLISH_LATENCY).record(elapsed.as_secs_f64() * 1000.0);
}

pub fn read_consistency(outcome: Outcome) {
    counter!(CONSISTENCY_OUTCOME, "outcome" => outcome.as_str()).increment(1);
}

pub fn read_consistency_wait(elapsed: Duration) {
    histogram!(CONSISTENCY_WAIT).record(elapsed.as_secs_f64() * 1000.0);
}

/// The read replica's lag at its last check (`age` unknown before it replayed a transaction).
pub fn read_replica_lag(bytes: i64, age: Option<Duration>) {
    gauge!(REPLICA_LAG_BYTES).set(bytes as f64);
    if let Some(age) = age {
        gauge!(REPLICA_LAG_SECONDS).set(age.as_secs_f64());
    }
}

pub fn read_replica_falling_back(falling_back: bool) {
    gauge!(REPLICA_FALLING_BACK).set(if falling_back { 1.0 } else { 0.0 });
}

/// One read served by the primary instead of the replica.
pub fn read_replica_fallback(reason: Fallback) {
    counter!(REPLICA_FALLBACK, "reason" => reason.as_str()).increment(1);
}

/// A verified signature, by the position of the key that matched, so an operator sees when a
/// rotated-out secret stops being used.
pub fn signature_key_slot(endpoint: Endpoint, slot: usize) {
    counter!(SIGNATURE_KEY_SLOT, "endpoint" => endpoint.label(), "slot" => slot.to_string())
        .increment(1);
}

/// A sender request, by how it ended. Only documented label values: an unknown `result` is
/// counted as `validation_error`, so a new error kind cannot grow the series unnoticed.
pub fn sender_request(endpoint: Endpoint, result: &'static str) {
    let (name, results) = endpoint.requests();
    let result = if results.contains(&result) {
        result
    } else {
        "validation_error"
    };
    counter!(name, "result" => result).increment(1);
}

/// One chat message of a WhatsApp envelope, stored in JetStream.
pub fn whatsapp_message(duplicate: bool) {
    let result = if duplicate { "duplicate" } else { "created" };
    counter!(WHATSAPP_MESSAGES, "result" => result).increment(1);
}

/// One WhatsApp delivery status, counted by name (unknown names as `other`).
pub fn whatsapp_status(status: &str) {
    let label = WHATSAPP_STATUS_NAMES
        .iter()
        .find(|s| **s == status)
        .copied()
        .unwrap_or("other");
    counter!(WHATSAPP_STATUSES, "status" => label).increment(1);
}
