//! `GET /messages`: stored messages, filtered, in `(ts, message_id)` order, paginated by offset
//! or by an opaque keyset cursor. The parameters and the statements are in `crate::read`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::prefer::{Count, PREFERENCE_APPLIED, Preferences};
use crate::read::cursor::Cursor;
use crate::read::page;
use crate::read::params::{MessagesQuery, Params};
use crate::replica::ReadDb;
use crate::state::AppState;

/// Up to this many matches `total` is counted; past it, estimated (the contract's "Counting").
pub const EXACT_COUNT_BOUND: i64 = 10_000;
/// The bound under `Prefer: count=estimated`.
pub const ESTIMATED_COUNT_BOUND: i64 = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// One stored message, exactly as it was sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageItem {
    #[schema(example = "m1")]
    pub message_id: String,
    #[schema(example = "+919876543210")]
    pub from: String,
    #[schema(example = "+14155550100")]
    pub to: String,
    /// The timestamp byte for byte as the sender wrote it.
    #[schema(example = "2025-01-15T10:00:00Z")]
    pub ts: String,
    pub text: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagesPage {
    pub data: Vec<MessageItem>,
    /// Every row matching the filters, whatever `limit`, `offset` and `cursor` say. Exact, unless
    /// `total_estimated` is present.
    pub total: i64,
    /// Present (and true) only when `total` is Postgres's estimate: the filters matched more
    /// rows than the exact bound (10,000; 1,000 with `Prefer: count=estimated`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_estimated: Option<bool>,
    pub limit: i64,
    pub offset: i64,
    /// Pass as `cursor` to get the rows after this page; null on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/messages",
    tag = "read",
    security((), ("bearer" = [])),
    summary = "List stored messages",
    description = "Messages in `ts ASC, message_id ASC` order. Filters combine with AND. \
        Paginate with `limit`/`offset`, or with `cursor` (keyset: the same cost on every page, \
        and correct while rows are being inserted). Read-your-writes: the answer includes every \
        message any gateway answered 200 for before this request began (see the `Consistency` \
        response header). `total` is exact up to 10,000 matches (1,000 with \
        `Prefer: count=estimated`, unbounded with `Prefer: count=exact`); past that it is \
        Postgres's estimate and `total_estimated` is true.",
    params(MessagesQuery, crate::prefer::PreferHeader),
    responses(
        (status = 200, description = "A page of messages", body = MessagesPage, headers(
            ("Consistency" = String, description = "`fresh`, `stale` (the wait timed out or NATS was unreachable) or `skipped` (opted out)"),
            ("Preference-Applied" = String, description = "The `Prefer` preferences applied"),
        )),
        (status = 422, description = "A query parameter is invalid", body = crate::error::ValidationErrorBody),
        (status = 401, description = "`READ_TOKENS` is set and no valid bearer token was sent", body = crate::error::DetailBody),
        (status = 503, description = "The database is unavailable; retry later", body = crate::error::DetailBody),
    )
)]
#[tracing::instrument(name = "messages", skip_all)]
pub async fn list(
    State(state): State<AppState>,
    read_db: ReadDb,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref()).map_err(ApiError::Validation)?;
    let count = Preferences::of(&headers).count;
    let bound = match count {
        Some(Count::Exact) => None,
        Some(Count::Estimated) => Some(ESTIMATED_COUNT_BOUND),
        None => Some(EXACT_COUNT_BOUND),
    };
    let fetched = page::fetch(&read_db, &params, bound)
        .await
        .map_err(|e| ApiError::from_db("messages", e, state.config.retry_after_secs))?;

    let mut data = Vec::with_capacity(fetched.rows.len());
    let mut last_ts = None;
    for row in fetched.rows {
        // The one row of an empty page carries the total and no message.
        let (Some(message_id), Some(from), Some(to), Some(ts), Some(ts_raw)) = (
            row.message_id,
            row.from_msisdn,
            row.to_msisdn,
            row.ts,
            row.ts_raw,
        ) else {
            continue;
        };
        if (data.len() as i64) < params.limit {
            last_ts = Some(ts);
        }
        data.push(MessageItem {
            message_id,
            from,
            to,
            ts: ts_raw,
            text: row.text,
        });
    }
    let next_cursor = if data.len() as i64 > params.limit {
        data.truncate(params.limit as usize);
        data.last().zip(last_ts).map(|(last, ts)| {
            Cursor {
                ts,
                message_id: last.message_id.clone(),
            }
            .encode()
        })
    } else {
        None
    };
    let mut response = Json(MessagesPage {
        data,
        total: fetched.total,
        total_estimated: fetched.estimated.then_some(true),
        limit: params.limit,
        offset: params.offset,
        next_cursor,
    })
    .into_response();
    if let Some(count) = count {
        response.headers_mut().append(
            PREFERENCE_APPLIED.clone(),
            HeaderValue::from_static(count.applied()),
        );
    }
    Ok(response)
}
