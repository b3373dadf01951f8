//! Retention: deletes messages whose `ts` is older than `RETENTION_DAYS`, in small batches.
//!
//! One big `DELETE ... WHERE ts < cutoff` on a large table holds row locks on millions of rows,
//! bloats WAL in one transaction and stalls replicas for minutes. Small batches, each its own
//! short transaction with a pause between them, keep every lock brief and let autovacuum and
//! replication keep up. At billions of rows, dropping monthly partitions is cheaper still (see
//! docs/scaling.md); this is the path that needs no schema change.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    pub days: u32,
    /// Most rows one DELETE removes (one short transaction).
    pub batch_size: u32,
    /// Pause between two batches of one pass.
    pub batch_pause: Duration,
    /// Time between the end of a pass and the start of the next.
    pub interval: Duration,
}

/// Oldest first, so an interrupted pass has removed the most expired rows. `ORDER BY ts` also
/// walks the `(ts, message_id)` index instead of re-scanning the dead tuples earlier batches
/// left at the head of the heap. `SKIP LOCKED` lets several workers run passes at once without
/// queueing on each other's rows: each takes a disjoint batch. `ctid IN (...)` is planned as a
/// TID scan, so the outer DELETE touches exactly the chosen rows.
///
/// The same statement takes the deleted rows out of the read API's aggregates, exactly as the
/// insert adds them and in the same lock order (aggregates.rs), so retention and inserts never
/// deadlock and `/stats` stays equal to a direct count.
const DELETE_BATCH: &str = concat!(
    "
WITH deleted AS (
    DELETE FROM messages
    WHERE ctid IN (
        SELECT ctid FROM messages
        WHERE ts < now() - make_interval(days => $1)
        ORDER BY ts
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
    RETURNING from_msisdn, to_msisdn, ts
),
",
    apply_to_aggregates!("deleted", "-1")
);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassOutcome {
    pub deleted: u64,
    pub batches: u64,
}

/// Deletes every expired row, batch by batch, until a batch comes back short or `cancel` fires.
/// The metric is counted per batch, so an interrupted pass still reports what it removed.
pub async fn run_pass(
    db: &PgPool,
    settings: &RetentionSettings,
    cancel: &CancellationToken,
) -> Result<PassOutcome, sqlx::Error> {
    let mut outcome = PassOutcome::default();
    loop {
        let deleted: i64 = sqlx::query_scalar(DELETE_BATCH)
            .bind(settings.days as i32)
            .bind(i64::from(settings.batch_size))
            .fetch_one(db)
            .await?;
        let deleted = deleted as u64;
        outcome.batches += 1;
        outcome.deleted += deleted;
        metrics::counter!("worker_retention_deleted_total").increment(deleted);
        if deleted < u64::from(settings.batch_size) {
            return Ok(outcome);
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(outcome),
            () = tokio::time::sleep(settings.batch_pause) => {}
        }
    }
}

/// Runs a pass at start and then every `interval` until `cancel` fires. A failed pass (Postgres
/// down, schema not migrated yet) is retried with backoff rather than after a whole interval.
pub async fn run(db: PgPool, settings: RetentionSettings, cancel: CancellationToken) {
    tracing::info!(
        days = settings.days,
        batch_size = settings.batch_size,
        interval_s = settings.interval.as_secs(),
        "retention enabled"
    );
    let mut delays = ingest_shared::nats::backoff_delays();
    while !cancel.is_cancelled() {
        let wait = match run_pass(&db, &settings, &cancel).await {
            Ok(outcome) => {
                delays = ingest_shared::nats::backoff_delays();
                if outcome.deleted > 0 {
                    tracing::info!(
                        deleted = outcome.deleted,
                        batches = outcome.batches,
                        days = settings.days,
                        "retention pass deleted expired messages"
                    );
                }
                settings.interval
            }
            Err(error) => {
                let delay = delays
                    .next()
                    .unwrap_or(Duration::from_secs(5))
                    .min(settings.interval);
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "retention pass failed");
                delay
            }
        };
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
