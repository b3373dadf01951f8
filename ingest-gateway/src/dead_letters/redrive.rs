//! Redrive: a dead letter's raw bytes go back through JetStream, exactly as the sender's did,
//! and the worker's normal path stores them (once: `Nats-Msg-Id` and the upsert on message_id),
//! or dead-letters them again if they still fail, which updates the same row (one dedup_key per
//! payload), so a redrive never loops.
//!
//! A dead letter is deleted only after JetStream's PubAck, and only if it is unchanged since it
//! was read (`times`): if the worker dead-lettered the same bytes again meanwhile, it stays. A
//! PubAck saying `duplicate` means the id is still inside the stream's duplicate window and
//! nothing will be delivered: the dead letter stays too (409 for one, `deferred` in bulk).

use std::time::Instant;

use async_nats::jetstream::publish::PublishAck;
use axum::body::Bytes;
use ingest_shared::message;
use tracing::Instrument;

use super::params::RedriveParams;
use super::store::{self, DeadLetterRow};
use crate::error::ApiError;
use crate::ingest::Correlation;
use crate::ingest::publish;
use crate::state::AppState;

/// Dead letters a bulk redrive reads and publishes at once.
const CHUNK: i64 = 100;

/// The message id of bytes that parse as a message, as the worker would parse them.
pub fn message_id(payload: &[u8]) -> Option<String> {
    message::parse(payload).ok().map(|m| m.message_id)
}

/// `Nats-Msg-Id` of a redrive: the message id when the bytes are a message (so JetStream and the
/// worker take it for the message it is), else one derived from the bytes.
fn nats_msg_id(row: &DeadLetterRow) -> String {
    message_id(row.payload()).unwrap_or_else(|| format!("dead-letter-{}", row.dedup_key))
}

/// Publishes the row's bytes and waits for the PubAck (the gateway's own publish: headers,
/// deadline, 503 when JetStream is unreachable).
async fn publish(
    state: &AppState,
    request_id: &str,
    row: &DeadLetterRow,
    msg_id: &str,
) -> Result<PublishAck, ApiError> {
    let ids = Correlation {
        request_id,
        trace_parent: None,
    };
    let body = Bytes::copy_from_slice(row.payload());
    // As the source its bytes came in through, so that the message stored keeps it; a row whose
    // source is not known is published without one, and its message is stored without one.
    let source = row.source.as_deref().unwrap_or_default();
    publish::publish(state, source, msg_id, ids, publish::unix_micros(), body).await
}

/// What one redrive did; logged, never with the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Published and its dead letter deleted.
    Redriven,
    /// Published, and the worker dead-lettered the same bytes again meanwhile: the row stays.
    Kept,
    /// Inside the duplicate window: nothing published, the row stays.
    Deferred,
    /// JetStream did not acknowledge it: the row stays.
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Redriven => "redriven",
            Outcome::Kept => "kept",
            Outcome::Deferred => "deferred",
            Outcome::Failed => "failed",
        }
    }
}

fn log(row: &DeadLetterRow, msg_id: &str, outcome: Outcome) {
    let level_warn = matches!(outcome, Outcome::Failed);
    if level_warn {
        tracing::warn!(
            dead_letter_id = row.id,
            message_id = msg_id,
            outcome = outcome.as_str(),
            "dead letter redrive"
        );
    } else {
        tracing::info!(
            dead_letter_id = row.id,
            message_id = msg_id,
            outcome = outcome.as_str(),
            "dead letter redrive"
        );
    }
}

fn db_error(state: &AppState, error: sqlx::Error) -> ApiError {
    ApiError::from_db("dead letters", error, state.config.retry_after_secs)
}

/// Redrives one dead letter. `Ok(true)`: published and deleted; `Ok(false)`: published, and the
/// row stays because its bytes were dead-lettered again meanwhile. Inside the duplicate window:
/// [`ApiError::DuplicateWindow`] (409); JetStream unreachable: [`ApiError::Unavailable`] (503).
pub async fn one(
    state: &AppState,
    request_id: &str,
    row: &DeadLetterRow,
) -> Result<bool, ApiError> {
    let msg_id = nats_msg_id(row);
    let ack = match publish(state, request_id, row, &msg_id).await {
        Ok(ack) => ack,
        Err(error) => {
            log(row, &msg_id, Outcome::Failed);
            return Err(error);
        }
    };
    if ack.duplicate {
        log(row, &msg_id, Outcome::Deferred);
        return Err(ApiError::DuplicateWindow {
            retry_after_secs: state.config.nats.duplicate_window.as_secs(),
        });
    }
    let deleted = store::delete_redriven(&state.db, &[(row.id, row.times)])
        .await
        .map_err(|e| db_error(state, e))?;
    let removed = !deleted.is_empty();
    let outcome = if removed {
        Outcome::Redriven
    } else {
        Outcome::Kept
    };
    log(row, &msg_id, outcome);
    Ok(removed)
}

/// What a bulk redrive did.
#[derive(Debug, Default)]
pub struct Counts {
    /// Published and acknowledged (their rows deleted, unless dead-lettered again meanwhile).
    pub redriven: u64,
    /// Inside the duplicate window: not published, still dead letters.
    pub deferred: u64,
    /// Not acknowledged by JetStream: still dead letters.
    pub failed: u64,
    /// Dead letters matching the filters after this call.
    pub remaining: i64,
}

/// Redrives up to `params.limit` dead letters matching the filters, in id order, [`CHUNK`] at a
/// time. Stops early when a whole chunk fails (JetStream is down) or when half the request
/// deadline is spent, so the answer always arrives; `remaining` tells the caller to go on.
/// Nothing redriven and everything failed: the 503 of the failure itself.
pub async fn bulk(
    state: &AppState,
    request_id: &str,
    params: &RedriveParams,
) -> Result<Counts, ApiError> {
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        return Err(ApiError::Unavailable {
            reason: "nats disconnected",
            retry_after_secs: state.config.retry_after_secs,
        });
    }
    let budget = state.config.request_timeout / 2;
    let started = Instant::now();
    let mut counts = Counts::default();
    let mut last_error = None;
    let (mut after, mut taken) = (None, 0);
    while taken < params.limit && started.elapsed() < budget {
        let rows = store::page(
            &state.db,
            &params.filters,
            after,
            CHUNK.min(params.limit - taken),
        )
        .await
        .map_err(|e| db_error(state, e))?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id);
        taken += rows.len() as i64;

        let published = futures::future::join_all(rows.iter().map(|row| {
            let span = tracing::info_span!("redrive", dead_letter_id = row.id);
            async move {
                let msg_id = nats_msg_id(row);
                let ack = publish(state, request_id, row, &msg_id).await;
                (msg_id, ack)
            }
            .instrument(span)
        }))
        .await;
        let mut acked = Vec::with_capacity(rows.len());
        let mut failed_here = 0;
        for (row, (msg_id, ack)) in rows.iter().zip(published) {
            match ack {
                Ok(ack) if ack.duplicate => {
                    counts.deferred += 1;
                    log(row, &msg_id, Outcome::Deferred);
                }
                Ok(_) => {
                    counts.redriven += 1;
                    acked.push((row, msg_id));
                }
                Err(error) => {
                    counts.failed += 1;
                    failed_here += 1;
                    log(row, &msg_id, Outcome::Failed);
                    last_error = Some(error);
                }
            }
        }
        let read: Vec<_> = acked.iter().map(|(row, _)| (row.id, row.times)).collect();
        let deleted = store::delete_redriven(&state.db, &read)
            .await
            .map_err(|e| db_error(state, e))?;
        for (row, msg_id) in &acked {
            let outcome = if deleted.contains(&row.id) {
                Outcome::Redriven
            } else {
                Outcome::Kept
            };
            log(row, msg_id, outcome);
        }
        if failed_here == rows.len() {
            break;
        }
    }
    if let Some(error) = last_error.filter(|_| counts.redriven == 0 && counts.deferred == 0) {
        return Err(error);
    }
    counts.remaining = store::count_matching(&state.db, &params.filters)
        .await
        .map_err(|e| db_error(state, e))?;
    tracing::info!(
        redriven = counts.redriven,
        deferred = counts.deferred,
        failed = counts.failed,
        remaining = counts.remaining,
        "bulk dead letter redrive"
    );
    Ok(counts)
}
