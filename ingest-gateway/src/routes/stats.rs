//! `GET /stats` and `GET /stats/timeseries`: read from the aggregates the worker keeps in the
//! same transaction as its inserts, so the cost does not grow with the table (a series for one
//! sender or recipient counts that key's rows; see `read::series`).

use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::SecondsFormat;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::read;
use crate::read::series::{BucketName, MAX_BUCKETS, SeriesParams};
use crate::replica::ReadDb;
use crate::state::AppState;

pub const TOP_SENDERS: i64 = 10;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(timeseries))
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
pub async fn stats(
    State(state): State<AppState>,
    read_db: ReadDb,
) -> Result<Json<Stats>, ApiError> {
    let db_error = |e| ApiError::from_db("stats", e, state.config.retry_after_secs);
    // The migration creates the totals row; its absence means the schema is not there yet.
    let row = read::stats::fetch(&read_db, TOP_SENDERS)
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

/// One bucket of a series.
#[derive(Debug, Serialize, ToSchema)]
pub struct BucketCount {
    /// The bucket's first instant, UTC.
    #[schema(example = "2025-01-15T10:00:00Z")]
    pub start: String,
    /// Messages with `ts` in the bucket (and inside `since`/`until`); never 0.
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Timeseries {
    pub bucket: BucketName,
    /// The non-empty buckets, by `start` ascending. A bucket with no message is left out.
    pub data: Vec<BucketCount>,
    /// Present (and true) only when there were more than 10,000 non-empty buckets: `data` holds
    /// the first 10,000, and `next_since` says where the rest begins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// With `truncated`: the same request with `since` set to this returns the next buckets.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "2026-02-01T00:00:00Z")]
    pub next_since: Option<String>,
}

#[utoipa::path(
    get,
    path = "/stats/timeseries",
    tag = "read",
    security((), ("bearer" = [])),
    summary = "Messages per UTC hour or day",
    description = "Exact counts per bucket (`date_trunc(bucket, ts, 'UTC')`), ascending, \
        non-empty buckets only. A bucket cut by `since` or `until` counts only its messages \
        inside the range. Without `from`/`to` the series adds up the kept hour and day \
        aggregates (and counts only the rows of the partial hours at the edges); with `from` \
        or `to` it counts that sender's or recipient's messages in the range through its index, \
        so its cost grows with them. At most 10,000 buckets per answer (`truncated`, \
        `next_since`). Read-your-writes, as `/messages` (see the `Consistency` header).",
    params(SeriesParams),
    responses(
        (status = 200, description = "The series", body = Timeseries, headers(
            ("Consistency" = String, description = "`fresh`, `stale` (the wait timed out or NATS was unreachable) or `skipped` (opted out)"),
        )),
        (status = 422, description = "A query parameter is invalid (`bucket` missing or not `hour`/`day`, a malformed filter)", body = crate::error::ValidationErrorBody),
        (status = 401, description = "`READ_TOKENS` is set and no valid bearer token was sent", body = crate::error::DetailBody),
        (status = 503, description = "The database is unavailable; retry later", body = crate::error::DetailBody),
    )
)]
#[tracing::instrument(name = "timeseries", skip_all)]
pub async fn timeseries(
    State(state): State<AppState>,
    read_db: ReadDb,
    RawQuery(raw): RawQuery,
) -> Result<Json<Timeseries>, ApiError> {
    let params = SeriesParams::parse(raw.as_deref()).map_err(ApiError::Validation)?;
    let mut rows = read::series::fetch(&read_db, &params)
        .await
        .map_err(|e| ApiError::from_db("timeseries", e, state.config.retry_after_secs))?;
    let utc = |row: &read::series::BucketRow| row.start.to_rfc3339_opts(SecondsFormat::Secs, true);
    // The statement returns one bucket past the cap when there are more.
    let next_since = rows.get(MAX_BUCKETS as usize).map(utc);
    rows.truncate(MAX_BUCKETS as usize);
    Ok(Json(Timeseries {
        bucket: params.unit.into(),
        data: rows
            .iter()
            .map(|row| BucketCount {
                start: utc(row),
                count: row.count,
            })
            .collect(),
        truncated: next_since.as_ref().map(|_| true),
        next_since,
    }))
}
