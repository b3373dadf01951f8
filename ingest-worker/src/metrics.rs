//! The worker's metrics: every name once, one table ([`TABLE`]) of their kind, help and labels,
//! and their registration at start-up. Call sites record through the `metrics` crate's macros
//! with these names; a name missing from the table fails the unit test below.
//! docs/operations.md documents each series, and tests/observability.rs checks that table
//! against what the worker exports.

use ::metrics::Unit;
use ingest_shared::metric::Metric;

use crate::dead_letter::Kind;

pub const MESSAGES_CONSUMED: &str = "worker_messages_consumed_total";
pub const ROWS_INSERTED: &str = "worker_rows_inserted_total";
pub const DUPLICATES_SKIPPED: &str = "worker_duplicates_skipped_total";
pub const REDELIVERIES: &str = "worker_redeliveries_total";
pub const DEAD_LETTERS: &str = "worker_dead_letters_total";
pub const BATCHES: &str = "worker_batches_total";
pub const DB_ERRORS: &str = "worker_db_errors_total";
pub const RETENTION_DELETED: &str = "worker_retention_deleted_total";
pub const PARTITIONS_CREATED: &str = "worker_partitions_created_total";
pub const PARTITIONS_DROPPED: &str = "worker_partitions_dropped_total";
pub const MAX_DELIVERIES: &str = "worker_max_deliveries_total";

pub const BATCH_SIZE: &str = "worker_batch_size";
pub const COMMIT_LATENCY_MS: &str = "worker_commit_latency_ms";
pub const END_TO_END_LATENCY_MS: &str = "worker_end_to_end_latency_ms";
/// How long dropping an expired partition blocked readers of `messages` (the DROP and the
/// commit) and writers (the whole transaction).
pub const PARTITION_DROP_READERS_BLOCKED_MS: &str = "worker_partition_drop_readers_blocked_ms";
pub const PARTITION_DROP_WRITERS_BLOCKED_MS: &str = "worker_partition_drop_writers_blocked_ms";

pub const CONSUMER_PENDING: &str = "worker_consumer_pending";
pub const CONSUMER_ACK_PENDING: &str = "worker_consumer_ack_pending";
pub const CONSUMER_REDELIVERED: &str = "worker_consumer_redelivered";
/// The stream's contents against its limits, as JetStream reports them, for the stream-fill
/// alert: a full stream refuses webhooks (503).
pub const STREAM_MESSAGES: &str = "worker_stream_messages";
pub const STREAM_BYTES: &str = "worker_stream_bytes";
pub const STREAM_MAX_MESSAGES: &str = "worker_stream_max_messages";
pub const STREAM_MAX_BYTES: &str = "worker_stream_max_bytes";
pub const NATS_CONNECTED: &str = "worker_nats_connected";
pub const READY: &str = "worker_ready";
/// Labelled `state` = `in_use` | `idle`.
pub const DB_POOL_CONNECTIONS: &str = "worker_db_pool_connections";
/// Labelled `reason` = `invalid` | `refused` | `max_deliveries` (the `kind` column).
pub const DEAD_LETTERS_STORED: &str = "worker_dead_letters_stored";

/// Every metric of the worker, with its help.
const TABLE: [Metric; 27] = [
    Metric::new_counter(
        MESSAGES_CONSUMED,
        "Messages taken off the consumer (redeliveries included)",
    ),
    Metric::new_counter(ROWS_INSERTED, "New rows committed to Postgres"),
    Metric::new_counter(
        DUPLICATES_SKIPPED,
        "Messages that made no new row: already stored, or repeated within a batch",
    ),
    Metric::new_counter(
        REDELIVERIES,
        "Messages delivered more than once by JetStream",
    ),
    Metric::new_counter(
        DEAD_LETTERS,
        "Messages that can never be stored, written to dead_letters and terminated",
    ),
    Metric::new_counter(BATCHES, "Batches committed"),
    Metric::new_counter(DB_ERRORS, "Failed batch writes (each is retried)"),
    Metric::new_counter(
        RETENTION_DELETED,
        "Rows deleted by retention (RETENTION_DAYS)",
    ),
    Metric::new_counter(
        PARTITIONS_CREATED,
        "Partitions of messages created ahead of time (PARTITION_INTERVAL)",
    ),
    Metric::new_counter(
        PARTITIONS_DROPPED,
        "Expired partitions of messages dropped whole by retention",
    ),
    Metric::new_counter(
        MAX_DELIVERIES,
        "Messages not acknowledged after MAX_DELIVER deliveries, moved to dead_letters and deleted from the stream",
    ),
    Metric::new_histogram(BATCH_SIZE, "Messages per batch").unit(Unit::Count),
    Metric::new_histogram(COMMIT_LATENCY_MS, "Time to store one batch in Postgres")
        .unit(Unit::Milliseconds),
    Metric::new_histogram(
        END_TO_END_LATENCY_MS,
        "From the gateway receiving a webhook to the worker committing it",
    )
    .unit(Unit::Milliseconds),
    Metric::new_histogram(
        PARTITION_DROP_READERS_BLOCKED_MS,
        "Time reads waited on an expired partition's retirement: its TRUNCATE and the DROP of the emptied table",
    )
    .unit(Unit::Milliseconds),
    Metric::new_histogram(
        PARTITION_DROP_WRITERS_BLOCKED_MS,
        "Time writes into an expired partition waited on its retirement: the transaction that counts and empties it",
    )
    .unit(Unit::Milliseconds),
    Metric::new_gauge(
        CONSUMER_PENDING,
        "Messages in the stream not yet delivered to a worker",
    ),
    Metric::new_gauge(
        CONSUMER_ACK_PENDING,
        "Messages delivered to a worker and not yet acknowledged",
    ),
    Metric::new_gauge(
        CONSUMER_REDELIVERED,
        "Messages delivered to a worker more than once and not yet acknowledged",
    ),
    Metric::new_gauge(STREAM_MESSAGES, "Messages held by the JetStream stream"),
    Metric::new_gauge(STREAM_BYTES, "Bytes held by the JetStream stream").unit(Unit::Bytes),
    Metric::new_gauge(
        STREAM_MAX_MESSAGES,
        "The stream's message limit (NATS_MAX_MSGS); -1 when unlimited",
    ),
    Metric::new_gauge(
        STREAM_MAX_BYTES,
        "The stream's size limit (NATS_MAX_BYTES); -1 when unlimited",
    )
    .unit(Unit::Bytes),
    Metric::new_gauge(NATS_CONNECTED, "1 while the worker's NATS connection is up"),
    Metric::new_gauge(READY, "1 while GET /health/ready answers 200"),
    DB_POOL,
    STORED,
];

const DB_POOL: Metric =
    Metric::new_gauge(DB_POOL_CONNECTIONS, "Postgres pool connections, by state")
        .labels(&["state"]);
const STORED: Metric = Metric::new_gauge(
    DEAD_LETTERS_STORED,
    "Rows in dead_letters, by reason (kind); refreshed every LAG_POLL_SECS",
)
.labels(&["reason"]);

/// Rows in `dead_letters` of one kind, as last counted.
pub fn dead_letters_stored(kind: Kind, count: i64) {
    STORED.gauge(&[kind.as_str()]).set(count as f64);
}

/// Every metric has its help, and every series docs/operations.md documents exists from
/// start-up, at 0 (see [`Metric::register`]).
pub fn register() {
    for metric in &TABLE {
        metric.describe();
        if metric.labels.is_empty() {
            metric.register(&[]);
        }
    }
    for state in ["in_use", "idle"] {
        DB_POOL.register(&[state]);
    }
    for kind in Kind::ALL {
        STORED.register(&[kind.as_str()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name the worker records under (`metrics::counter!(NAME` and the like, anywhere in
    /// src/) is declared above and has its row in [`TABLE`].
    #[test]
    fn every_recorded_metric_is_in_the_table() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let this = include_str!("metrics.rs");
        let mut recorded = Vec::new();
        // This file records through the table itself.
        for file in walk(std::path::Path::new(dir)) {
            if file.ends_with("metrics.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for macro_call in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(macro_call) {
                    let rest = &text[at + macro_call.len()..];
                    let name: String = rest
                        .trim_start()
                        .trim_start_matches("metrics::")
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    recorded.push((file.display().to_string(), name));
                }
            }
        }
        assert!(
            recorded.len() > 10,
            "the scan finds the call sites: {recorded:?}"
        );
        let declared: Vec<(&str, &str)> = this
            .lines()
            .filter_map(|l| l.strip_prefix("pub const "))
            .filter_map(|l| l.split_once(": &str = \""))
            .map(|(ident, rest)| (ident, rest.trim_end_matches("\";")))
            .collect();
        for (file, ident) in recorded {
            if ident == "self" || ident.is_empty() {
                continue;
            }
            let name = declared
                .iter()
                .find(|(i, _)| *i == ident)
                .unwrap_or_else(|| panic!("{file}: {ident} is not a metric declared in metrics.rs"))
                .1;
            assert!(
                TABLE.iter().any(|m| m.name == name),
                "{file}: {name} has no row (kind, help) in TABLE"
            );
        }
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
        files
    }
}
