//! `GET /messages`: stored messages, filtered, in `(ts, message_id)` order, paginated by offset
//! or by an opaque keyset cursor, or every match streamed as NDJSON or CSV (export.rs); and
//! `GET /messages/{message_id}`: one message with its payload. The parameters and the statements
//! are in `crate::read`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
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
use crate::read::params::Params;
use crate::replica::ReadDb;
use crate::state::AppState;

/// Up to this many matches `total` is counted; past it, estimated (the contract's "Counting").
pub const EXACT_COUNT_BOUND: i64 = 10_000;
/// The bound under `Prefer: count=estimated`.
pub const ESTIMATED_COUNT_BOUND: i64 = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one))
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
    /// What kind of message the sender said it was (WhatsApp's `type`: `text`, `image`, ...);
    /// absent when the payload named none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "text")]
    pub msg_type: Option<String>,
    /// The id of the source the message came in through (`default` for `/webhook`, `whatsapp`
    /// for `/webhook/whatsapp`); null when not known (stored before sources were recorded).
    /// Present only when the gateway has `SOURCES_FILE` set: otherwise the item keeps the shape
    /// it had before sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "default")]
    pub source: Option<Option<String>>,
}

/// One stored message and the payload it came from.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    #[serde(flatten)]
    pub item: MessageItem,
    /// The payload the message came from, as JSON: for `/webhook` the body, for WhatsApp that
    /// message's object with the `metadata` and `contacts` it came with. Null for messages
    /// stored without it.
    #[schema(value_type = Option<Object>)]
    pub raw: Option<serde_json::Value>,
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
        and correct while rows are being inserted). With `format=ndjson` or `format=csv`, every \
        match is streamed as a download (`Content-Disposition: attachment`) in the same order: \
        NDJSON lines are the page's items (with `raw` under `include=raw`); CSV has a header \
        row and a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a \
        leading `'` (except `+` then digits only: the `from` and `to` numbers). At most \
        `MAX_CONCURRENT_EXPORTS` exports at once (503 with `Retry-After` past it). Read-your-writes: the answer includes every \
        message any gateway answered 200 for before this request began (see the `Consistency` \
        response header). `total` is exact up to 10,000 matches (1,000 with \
        `Prefer: count=estimated`, unbounded with `Prefer: count=exact`); past that it is \
        Postgres's estimate and `total_estimated` is true.",
    params(Params, crate::prefer::PreferHeader),
    responses(
        (status = 200, description = "A page of messages (`format=json`), or every match (`format=ndjson`: one item per line; `format=csv`)", content(
            (MessagesPage = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        ), headers(
            ("Consistency" = String, description = "`fresh`, `stale` (the wait timed out or NATS was unreachable) or `skipped` (opted out)"),
            ("Preference-Applied" = String, description = "The `Prefer` preferences applied"),
            ("Content-Disposition" = String, description = "NDJSON and CSV: `attachment; filename=\"messages-<since>-<until>.<format>\"`"),
        )),
        (status = 422, description = "A query parameter is invalid", body = crate::error::ValidationErrorBody),
        (status = 401, description = "`READ_TOKENS` is set and no valid bearer token was sent", body = crate::error::DetailBody),
        (status = 503, description = "The database is unavailable, or `MAX_CONCURRENT_EXPORTS` exports are in progress; retry later", body = crate::error::DetailBody),
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
    if params.format.is_streamed() {
        return super::export::respond(&state, read_db.0, params);
    }
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
            msg_type: row.msg_type,
            source: state.config.sources_configured().then_some(row.source),
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

#[utoipa::path(
    get,
    path = "/messages/{message_id}",
    tag = "read",
    security((), ("bearer" = [])),
    summary = "One stored message, with its payload",
    description = "The message stored under `message_id` (percent-encoded in the path), with \
        the payload it came from in `raw`. Read-your-writes as for `GET /messages`.",
    params(
        ("message_id" = String, Path, description = "The message's id, as the sender sent it", example = "m1"),
        crate::prefer::PreferHeader,
    ),
    responses(
        (status = 200, description = "The message", body = Message, headers(
            ("Consistency" = String, description = "`fresh`, `stale` (the wait timed out or NATS was unreachable) or `skipped` (opted out)"),
        )),
        (status = 404, description = "No message has this id", body = crate::error::DetailBody),
        (status = 401, description = "`READ_TOKENS` is set and no valid bearer token was sent", body = crate::error::DetailBody),
        (status = 503, description = "The database is unavailable; retry later", body = crate::error::DetailBody),
    )
)]
#[tracing::instrument(name = "message", skip_all)]
pub async fn one(
    State(state): State<AppState>,
    read_db: ReadDb,
    message_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Message>, ApiError> {
    // An id that does not decode to UTF-8, or holds NUL (which Postgres text cannot), names no
    // stored message.
    let Ok(Path(message_id)) = message_id else {
        return Err(ApiError::MessageNotFound);
    };
    if message_id.contains('\0') {
        return Err(ApiError::MessageNotFound);
    }
    let row = crate::read::one::fetch(&read_db, &message_id)
        .await
        .map_err(|e| ApiError::from_db("message", e, state.config.retry_after_secs))?
        .ok_or(ApiError::MessageNotFound)?;
    Ok(Json(Message {
        item: MessageItem {
            message_id: row.message_id,
            from: row.from_msisdn,
            to: row.to_msisdn,
            ts: row.ts_raw,
            text: row.text,
            msg_type: row.msg_type,
            source: state.config.sources_configured().then_some(row.source),
        },
        raw: row.raw.map(|r| r.0),
    }))
}
