//! Every metric the gateway exports, in one table ([`TABLE`]) of name, kind, help and labels,
//! its start-up registration, and one function per thing recorded. Call sites record through
//! these functions and never name a series. A sender endpoint declares its own metrics
//! ([`SenderMetrics`], through `ingest::Sender`), so adding one touches nothing here.
//! docs/operations.md documents the same table (and tests/observability.rs holds them to each
//! other); `gateway_ready` is set by the shared readiness report (`ingest_shared::health`).
//!
//! The crate of the same name is `::metrics` here.

use std::time::Duration;

use ::metrics::Unit;
use ingest_shared::metric::Metric;

use crate::Config;
use crate::consistency::Outcome;
use crate::read::format::Format;
use crate::replica::Fallback;

const HTTP_REQUESTS: Metric = Metric::new_counter(
    "http_requests_total",
    "HTTP requests answered, by route template and status",
)
.labels(&["path", "status"]);
const IN_FLIGHT: Metric =
    Metric::new_gauge("http_requests_in_flight", "HTTP requests being served");
const REQUEST_LATENCY: Metric = Metric::new_histogram(
    "request_latency_ms",
    "HTTP request latency, by route template",
)
.unit(Unit::Milliseconds)
.labels(&["path"]);
const SHED: Metric = Metric::new_counter(
    "gateway_shed_requests_total",
    "API requests answered 503 by the overload protection, by reason",
)
.labels(&["reason"]);
const PUBLISH_LATENCY: Metric = Metric::new_histogram(
    "gateway_publish_latency_ms",
    "Wait for JetStream's PubAck (or the failure)",
)
.unit(Unit::Milliseconds);
const NATS_CONNECTED: Metric = Metric::new_gauge(
    "gateway_nats_connected",
    "1 while the gateway's NATS connection is up",
);
const READY_GAUGE: Metric =
    Metric::new_gauge("gateway_ready", "1 while GET /health/ready answers 200");
/// Set by the shared readiness report (`ingest_shared::health`), which names its gauge.
pub const READY: &str = READY_GAUGE.name;
const CONSISTENCY_OUTCOME: Metric = Metric::new_counter(
    "read_consistency_total",
    "Reads by how they met read-your-writes: fresh, stale, skipped",
)
.labels(&["outcome"]);
const CONSISTENCY_WAIT: Metric = Metric::new_histogram(
    "read_consistency_wait_ms",
    "How long reads waited for the read-your-writes watermark",
)
.unit(Unit::Milliseconds);
const REPLICA_LAG_BYTES: Metric = Metric::new_gauge(
    "read_replica_lag_bytes",
    "WAL the primary has written and the read replica has not replayed (last check)",
)
.unit(Unit::Bytes);
const REPLICA_LAG_SECONDS: Metric = Metric::new_gauge(
    "read_replica_lag_seconds",
    "Age of the newest transaction the read replica replayed, 0 when it has replayed everything",
)
.unit(Unit::Seconds);
const REPLICA_FALLING_BACK: Metric = Metric::new_gauge(
    "read_replica_falling_back",
    "1 while reads go to the primary because the read replica cannot be reached",
);
const REPLICA_FALLBACK: Metric = Metric::new_counter(
    "read_replica_fallback_total",
    "Reads served by the primary because the read replica could not be reached, by reason",
)
.labels(&["reason"]);
const SIGNATURE_KEY_SLOT: Metric = Metric::new_counter(
    "webhook_signature_key_slot_total",
    "Verified signatures, by sender endpoint and the position of the key that matched",
)
.labels(&["endpoint", "slot"]);
const EXPORTS_IN_PROGRESS: Metric = Metric::new_gauge(
    "exports_in_progress",
    "Streamed GET /messages exports (format=ndjson|csv) being sent",
);
const EXPORT_ROWS: Metric = Metric::new_counter(
    "export_rows_total",
    "Rows written by streamed GET /messages exports, by format",
)
.labels(&["format"]);
const SOURCE_REQUESTS: Metric = Metric::new_counter(
    "source_requests_total",
    "Accept-path requests of each configured source, by how they ended",
)
.labels(&["source", "result"]);
const SOURCES_RELOAD: Metric = Metric::new_counter(
    "sources_reload_total",
    "Reloads of SOURCES_FILE: ok (the new set is in use) or invalid (the old set is kept)",
)
.labels(&["result"]);

/// Every `result` of `source_requests_total`.
pub const SOURCE_RESULTS: [&str; 9] = [
    "created",
    "duplicate",
    "invalid_signature",
    "stale_timestamp",
    "validation_error",
    "too_large",
    "unavailable",
    "rate_limited",
    "forbidden",
];

/// Every metric of the gateway but those of its sender endpoints.
const TABLE: [&Metric; 18] = [
    &HTTP_REQUESTS,
    &IN_FLIGHT,
    &REQUEST_LATENCY,
    &SHED,
    &PUBLISH_LATENCY,
    &NATS_CONNECTED,
    &READY_GAUGE,
    &CONSISTENCY_OUTCOME,
    &CONSISTENCY_WAIT,
    &REPLICA_LAG_BYTES,
    &REPLICA_LAG_SECONDS,
    &REPLICA_FALLING_BACK,
    &REPLICA_FALLBACK,
    &SIGNATURE_KEY_SLOT,
    &EXPORTS_IN_PROGRESS,
    &EXPORT_ROWS,
    &SOURCE_REQUESTS,
    &SOURCES_RELOAD,
];

const SHED_REASONS: [&str; 3] = ["overloaded", "timeout", "other"];
/// The `/webhook` statuses whose `http_requests_total` series exist from start-up.
const WEBHOOK_STATUSES: [&str; 6] = ["200", "401", "413", "415", "422", "503"];

/// What a sender endpoint counts: its requests by how they ended, and its own metrics.
pub struct SenderMetrics {
    /// Its `endpoint` label of `webhook_signature_key_slot_total`.
    pub endpoint: &'static str,
    /// Its request counter, labelled `result`.
    pub requests: Metric,
    /// Every `result` label `requests` documents; anything else is counted as
    /// `validation_error`, so a new error kind cannot grow the series unnoticed.
    pub results: &'static [&'static str],
    /// How many signing keys it has, one `slot` series each.
    pub keys: fn(&Config) -> usize,
    /// Its own metrics, each with the label values of its series that exist from start-up.
    pub own: &'static [(&'static Metric, &'static [&'static str])],
}

/// Every series docs/operations.md documents exists from start-up, at 0 (see
/// [`Metric::register`]), and every metric has its help.
pub fn register(config: &Config, senders: &[&SenderMetrics]) {
    for metric in TABLE {
        metric.describe();
    }
    for status in WEBHOOK_STATUSES {
        HTTP_REQUESTS.register(&["/webhook", status]);
    }
    REQUEST_LATENCY.register(&["/webhook"]);
    for metric in [
        &IN_FLIGHT,
        &NATS_CONNECTED,
        &READY_GAUGE,
        &EXPORTS_IN_PROGRESS,
    ] {
        metric.register(&[]);
    }
    for reason in SHED_REASONS {
        SHED.register(&[reason]);
    }
    PUBLISH_LATENCY.register(&[]);
    CONSISTENCY_WAIT.register(&[]);
    for outcome in Outcome::ALL {
        CONSISTENCY_OUTCOME.register(&[outcome.as_str()]);
    }
    for metric in [
        &REPLICA_LAG_BYTES,
        &REPLICA_LAG_SECONDS,
        &REPLICA_FALLING_BACK,
    ] {
        metric.register(&[]);
    }
    for reason in Fallback::ALL {
        REPLICA_FALLBACK.register(&[reason.as_str()]);
    }
    for sender in senders {
        sender.requests.describe();
        for result in sender.results {
            sender.requests.register(&[result]);
        }
        for slot in 0..(sender.keys)(config) {
            SIGNATURE_KEY_SLOT.register(&[sender.endpoint, &slot.to_string()]);
        }
        for (metric, values) in sender.own {
            metric.describe();
            for value in *values {
                metric.register(&[value]);
            }
        }
    }
    for format in [Format::Ndjson, Format::Csv] {
        EXPORT_ROWS.register(&[format.name()]);
    }
    register_sources(&config.sources);
    for result in ["ok", "invalid"] {
        SOURCES_RELOAD.register(&[result]);
    }
}

/// The series of every source of a set, at 0 until counted.
pub fn register_sources(sources: &crate::sources::Sources) {
    for source in sources.iter() {
        for result in SOURCE_RESULTS {
            SOURCE_REQUESTS.register(&[&source.id, result]);
        }
    }
}

/// One accept-path request of a configured source (never an unknown id: that is a 404 before).
pub fn source_request(source: &str, result: &'static str) {
    let result = if SOURCE_RESULTS.contains(&result) {
        result
    } else {
        "validation_error"
    };
    SOURCE_REQUESTS.counter(&[source, result]).increment(1);
}

pub fn sources_reload(result: &'static str) {
    SOURCES_RELOAD.counter(&[result]).increment(1);
}

/// Counts an export in `exports_in_progress` for as long as it lives, also when the client
/// goes away mid-stream.
pub struct ExportInProgress(());

impl ExportInProgress {
    pub fn start() -> Self {
        EXPORTS_IN_PROGRESS.gauge(&[]).increment(1.0);
        Self(())
    }
}

impl Drop for ExportInProgress {
    fn drop(&mut self) {
        EXPORTS_IN_PROGRESS.gauge(&[]).decrement(1.0);
    }
}

pub fn export_rows(format: Format, rows: usize) {
    EXPORT_ROWS.counter(&[format.name()]).increment(rows as u64);
}

/// One answered HTTP request, by route template (never the raw URL, so the series stay bounded).
pub fn http_request(route: String, status: u16, latency_ms: f64) {
    HTTP_REQUESTS
        .counter(&[&route, &status.to_string()])
        .increment(1);
    REQUEST_LATENCY.histogram(&[&route]).record(latency_ms);
}

/// Counts a request in `http_requests_in_flight` until dropped, however the request ends,
/// including when the client hangs up and the handler's future is dropped mid-way.
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        IN_FLIGHT.gauge(&[]).increment(1.0);
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.gauge(&[]).decrement(1.0);
    }
}

/// A request answered 503 by the overload protection; `reason` is one of [`SHED_REASONS`].
pub fn shed(reason: &'static str) {
    SHED.counter(&[reason]).increment(1);
}

pub fn nats_connected(connected: bool) {
    NATS_CONNECTED
        .gauge(&[])
        .set(if connected { 1.0 } else { 0.0 });
}

/// The wait for one PubAck, or for its failure.
pub fn publish_latency(elapsed: Duration) {
    PUBLISH_LATENCY
        .histogram(&[])
        .record(elapsed.as_secs_f64() * 1000.0);
}

pub fn read_consistency(outcome: Outcome) {
    CONSISTENCY_OUTCOME
        .counter(&[outcome.as_str()])
        .increment(1);
}

pub fn read_consistency_wait(elapsed: Duration) {
    CONSISTENCY_WAIT
        .histogram(&[])
        .record(elapsed.as_secs_f64() * 1000.0);
}

/// The read replica's lag at its last check (`age` unknown before it replayed a transaction).
pub fn read_replica_lag(bytes: i64, age: Option<Duration>) {
    REPLICA_LAG_BYTES.gauge(&[]).set(bytes as f64);
    if let Some(age) = age {
        REPLICA_LAG_SECONDS.gauge(&[]).set(age.as_secs_f64());
    }
}

pub fn read_replica_falling_back(falling_back: bool) {
    REPLICA_FALLING_BACK
        .gauge(&[])
        .set(if falling_back { 1.0 } else { 0.0 });
}

/// One read served by the primary instead of the replica.
pub fn read_replica_fallback(reason: Fallback) {
    REPLICA_FALLBACK.counter(&[reason.as_str()]).increment(1);
}

/// A verified signature, by the position of the key that matched, so an operator sees when a
/// rotated-out secret stops being used.
pub fn signature_key_slot(sender: &SenderMetrics, slot: usize) {
    SIGNATURE_KEY_SLOT
        .counter(&[sender.endpoint, &slot.to_string()])
        .increment(1);
}

/// A sender request, by how it ended. Only documented label values (see
/// [`SenderMetrics::results`]).
pub fn sender_request(sender: &SenderMetrics, result: &'static str) {
    // Counted per source only (`source_requests_total`): the older series keep their values.
    if matches!(result, "rate_limited" | "forbidden") {
        return;
    }
    let result = if sender.results.contains(&result) {
        result
    } else {
        "validation_error"
    };
    sender.requests.counter(&[result]).increment(1);
}
