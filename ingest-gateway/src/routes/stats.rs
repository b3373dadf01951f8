//! `GET /stats`: read from the aggregates the worker keeps in the same transaction as its inserts,
//! so the cost does not grow with the table.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::read;
use crate::state::AppState;

pub const TOP_SENDERS: i64 = 10;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stats))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SenderCount {
    #[schema(example = "+919876543210")]
    pub from: String,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub total_messages: i64,
    /// Distinct senders.
    pub senders_count: i64,
    /// Distinct recipients.
    pub recipients_count: i64,
    /// The 10 busiest senders, by count descending then `from` ascending.
    pub messages_per_sender: Vec<SenderCount>,
    /// The earliest `ts` (as sent); null when there are no messages.
    pub first_message_ts: Option<String>,
    /// The latest `ts` (as sent); null when there are no messages.
    pub last_message_ts: Option<String>,
}

#[utoipa::path(
    get,
    path = "/stats",
    tag = "read",
    security((), ("bearer" = [])),
    summary = "Totals over every stored message",
    description = "Read-your-writes, as `/messages`: every message answered 200 before this \
        request began is counted (see the `Consistency` response header).",
    params(crate::prefer::PreferHeader),
    responses(
        (status = 200, description = "The statistics", body = Stats, headers(
            ("Consistency" = String, description = "`fresh`, `stale` (the wait timed out or NATS was unreachable) or `skipped` (opted out)"),
            ("Preference-Applied" = String, description = "The `Prefer` preferences applied"),
        )),
        (status = 401, description = "`READ_TOKENS` is set and no valid bearer token was sent", body = crate::error::DetailBody),
        (status = 503, description = "The database is unavailable; retry later", body = crate::error::DetailBody),
    )
)]
#[tracing::instrument(name = "stats", skip_all)]
pub async fn stats(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    let db_error = |e| ApiError::from_db("stats", e, state.config.retry_after_secs);
    // The migration creates the totals row; its absence means the schema is not there yet.
    let row = read::stats::fetch(&state.read_db, TOP_SENDERS)
        .await
        .map_err(db_error)?
        .ok_or_else(|| db_error(sqlx::Error::RowNotFound))?;
    Ok(Json(Stats {
        total_messages: row.total_messages,
        senders_count: row.senders_count,
        recipients_count: row.recipients_count,
        messages_per_sender: row
            .top_senders
            .into_iter()
            .zip(row.top_sender_counts)
            .map(|(from, count)| SenderCount { from, count })
            .collect(),
        first_message_ts: row.first_message_ts,
        last_message_ts: row.last_message_ts,
    }))
}
