//! `GET /stats`: read from the aggregates the worker keeps in the same transaction as its inserts,
//! so the cost does not grow with the table.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
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

/// One statement, so every number comes from the same snapshot. The first and last message are
/// one index probe each on `(ts, message_id)`; the top senders are the first entries of
/// `sender_stats_top_idx` (senders whose messages retention removed stay at count 0).
const STATS: &str = "
SELECT t.total_messages, t.senders_count, t.recipients_count,
       (SELECT ts_raw FROM messages ORDER BY ts, message_id LIMIT 1),
       (SELECT ts_raw FROM messages ORDER BY ts DESC, message_id DESC LIMIT 1),
       ARRAY(SELECT from_msisdn FROM sender_stats WHERE count > 0
             ORDER BY count DESC, from_msisdn LIMIT $1),
       ARRAY(SELECT count FROM sender_stats WHERE count > 0
             ORDER BY count DESC, from_msisdn LIMIT $1)
FROM message_totals t";

type StatsRow = (
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Vec<String>,
    Vec<i64>,
);

#[utoipa::path(
    get,
    path = "/stats",
    tag = "read",
    summary = "Totals over every stored message",
    description = "Read-your-writes, as `/messages`: every message answered 200 before this \
        request began is counted (see the `Consistency` response header).",
    params(crate::prefer::PreferHeader),
    responses(
        (status = 200, description = "The statistics", body = Stats, headers(
            ("Consistency" = String, description = "`fresh`, `stale` (the wait timed out or NATS was unreachable) or `skipped` (opted out)"),
            ("Preference-Applied" = String, description = "The `Prefer` preferences applied"),
        )),
        (status = 503, description = "The database is unavailable; retry later", body = crate::error::DetailBody),
    )
)]
#[tracing::instrument(name = "stats", skip_all)]
pub async fn stats(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    let row: Option<StatsRow> = sqlx::query_as(STATS)
        .bind(TOP_SENDERS)
        .fetch_optional(&state.read_db)
        .await
        .map_err(|e| ApiError::from_db("stats", e, state.config.retry_after_secs))?;
    // The migration creates the totals row; its absence means the schema is not there yet.
    let Some((total, senders, recipients, first, last, top_from, top_count)) = row else {
        return Err(ApiError::from_db(
            "stats",
            sqlx::Error::RowNotFound,
            state.config.retry_after_secs,
        ));
    };
    Ok(Json(Stats {
        total_messages: total,
        senders_count: senders,
        recipients_count: recipients,
        messages_per_sender: top_from
            .into_iter()
            .zip(top_count)
            .map(|(from, count)| SenderCount { from, count })
            .collect(),
        first_message_ts: first,
        last_message_ts: last,
    }))
}
