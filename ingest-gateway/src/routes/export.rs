//! The HTTP shape of a streamed `GET /messages?format=ndjson|csv` (the `list` handler in
//! messages.rs hands it the validated request): the export's permit, the headers, the body.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;

use crate::error::ApiError;
use crate::read::export::{Export, file_name};
use crate::read::params::Params;
use crate::state::AppState;

/// Starts the export of every match of `params`, or refuses it at once (503) when
/// `MAX_CONCURRENT_EXPORTS` are being sent. The wait for read-your-writes is over before this
/// runs, so the first round trip sees every message acknowledged before the request.
pub fn respond(state: &AppState, db: PgPool, params: Params) -> Result<Response, ApiError> {
    let permit =
        state
            .exports
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::TooManyExports {
                retry_after_secs: state.config.retry_after_secs,
            })?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        file_name(&params, chrono::Utc::now())
    );
    let content_type = params.format.content_type();
    let format = params.format.name();
    let export = Export::new(
        db,
        params,
        state.config.export_batch_rows,
        state.config.export_rows_per_sec,
        state.config.sources_configured(),
        state.encode_thread.clone(),
        permit,
    );
    // A failure mid-stream cannot change the status any more: it is logged, and the body ends
    // without its last chunk, so the client sees a broken download rather than a short file.
    let body = futures::TryStreamExt::inspect_err(export.into_stream(), move |error| {
        tracing::error!(%error, format, "export stopped");
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::try_from(disposition).map_err(|_| ApiError::Internal)?,
    );
    // Proxies that buffer whole responses (nginx does by default) would hold the export in memory.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
