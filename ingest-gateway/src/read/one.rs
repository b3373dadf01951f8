//! Runs the statement of `GET /messages/{message_id}`.

use sqlx::PgPool;

/// One stored message with its payload.
#[derive(Debug)]
pub struct OneRow {
    pub message_id: String,
    pub from_msisdn: String,
    pub to_msisdn: String,
    pub ts_raw: String,
    pub text: Option<String>,
    pub msg_type: Option<String>,
    pub source: Option<String>,
    pub raw: Option<sqlx::types::Json<serde_json::Value>>,
}

/// The message stored under `message_id`, if any.
pub async fn fetch(db: &PgPool, message_id: &str) -> sqlx::Result<Option<OneRow>> {
    sqlx::query_file_as!(OneRow, "src/read/one_message.sql", message_id)
        .fetch_optional(db)
        .await
}
