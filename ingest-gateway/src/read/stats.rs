//! Runs the statement of `GET /stats`.

use sqlx::PgPool;

#[derive(Debug)]
pub struct StatsRow {
    pub total_messages: i64,
    pub senders_count: i64,
    pub recipients_count: i64,
    pub first_message_ts: Option<String>,
    pub last_message_ts: Option<String>,
    pub top_senders: Vec<String>,
    pub top_sender_counts: Vec<i64>,
}

/// `None` when the totals row is missing: the migration creates it, so the schema is not there
/// yet.
pub async fn fetch(db: &PgPool, top_senders: i64) -> sqlx::Result<Option<StatsRow>> {
    sqlx::query_file_as!(StatsRow, "src/read/stats.sql", top_senders)
        .fetch_optional(db)
        .await
}
