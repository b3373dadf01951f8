//! The worker's metrics: every name once, and their registration at start-up. Call sites record
//! through the `metrics` crate's macros with these names. docs/operations.md documents each
//! series, and tests/observability.rs checks that table against what the worker exports.

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
pub const NATS_CONNECTED: &str = "worker_nats_connected";
pub const READY: &str = "worker_ready";
/// Labelled `state` = `in_use` | `idle`.
pub const DB_POOL_CONNECTIONS: &str = "worker_db_pool_connections";
/// Labelled `reason` = `invalid` | `refused` | `max_deliveries` (the `kind` column).
pub const DEAD_LETTERS_STORED: &str = "worker_dead_letters_stored";

/// Rows in `dead_letters` of one kind, as last counted.
pub fn dead_letters_stored(kind: Kind, count: i64) {
    ::metrics::gauge!(DEAD_LETTERS_STORED, "reason" => kind.as_str()).set(count as f64);
}

/// Every series docs/operations.md documents exists from start-up, at 0. `increment(0)` only: a
/// test process runs several apps on one recorder, and `absolute(0)`/`set(0)` would wipe their
/// values.
pub fn register() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    for (name, help) in [
        (
            MESSAGES_CONSUMED,
            "Messages taken off the consumer (redeliveries included)",
        ),
        (ROWS_INSERTED, "New rows committed to Postgres"),
        (
            DUPLICATES_SKIPPED,
            "Messages that made no new row: already stored, or repeated within a batch",
        ),
        (
            REDELIVERIES,
            "Messages delivered more than once by JetStream",
        ),
        (
            DEAD_LETTERS,
            "Messages that can never be stored, written to dead_letters and terminated",
        ),
        (BATCHES, "Batches committed"),
        (DB_ERRORS, "Failed batch writes (each is retried)"),
        (
            RETENTION_DELETED,
            "Rows deleted by retention (RETENTION_DAYS)",
        ),
        (
            PARTITIONS_CREATED,
            "Partitions of messages created ahead of time (PARTITION_INTERVAL)",
        ),
        (
            PARTITIONS_DROPPED,
            "Expired partitions of messages dropped whole by retention",
        ),
        (
            MAX_DELIVERIES,
            "Messages not acknowledged after MAX_DELIVER deliveries, moved to dead_letters and deleted from the stream",
        ),
    ] {
        describe_counter!(name, help);
        ::metrics::counter!(name).increment(0);
    }
    for (name, unit, help) in [
        (BATCH_SIZE, Unit::Count, "Messages per batch"),
        (
            COMMIT_LATENCY_MS,
            Unit::Milliseconds,
            "Time to store one batch in Postgres",
        ),
        (
            END_TO_END_LATENCY_MS,
            Unit::Milliseconds,
            "From the gateway receiving a webhook to the worker committing it",
        ),
        (
            PARTITION_DROP_READERS_BLOCKED_MS,
            Unit::Milliseconds,
            "Time reads waited on an expired partition's retirement: its TRUNCATE and the DROP of the emptied table",
        ),
        (
            PARTITION_DROP_WRITERS_BLOCKED_MS,
            Unit::Milliseconds,
            "Time writes into an expired partition waited on its retirement: the transaction that counts and empties it",
        ),
    ] {
        describe_histogram!(name, unit, help);
        let _ = ::metrics::histogram!(name);
    }
    for (name, help) in [
        (
            CONSUMER_PENDING,
            "Messages in the stream not yet delivered to a worker",
        ),
        (
            CONSUMER_ACK_PENDING,
            "Messages delivered to a worker and not yet acknowledged",
        ),
        (NATS_CONNECTED, "1 while the worker's NATS connection is up"),
        (READY, "1 while GET /health/ready answers 200"),
    ] {
        describe_gauge!(name, help);
        ::metrics::gauge!(name).increment(0.0);
    }
    describe_gauge!(DB_POOL_CONNECTIONS, "Postgres pool connections, by state");
    for state in ["in_use", "idle"] {
        ::metrics::gauge!(DB_POOL_CONNECTIONS, "state" => state).increment(0.0);
    }
    describe_gauge!(
        DEAD_LETTERS_STORED,
        "Rows in dead_letters, by reason (kind); refreshed every LAG_POLL_SECS"
    );
    for kind in Kind::ALL {
        ::metrics::gauge!(DEAD_LETTERS_STORED, "reason" => kind.as_str()).increment(0.0);
    }
}
