//! Committing one batch: storing it (retrying through outages), then the metrics and the batch's
//! log line, then the acks.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ingest_shared::retry::Backoff;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, LOG_TARGET, Trace};
use crate::config::Config;
use crate::metrics::{
    BATCH_SIZE, BATCHES, COMMIT_LATENCY_MS, DB_ERRORS, DEAD_LETTERS, DUPLICATES_SKIPPED,
    END_TO_END_LATENCY_MS, ROWS_INSERTED,
};
use crate::store;

/// What the pull loop (consume.rs) does once a batch is done with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Shutdown during an outage, or the stop-after-commit fault: the loop hands back what it
    /// holds and returns.
    Stop,
}

impl Flow {
    /// `Stop` if either is.
    pub fn max_stop(self, other: Flow) -> Flow {
        if self == Flow::Stop || other == Flow::Stop {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

/// Stores a batch, records it in the metrics and the log, and acks it; on shutdown during an
/// outage, hands it back unacked and returns [`Flow::Stop`].
pub async fn commit(
    db: &PgPool,
    config: &Config,
    mut batch: Batch,
    cancel: &CancellationToken,
) -> Flow {
    let started = Instant::now();
    let Some(inserted) = store_with_retry(db, config, &mut batch, cancel).await else {
        batch.hand_back().await;
        tracing::warn!(
            target: LOG_TARGET,
            size = batch.len(),
            "shutting down during an outage; batch handed back"
        );
        return Flow::Stop;
    };
    let commit_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Measured at the commit, before the acks: that is when the message became readable.
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let committed = batch.committed();
    for trace in &committed {
        if let Some(at) = trace.received_at_us {
            metrics::histogram!(END_TO_END_LATENCY_MS)
                .record(now_us.saturating_sub(at) as f64 / 1000.0);
        }
    }
    let dead_letters = batch.dead_letters().len();
    let duplicates = (batch.len() - dead_letters) as u64 - inserted;
    metrics::counter!(BATCHES).increment(1);
    metrics::histogram!(BATCH_SIZE).record(batch.len() as f64);
    metrics::histogram!(COMMIT_LATENCY_MS).record(commit_ms);
    metrics::counter!(ROWS_INSERTED).increment(inserted);
    metrics::counter!(DUPLICATES_SKIPPED).increment(duplicates);
    metrics::counter!(DEAD_LETTERS).increment(dead_letters as u64);
    log_commit(
        &committed,
        BatchCounts {
            unique: batch.unique(),
            inserted,
            duplicates,
            dead_letters,
            commit_ms,
        },
    );

    if config.faults.stop_after_commit_before_ack {
        tracing::warn!(target: LOG_TARGET, "fault injection: stopping after the commit, before the acks");
        return Flow::Stop;
    }
    batch.ack().await;
    Flow::Continue
}

/// Retries outages on the shared schedule for as long as it takes, keeping the batch's
/// messages from being redelivered meanwhile. `None` when cancelled before the batch could
/// be stored.
async fn store_with_retry(
    db: &PgPool,
    config: &Config,
    batch: &mut Batch,
    cancel: &CancellationToken,
) -> Option<u64> {
    let mut backoff = Backoff::new();
    let mut last_progress = Instant::now();
    loop {
        let error = match store::store(db, config.raw_payload, batch).await {
            Ok(inserted) => return Some(inserted),
            Err(error) => error,
        };
        metrics::counter!(DB_ERRORS).increment(1);
        let delay = backoff.next_delay();
        tracing::warn!(target: LOG_TARGET, %error, retry_in_ms = delay.as_millis() as u64, "batch not stored; retrying");
        if last_progress.elapsed() >= config.consumer.ack_wait / 3 {
            batch.in_progress().await;
            last_progress = Instant::now();
        }
        Backoff::sleep(delay, cancel).await.ok()?;
    }
}

struct BatchCounts {
    unique: usize,
    inserted: u64,
    duplicates: u64,
    dead_letters: usize,
    commit_ms: f64,
}

/// Most request ids in one log line. A UUID list of this length stays near 4 KB (at most ~13 KB
/// for 128-character ids), under the 16 KB at which Docker's json-file driver splits a line.
const IDS_PER_LINE: usize = 100;

/// Logs a committed batch. The per-message "committed" line is at debug because at 20k msg/s it
/// would be 20k lines a second; instead the info line carries the committed messages' request
/// ids (and trace ids), so a request can still be followed from the gateway into the worker.
/// Batches above [`IDS_PER_LINE`] messages continue the list on extra lines that share the
/// batch span's `first_seq`.
fn log_commit(committed: &[Trace<'_>], counts: BatchCounts) {
    for trace in committed {
        tracing::debug!(
            target: LOG_TARGET,
            request_id = trace.request_id,
            trace_id = trace.trace_id,
            message_id = trace.message_id,
            stream_seq = trace.seq,
            delivered = trace.delivered,
            "message committed"
        );
    }
    let mut chunks = committed.chunks(IDS_PER_LINE);
    let (request_ids, trace_ids) = ids_of(chunks.next().unwrap_or_default());
    tracing::info!(
        target: LOG_TARGET,
        unique = counts.unique,
        inserted = counts.inserted,
        duplicates = counts.duplicates,
        dead_letters = counts.dead_letters,
        commit_ms = (counts.commit_ms * 1000.0).round() / 1000.0,
        request_ids,
        trace_ids,
        "batch committed"
    );
    for chunk in chunks {
        let (request_ids, trace_ids) = ids_of(chunk);
        tracing::info!(target: LOG_TARGET, request_ids, trace_ids, "batch committed (more request ids)");
    }
}

/// Comma-separated (the gateway's request ids never contain commas): greppable, and one string field in every
/// log store. `None` when no message carried the id, so the field is left out.
fn ids_of(traces: &[Trace<'_>]) -> (Option<String>, Option<String>) {
    let join = |ids: Vec<&str>| (!ids.is_empty()).then(|| ids.join(","));
    (
        join(traces.iter().filter_map(|t| t.request_id).collect()),
        join(traces.iter().filter_map(|t| t.trace_id).collect()),
    )
}
