//! `/admin/dead-letters`: what the worker could never store, for triage (list, one with its raw
//! bytes), redrive (one, or in bulk by filter) and deletion. Behind `ADMIN_TOKENS` (access.rs,
//! wired in lib.rs). The parameters, statements and the redrive itself are in
//! `crate::dead_letters`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use ingest_shared::message::{FieldError, Loc, ValidationErrors};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::dead_letters::params::{self, DeleteParams, ListParams, RedriveParams};
use crate::dead_letters::redrive;
use crate::dead_letters::store::{self, DeadLetterRow};
use crate::error::{ApiError, DetailBody, ValidationErrorBody};
use crate::observe::RequestId;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, delete_matching))
        .routes(routes!(get_one, delete_one))
        .routes(routes!(redrive_one))
        .routes(routes!(redrive_matching))
}

/// One dead letter, without its bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterItem {
    #[schema(example = 17)]
    pub id: i64,
    /// `invalid` (the payload is not a valid message), `refused` (Postgres refused the row) or
    /// `max_deliveries` (delivered `MAX_DELIVER` times, never acknowledged by a worker).
    #[schema(example = "refused")]
    pub kind: String,
    #[schema(example = "refused by postgres: new row violates check constraint")]
    pub reason: Option<String>,
    /// The `X-Request-Id` of the request that delivered these bytes last.
    pub request_id: Option<String>,
    /// The message id, when the bytes parse as a message.
    #[schema(example = "m1")]
    pub message_id: Option<String>,
    pub subject: Option<String>,
    /// The stream sequence of the last delivery that failed.
    pub stream_seq: Option<i64>,
    /// Size of the payload in bytes.
    pub size: i64,
    /// When these bytes were first dead-lettered.
    #[schema(example = "2025-01-15T10:00:00.123456Z")]
    pub first_seen: String,
    /// When these bytes were last dead-lettered.
    #[schema(example = "2025-01-15T10:05:00.654321Z")]
    pub last_seen: String,
    /// How often these bytes were dead-lettered.
    #[schema(example = 1)]
    pub times: i32,
    /// The id of the source these bytes last came in through (as a message's `source`); null
    /// when not known (written before sources were recorded, or published by an older gateway).
    /// Present only when the gateway has `SOURCES_FILE` set, as on `/messages`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "default")]
    pub source: Option<Option<String>>,
}

/// One dead letter with its bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterDetail {
    #[serde(flatten)]
    pub item: DeadLetterItem,
    /// The payload exactly as received, base64 (standard alphabet, padded).
    pub payload_base64: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLettersPage {
    pub data: Vec<DeadLetterItem>,
    pub limit: i64,
    /// Pass as `cursor` to get the dead letters after this page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedrivenOne {
    pub id: i64,
    /// The message id, when the bytes parse as a message (the `Nats-Msg-Id` it was sent with).
    pub message_id: Option<String>,
    /// Whether the dead letter was deleted. False only when the worker dead-lettered the same
    /// bytes again while the redrive ran: the row then stays, with `times` increased.
    pub removed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedrivenMany {
    /// Published and acknowledged by JetStream.
    pub redriven: u64,
    /// Inside JetStream's duplicate window (`NATS_DUPLICATE_WINDOW_SECS`): not published, kept.
    pub deferred: u64,
    /// Not acknowledged by JetStream: kept.
    pub failed: u64,
    /// Dead letters still matching the filters; call again until 0.
    pub remaining: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: u64,
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn item(state: &AppState, row: &DeadLetterRow) -> DeadLetterItem {
    DeadLetterItem {
        id: row.id,
        kind: row.kind.clone(),
        reason: row.reason.clone(),
        request_id: row.request_id.clone(),
        message_id: redrive::message_id(row.payload()),
        subject: row.subject.clone(),
        stream_seq: row.stream_seq,
        size: row.payload().len() as i64,
        first_seen: timestamp(row.first_seen),
        last_seen: timestamp(row.last_seen),
        times: row.times,
        source: state
            .config
            .sources_configured()
            .then(|| row.source.clone()),
    }
}

fn db_error(state: &AppState, error: sqlx::Error) -> ApiError {
    ApiError::from_db("dead letters", error, state.config.retry_after_secs)
}

/// The `{id}` of the path, or a 422 naming it.
fn path_id(path: Result<Path<String>, PathRejection>) -> Result<i64, ApiError> {
    match path {
        Ok(Path(raw)) => params::parse_id(&raw).map_err(ApiError::Validation),
        Err(_) => Err(ApiError::Validation(ValidationErrors(vec![FieldError {
            loc: vec![Loc::Key("path".into()), Loc::Key("id".into())],
            msg: "Input should be a valid integer".into(),
            kind: "int_parsing".into(),
        }]))),
    }
}

#[utoipa::path(
    get,
    path = "/admin/dead-letters",
    tag = "admin",
    security(("bearer" = [])),
    summary = "List dead letters",
    description = "Messages the workers could never store, in id order, paginated by `cursor`. \
        Filters combine with AND; `since`/`until` apply to `last_seen`.",
    params(ListParams),
    responses(
        (status = 200, description = "A page of dead letters", body = DeadLettersPage),
        (status = 401, description = "No valid admin bearer token", body = DetailBody),
        (status = 404, description = "`ADMIN_TOKENS` is not set: no admin API", body = DetailBody),
        (status = 422, description = "A query parameter is invalid", body = ValidationErrorBody),
        (status = 503, description = "The database is unavailable; retry later", body = DetailBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DeadLettersPage>, ApiError> {
    let params = ListParams::parse(raw.as_deref()).map_err(ApiError::Validation)?;
    // One more than asked: whether it comes back says whether there is a next page.
    let rows = store::page(&state.db, &params.filters, params.after, params.limit + 1)
        .await
        .map_err(|e| db_error(&state, e))?;
    let more = rows.len() as i64 > params.limit;
    let data: Vec<_> = rows
        .iter()
        .take(params.limit as usize)
        .map(|row| item(&state, row))
        .collect();
    let next_cursor = more
        .then(|| data.last().map(|last| params::encode_cursor(last.id)))
        .flatten();
    Ok(Json(DeadLettersPage {
        data,
        limit: params.limit,
        next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/admin/dead-letters/{id}",
    tag = "admin",
    security(("bearer" = [])),
    summary = "One dead letter, with its raw bytes",
    params(("id" = i64, Path, minimum = 1, description = "The dead letter's id")),
    responses(
        (status = 200, description = "The dead letter", body = DeadLetterDetail),
        (status = 401, description = "No valid admin bearer token", body = DetailBody),
        (status = 404, description = "No such dead letter, or `ADMIN_TOKENS` is not set", body = DetailBody),
        (status = 422, description = "The id is not a positive integer", body = ValidationErrorBody),
        (status = 503, description = "The database is unavailable; retry later", body = DetailBody),
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<DeadLetterDetail>, ApiError> {
    let id = path_id(path)?;
    let row = store::one(&state.db, id)
        .await
        .map_err(|e| db_error(&state, e))?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(DeadLetterDetail {
        item: item(&state, &row),
        payload_base64: base64::engine::general_purpose::STANDARD.encode(row.payload()),
    }))
}

#[utoipa::path(
    post,
    path = "/admin/dead-letters/{id}/redrive",
    tag = "admin",
    security(("bearer" = [])),
    summary = "Redrive one dead letter",
    description = "Publishes the dead letter's raw bytes to JetStream again (`Nats-Msg-Id` = its \
        message id when the bytes are a message, else `dead-letter-<sha256>`); the workers store \
        it exactly once, or dead-letter it again if it still fails. The dead letter is deleted \
        after JetStream's PubAck, unless the same bytes were dead-lettered again meanwhile. \
        Inside the stream's duplicate window JetStream would deliver nothing: 409 with \
        `Retry-After`, and the dead letter is kept.",
    params(("id" = i64, Path, minimum = 1, description = "The dead letter's id")),
    responses(
        (status = 200, description = "Published and acknowledged", body = RedrivenOne),
        (status = 401, description = "No valid admin bearer token", body = DetailBody),
        (status = 404, description = "No such dead letter, or `ADMIN_TOKENS` is not set", body = DetailBody),
        (status = 409, description = "The message id is inside the duplicate window; nothing was published", body = DetailBody,
            headers(("Retry-After" = u64, description = "seconds: the duplicate window"))),
        (status = 422, description = "The id is not a positive integer", body = ValidationErrorBody),
        (status = 503, description = "JetStream or the database is unavailable; retry", body = DetailBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    )
)]
pub async fn redrive_one(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RedrivenOne>, ApiError> {
    let id = path_id(path)?;
    let row = store::one(&state.db, id)
        .await
        .map_err(|e| db_error(&state, e))?
        .ok_or(ApiError::NotFound)?;
    let removed = redrive::one(&state, &request_id.0, &row).await?;
    Ok(Json(RedrivenOne {
        id,
        message_id: redrive::message_id(row.payload()),
        removed,
    }))
}

#[utoipa::path(
    post,
    path = "/admin/dead-letters/redrive",
    tag = "admin",
    security(("bearer" = [])),
    summary = "Redrive the dead letters matching the filters",
    description = "Redrives up to `limit` matching dead letters in id order, as the single \
        redrive does. Call again while `remaining` is above 0; `deferred` ones are inside the \
        duplicate window and succeed on a later call. Pass `until` = the time the loop started \
        so that payloads failing again (which come back with a newer `last_seen`) end the loop.",
    params(RedriveParams),
    responses(
        (status = 200, description = "What this call did", body = RedrivenMany),
        (status = 401, description = "No valid admin bearer token", body = DetailBody),
        (status = 404, description = "`ADMIN_TOKENS` is not set: no admin API", body = DetailBody),
        (status = 422, description = "A query parameter is invalid", body = ValidationErrorBody),
        (status = 503, description = "JetStream or the database is unavailable; retry", body = DetailBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    )
)]
pub async fn redrive_matching(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RedrivenMany>, ApiError> {
    let params = RedriveParams::parse(raw.as_deref()).map_err(ApiError::Validation)?;
    let counts = redrive::bulk(&state, &request_id.0, &params).await?;
    Ok(Json(RedrivenMany {
        redriven: counts.redriven,
        deferred: counts.deferred,
        failed: counts.failed,
        remaining: counts.remaining,
    }))
}

#[utoipa::path(
    delete,
    path = "/admin/dead-letters/{id}",
    tag = "admin",
    security(("bearer" = [])),
    summary = "Delete one dead letter",
    params(("id" = i64, Path, minimum = 1, description = "The dead letter's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid admin bearer token", body = DetailBody),
        (status = 404, description = "No such dead letter, or `ADMIN_TOKENS` is not set", body = DetailBody),
        (status = 422, description = "The id is not a positive integer", body = ValidationErrorBody),
        (status = 503, description = "The database is unavailable; retry later", body = DetailBody),
    )
)]
pub async fn delete_one(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(path)?;
    let deleted = store::delete_one(&state.db, id)
        .await
        .map_err(|e| db_error(&state, e))?;
    if !deleted {
        return Err(ApiError::NotFound);
    }
    tracing::info!(dead_letter_id = id, "dead letter deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    delete,
    path = "/admin/dead-letters",
    tag = "admin",
    security(("bearer" = [])),
    summary = "Delete the dead letters matching the filters",
    description = "At least one filter, or `all=true`, is required (422 otherwise).",
    params(DeleteParams),
    responses(
        (status = 200, description = "How many were deleted", body = Deleted),
        (status = 401, description = "No valid admin bearer token", body = DetailBody),
        (status = 404, description = "`ADMIN_TOKENS` is not set: no admin API", body = DetailBody),
        (status = 422, description = "A parameter is invalid, or neither a filter nor all=true was given", body = ValidationErrorBody),
        (status = 503, description = "The database is unavailable; retry later", body = DetailBody),
    )
)]
pub async fn delete_matching(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Deleted>, ApiError> {
    let filters = DeleteParams::parse(raw.as_deref())
        .map_err(ApiError::Validation)?
        .filters;
    let deleted = store::delete_matching(&state.db, &filters)
        .await
        .map_err(|e| db_error(&state, e))?;
    tracing::info!(deleted, "dead letters deleted by filter");
    Ok(Json(Deleted { deleted }))
}
