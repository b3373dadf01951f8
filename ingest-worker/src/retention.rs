//! Retention: removes messages whose `ts` is older than `RETENTION_DAYS`, and dead letters last
//! seen longer ago than `DEAD_LETTER_RETENTION_DAYS`; each setting runs its own loop, started
//! when it is set.
//!
//! Messages: a partition of `messages` (partitions.rs) whose whole range has expired is retired
//! whole ([`drop_partition`]): one transaction closes it to its own writers, takes its rows out of
//! `message_ids` and, counted per key in one scan, out of the aggregates, and empties it, so
//! `/stats` stays exact; a second drops the empty table. What is left expired, the older
//! part of the partition that straddles the cutoff and outliers in the default partition, goes in
//! small batches: one big `DELETE ... WHERE ts < cutoff` would hold row locks on millions of
//! rows, bloat WAL in one transaction and stall replicas for minutes, whereas small batches, each
//! its own short transaction with a pause between them, keep every lock brief and let autovacuum
//! and replication keep up.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ingest_shared::read_model::upkeep::{self, Change, Changes, Direction, Moves};
use ingest_shared::retry::{self, Backoff};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metrics::{
    PARTITION_DROP_READERS_BLOCKED_MS, PARTITION_DROP_WRITERS_BLOCKED_MS, PARTITIONS_DROPPED,
    RETENTION_DELETED,
};

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

/// Drops every partition whose whole range has expired, then deletes the expired rows left,
/// batch by batch, until a batch comes back short or `cancel` fires. `deleted` counts both.
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
    if what == Expiring::Messages {
        outcome.deleted += drop_expired_partitions(db, settings, cancel).await?;
        if cancel.is_cancelled() {
            return Ok(outcome);
        }
    }
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

/// A partition of `messages` and its range, as expired_partitions.sql lists it.
#[derive(Debug, Clone)]
struct Partition {
    name: String,
    lower_bound: Option<DateTime<Utc>>,
    upper_bound: DateTime<Utc>,
}

/// One key's count in an expired partition (partition_counts.sql): a sender, a recipient or an
/// hour, whichever is set.
struct PartitionCount {
    from_msisdn: Option<String>,
    to_msisdn: Option<String>,
    hour: Option<DateTime<Utc>>,
    n: i64,
}

/// Retires the expired partitions, oldest first, each in its own transactions; returns how many
/// rows they held. Stops early, with the partition in hand left whole, when `cancel` fires.
async fn drop_expired_partitions(
    db: &PgPool,
    settings: &RetentionSettings,
    cancel: &CancellationToken,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    // Looked at first without any lock, so a pass with nothing to drop takes none.
    let expired: Vec<Partition> = sqlx::query_file_as!(
        Partition,
        "src/sql/expired_partitions.sql",
        settings.days as i32
    )
    .fetch_all(db)
    .await?;
    for _ in expired {
        if cancel.is_cancelled() {
            break;
        }
        match drop_partition(db, settings).await? {
            Some(rows) => deleted += rows,
            None => break,
        }
    }
    Ok(deleted)
}

/// Retires the oldest expired partition; returns how many rows it held, `None` when there was
/// none left (another worker retired it first).
///
/// First transaction, under the partition lock: SHARE on that partition alone (its late writers
/// wait; every other writer and every reader goes on), its ids out of `message_ids`, its rows out
/// of the aggregates (counted per sender, recipient and hour in one scan, applied by the same
/// `upkeep` statement as every batch, in its lock order), then TRUNCATE (ACCESS EXCLUSIVE on the
/// partition for a moment). The rows and their counts leave together at the commit. Second
/// transaction: DROP of the empty table, the only step that locks `messages` itself, bounded by
/// drop_lock_timeout.sql; one that times out leaves an empty partition the next pass retires.
/// Both blocked times are measured, logged and exported.
async fn drop_partition(
    db: &PgPool,
    settings: &RetentionSettings,
) -> Result<Option<u64>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query_file!("src/sql/lock_partitions.sql")
        .fetch_one(&mut *tx)
        .await?;
    // Listed again under the lock: what was seen before may be gone.
    let partition: Option<Partition> = sqlx::query_file_as!(
        Partition,
        "src/sql/expired_partitions.sql",
        settings.days as i32
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(partition) = partition else {
        return Ok(None);
    };
    let writers_from = Instant::now();
    sqlx::query_file!("src/sql/close_partition.sql", partition.name)
        .execute(&mut *tx)
        .await?;
    sqlx::query_file!(
        "src/sql/delete_partition_ids.sql",
        partition.lower_bound,
        partition.upper_bound
    )
    .execute(&mut *tx)
    .await?;
    let counts: Vec<PartitionCount> = sqlx::query_file_as!(
        PartitionCount,
        "src/sql/partition_counts.sql",
        partition.lower_bound,
        partition.upper_bound
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut moves = Moves::new(Direction::Removed);
    for count in counts {
        match count {
            PartitionCount {
                from_msisdn: Some(from),
                n,
                ..
            } => moves.sender(from, n),
            PartitionCount {
                to_msisdn: Some(to),
                n,
                ..
            } => moves.recipient(to, n),
            PartitionCount {
                hour: Some(hour),
                n,
                ..
            } => moves.hour(hour, n),
            PartitionCount { .. } => {}
        }
    }
    let rows = upkeep::apply_moves(&mut tx, &moves).await?;
    let readers_from = Instant::now();
    sqlx::query_file!("src/sql/empty_partition.sql", partition.name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let writers_ms = writers_from.elapsed().as_secs_f64() * 1000.0;
    let mut readers_ms = readers_from.elapsed().as_secs_f64() * 1000.0;

    let mut tx = db.begin().await?;
    sqlx::query_file!("src/sql/drop_lock_timeout.sql")
        .execute(&mut *tx)
        .await?;
    let drop_from = Instant::now();
    let dropped: Result<Option<bool>, _> =
        sqlx::query_file_scalar!("src/sql/drop_partition.sql", partition.name)
            .fetch_one(&mut *tx)
            .await;
    readers_ms += drop_from.elapsed().as_secs_f64() * 1000.0;
    match dropped {
        Ok(Some(true)) => {
            tx.commit().await?;
            metrics::counter!(PARTITIONS_DROPPED).increment(1);
        }
        Ok(None) => {}
        Ok(Some(false)) => {
            tracing::info!(
                partition = partition.name,
                "a late row arrived in the emptied partition; the next pass retires it"
            );
        }
        // Lock timeout: the partition is empty and stays listed as expired.
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("55P03") => {
            tracing::info!(
                partition = partition.name,
                "emptied partition not dropped yet: messages was busy; the next pass drops it"
            );
        }
        Err(error) => return Err(error),
    }
    metrics::counter!(RETENTION_DELETED).increment(rows);
    metrics::histogram!(PARTITION_DROP_READERS_BLOCKED_MS).record(readers_ms);
    metrics::histogram!(PARTITION_DROP_WRITERS_BLOCKED_MS).record(writers_ms);
    tracing::info!(
        partition = partition.name,
        rows,
        readers_blocked_ms = readers_ms.round() as u64,
        partition_writers_blocked_ms = writers_ms.round() as u64,
        "expired partition retired"
    );
    Ok(Some(rows))
}

/// One short transaction: deletes up to a batch of expired messages and takes them out of the
/// read API's aggregates (read_model::upkeep, the same lock order as the worker's insert, so
/// retention and inserts never deadlock and `/stats` stays equal to a direct count). Returns how
/// many were deleted.
async fn delete_batch(db: &PgPool, settings: &RetentionSettings) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    // The whole statement, its parameters and why it is shaped so are described in the file.
    let deleted: Vec<Change> = sqlx::query_file_as!(
        Change,
        "src/sql/delete_expired.sql",
        settings.days as i32,
        i64::from(settings.batch_size)
    )
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
    let deleted = sqlx::query_file!(
        "src/sql/delete_expired_dead_letters.sql",
        settings.days as i32,
        i64::from(settings.batch_size)
    )
    .execute(db)
    .await?
    .rows_affected();
    Ok(deleted)
}
