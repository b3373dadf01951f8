//! Retention: deletes messages whose `ts` is older than `RETENTION_DAYS`, and dead letters last
//! seen longer ago than `DEAD_LETTER_RETENTION_DAYS`, in small batches; each setting runs its own
//! loop, started when it is set.
//!
//! One big `DELETE ... WHERE ts < cutoff` on a large table holds row locks on millions of rows,
//! bloats WAL in one transaction and stalls replicas for minutes. Small batches, each its own
//! short transaction with a pause between them, keep every lock brief and let autovacuum and
//! replication keep up. At billions of rows, dropping monthly partitions is cheaper still (see
//! docs/scaling.md); this is the path that needs no schema change.

use std::time::Duration;

use ingest_shared::read_model::upkeep::{self, Change, Changes, Direction};
use ingest_shared::retry::{self, Backoff};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metrics::RETENTION_DELETED;

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

/// The whole statement, its parameters and why it is shaped so are described in the file.
const DELETE_EXPIRED: &str = include_str!("sql/delete_expired.sql");
/// The same for dead letters.
const DELETE_EXPIRED_DEAD_LETTERS: &str = include_str!("sql/delete_expired_dead_letters.sql");

/// What a retention loop deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiring {
    /// Messages by `ts` (`RETENTION_DAYS`), taken out of the aggregates too.
    Messages,
    /// Dead letters by `last_seen` (`DEAD_LETTER_RETENTION_DAYS`).
    DeadLetters,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassOutcome {
    pub deleted: u64,
    pub batches: u64,
}

/// Deletes every expired message, batch by batch, until a batch comes back short or `cancel`
/// fires.
pub async fn run_pass(
    db: &PgPool,
    settings: &RetentionSettings,
    cancel: &CancellationToken,
) -> Result<PassOutcome, sqlx::Error> {
    pass(db, settings, Expiring::Messages, cancel).await
}

/// The same for dead letters.
pub async fn run_dead_letter_pass(
    db: &PgPool,
    settings: &RetentionSettings,
    cancel: &CancellationToken,
) -> Result<PassOutcome, sqlx::Error> {
    pass(db, settings, Expiring::DeadLetters, cancel).await
}

/// Deletes batch after batch of `what` until one comes back short or `cancel` fires. The
/// messages' metric is counted per batch, so an interrupted pass still reports what it removed.
async fn pass(
    db: &PgPool,
    settings: &RetentionSettings,
    what: Expiring,
    cancel: &CancellationToken,
) -> Result<PassOutcome, sqlx::Error> {
    let mut outcome = PassOutcome::default();
    loop {
        let deleted = match what {
            Expiring::Messages => {
                let deleted = delete_batch(db, settings).await?;
                metrics::counter!(RETENTION_DELETED).increment(deleted);
                deleted
            }
            Expiring::DeadLetters => delete_dead_letter_batch(db, settings).await?,
        };
        outcome.batches += 1;
        outcome.deleted += deleted;
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
/// down, schema not migrated yet) is retried on the shared schedule, never waiting longer than
/// an interval, rather than after a whole interval.
pub async fn run(
    db: PgPool,
    settings: RetentionSettings,
    what: Expiring,
    cancel: CancellationToken,
) {
    tracing::info!(
        ?what,
        days = settings.days,
        batch_size = settings.batch_size,
        interval_s = settings.interval.as_secs(),
        "retention enabled"
    );
    while !cancel.is_cancelled() {
        let Some(outcome) = retry::until_ok(
            Backoff::at_most(settings.interval),
            &cancel,
            || async {
                pass(&db, &settings, what, &cancel).await
            },
            |error, delay| {
                tracing::warn!(%error, ?what, retry_in_ms = delay.as_millis() as u64, "retention pass failed");
            },
        )
        .await
        else {
            break;
        };
        if outcome.deleted > 0 {
            tracing::info!(
                deleted = outcome.deleted,
                batches = outcome.batches,
                days = settings.days,
                ?what,
                "retention pass deleted expired rows"
            );
        }
        if Backoff::sleep(settings.interval, &cancel).await.is_err() {
            break;
        }
    }
}

/// One short transaction: deletes up to a batch of expired messages and takes them out of the
/// read API's aggregates (read_model::upkeep, the same lock order as the worker's insert, so
/// retention and inserts never deadlock and `/stats` stays equal to a direct count). Returns how
/// many were deleted.
async fn delete_batch(db: &PgPool, settings: &RetentionSettings) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let deleted: Vec<Change> = sqlx::query_as(DELETE_EXPIRED)
        .bind(settings.days as i32)
        .bind(i64::from(settings.batch_size))
        .fetch_all(&mut *tx)
        .await?;
    let deleted: Changes = deleted.into_iter().collect();
    upkeep::apply(&mut tx, &deleted, Direction::Removed).await?;
    tx.commit().await?;
    Ok(deleted.len() as u64)
}

/// One short transaction: deletes up to a batch of dead letters last seen before the cutoff.
async fn delete_dead_letter_batch(
    db: &PgPool,
    settings: &RetentionSettings,
) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(DELETE_EXPIRED_DEAD_LETTERS)
        .bind(settings.days as i32)
        .bind(i64::from(settings.batch_size))
        .execute(db)
        .await?
        .rows_affected();
    Ok(deleted)
}
