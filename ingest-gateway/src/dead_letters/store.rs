//! Runs the dead-letter statements (each whole in the `.sql` file it names). Everything goes
//! through the primary pool (`AppState::db`): a redrive reads and deletes the same rows, and must
//! see what the worker last wrote.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::params::Filters;

/// One row of `dead_letters` (page.sql, one.sql).
#[derive(Debug)]
pub struct DeadLetterRow {
    pub id: i64,
    pub kind: String,
    pub dedup_key: String,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub subject: Option<String>,
    pub stream_seq: Option<i64>,
    pub payload: Option<Vec<u8>>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub times: i32,
    /// The source its bytes last came in through; `None` when not known.
    pub source: Option<String>,
}

impl DeadLetterRow {
    pub fn payload(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }
}

/// Up to `limit` dead letters matching `filters` with an id above `after`, in id order.
pub async fn page(
    db: &PgPool,
    filters: &Filters,
    after: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<DeadLetterRow>> {
    sqlx::query_file_as!(
        DeadLetterRow,
        "src/dead_letters/page.sql",
        filters.pattern.as_deref(),
        filters.since,
        filters.until,
        after,
        limit
    )
    .fetch_all(db)
    .await
}

pub async fn one(db: &PgPool, id: i64) -> sqlx::Result<Option<DeadLetterRow>> {
    sqlx::query_file_as!(DeadLetterRow, "src/dead_letters/one.sql", id)
        .fetch_optional(db)
        .await
}

pub async fn count_matching(db: &PgPool, filters: &Filters) -> sqlx::Result<i64> {
    sqlx::query_file_scalar!(
        "src/dead_letters/count_matching.sql",
        filters.pattern.as_deref(),
        filters.since,
        filters.until
    )
    .fetch_one(db)
    .await
}

/// Returns how many were deleted.
pub async fn delete_matching(db: &PgPool, filters: &Filters) -> sqlx::Result<u64> {
    Ok(sqlx::query_file!(
        "src/dead_letters/delete_matching.sql",
        filters.pattern.as_deref(),
        filters.since,
        filters.until
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// Whether there was such a dead letter.
pub async fn delete_one(db: &PgPool, id: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query_file!("src/dead_letters/delete_one.sql", id)
        .execute(db)
        .await?
        .rows_affected()
        > 0)
}

/// Deletes each `(id, times)` whose row still has that `times`; returns the ids deleted.
pub async fn delete_redriven(db: &PgPool, read: &[(i64, i32)]) -> sqlx::Result<Vec<i64>> {
    if read.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = read.iter().map(|(id, _)| *id).collect();
    let times: Vec<i32> = read.iter().map(|(_, times)| *times).collect();
    sqlx::query_file_scalar!("src/dead_letters/delete_redriven.sql", &ids, &times)
        .fetch_all(db)
        .await
}
