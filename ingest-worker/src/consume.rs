//! The consumer loop: pull, batch, write once, ack after the commit.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::{self, AckKind};
use futures::{FutureExt, StreamExt};
use ingest_shared::telemetry::{self, TRACEPARENT_HEADER};
use ingest_shared::{RECEIVED_AT_HEADER, REQUEST_ID_HEADER, message, nats};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::store::{self, DeadLetter, Row};

pub struct Consumer {
    pub config: Config,
    pub jetstream: jetstream::Context,
    pub db: PgPool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// Collects the batches that have finished, and waits until fewer than `limit` are in flight.
async fn reap(in_flight: &mut JoinSet<Flow>, limit: usize) -> Flow {
    let mut flow = Flow::Continue;
    while let Some(done) = in_flight.try_join_next() {
        flow = flow.max_stop(finished(done));
    }
    while in_flight.len() >= limit {
        match in_flight.join_next().await {
            Some(done) => flow = flow.max_stop(finished(done)),
            None => break,
        }
    }
    flow
}

fn finished(done: Result<Flow, tokio::task::JoinError>) -> Flow {
    done.unwrap_or_else(|error| {
        // Its messages are not acked, so JetStream redelivers them after the ack wait.
        tracing::error!(%error, "a batch task failed; its messages will be redelivered");
        Flow::Continue
    })
}

impl Flow {
    fn max_stop(self, other: Flow) -> Flow {
        if self == Flow::Stop || other == Flow::Stop {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

impl Consumer {
    /// Runs until `cancel` fires. Whatever NATS or Postgres do meanwhile, it reconnects and
    /// retries by itself; it only returns when asked to.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut delays = nats::backoff_delays();
        while !cancel.is_cancelled() {
            match self.open().await {
                Ok(messages) => {
                    delays = nats::backoff_delays();
                    if let Flow::Stop = self.consume(messages, &cancel).await {
                        break;
                    }
                }
                Err(error) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "cannot open the consumer");
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        tracing::info!("consumer stopped");
    }

    async fn open(&self) -> anyhow::Result<pull::Stream> {
        nats::ensure_stream(&self.jetstream, &self.config.nats).await?;
        let stream = self.jetstream.get_stream(&self.config.nats.stream).await?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &self.config.consumer.durable,
                self.config.consumer.consumer_config(),
            )
            .await?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(self.config.batch_size)
            .expires(Duration::from_secs(10))
            .heartbeat(Duration::from_secs(3))
            .messages()
            .await?;
        tracing::info!(consumer = %self.config.consumer.durable, "consuming");
        Ok(messages)
    }

    /// Fills batches and stores up to `BATCHES_IN_FLIGHT` of them at once: while one waits for
    /// its commit (the WAL flush), the next is pulled, parsed and sent. Each batch is acked after
    /// its own commit; concurrent batches are safe for the same reason two workers are (an
    /// idempotent upsert, aggregates updated in key order).
    async fn consume(
        self: &Arc<Self>,
        mut messages: pull::Stream,
        cancel: &CancellationToken,
    ) -> Flow {
        let batch_size = self.config.batch_size;
        let mut in_flight: JoinSet<Flow> = JoinSet::new();
        let flow = loop {
            if reap(&mut in_flight, self.config.batches_in_flight).await == Flow::Stop {
                break Flow::Stop;
            }
            let first = tokio::select! {
                biased;
                () = cancel.cancelled() => break Flow::Stop,
                // A batch that ends in Stop (shutdown during an outage) stops the pulling at once.
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if finished(done) == Flow::Stop {
                        break Flow::Stop;
                    }
                    continue;
                }
                next = messages.next() => next,
            };
            let mut batch = Vec::with_capacity(batch_size);
            match first {
                None => break Flow::Continue,
                Some(Ok(m)) => batch.push(m),
                Some(Err(error)) => match error.kind() {
                    // The client re-issues its pull requests after a missed heartbeat.
                    MessagesErrorKind::MissingHeartbeat => {
                        tracing::warn!(%error, "consumer heartbeat missed");
                        continue;
                    }
                    _ => {
                        tracing::warn!(%error, "consumer stream failed; reopening");
                        break Flow::Continue;
                    }
                },
            }
            let deadline = tokio::time::Instant::now() + self.config.batch_wait;
            while batch.len() < batch_size {
                match tokio::time::timeout_at(deadline, messages.next()).await {
                    Ok(Some(Ok(m))) => batch.push(m),
                    Ok(Some(Err(error))) => {
                        tracing::warn!(%error, "consumer error while filling a batch");
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            let (consumer, cancel) = (Arc::clone(self), cancel.clone());
            in_flight.spawn(async move { consumer.process(batch, &cancel).await });
        };
        // Batches already pulled are committed and acked (or, when Postgres is down at shutdown,
        // handed back) before this returns, so a reopened consumer or a stopping process never
        // leaves one behind half done.
        let mut stop = flow == Flow::Stop;
        while let Some(done) = in_flight.join_next().await {
            stop |= finished(done) == Flow::Stop;
        }
        if stop {
            hand_back(&mut messages).await;
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// Stores a batch and acks it; on shutdown during an outage, hands it back unacked.
    #[tracing::instrument(name = "batch", skip_all, fields(size = batch.len(), first_seq = tracing::field::Empty))]
    async fn process(&self, batch: Vec<jetstream::Message>, cancel: &CancellationToken) -> Flow {
        let mut rows = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        let mut dead_index = HashSet::new();
        let mut seen = HashSet::with_capacity(batch.len());
        let mut traces = Vec::with_capacity(batch.len());
        metrics::counter!("worker_messages_consumed_total").increment(batch.len() as u64);
        for (index, m) in batch.iter().enumerate() {
            let trace = Trace::of(m);
            if index == 0 {
                tracing::Span::current().record("first_seq", trace.seq);
            }
            let parsed = message::parse(&m.payload);
            let message_id = parsed.as_ref().ok().map(|m| m.message_id.as_str());
            if trace.delivered > 1 {
                metrics::counter!("worker_redeliveries_total").increment(1);
                tracing::warn!(
                    request_id = trace.request_id,
                    trace_id = trace.trace_id,
                    message_id,
                    stream_seq = trace.seq,
                    delivered = trace.delivered,
                    "redelivered message"
                );
            }
            match parsed {
                Ok(message) => {
                    if seen.insert(message.message_id.clone()) {
                        rows.push(Row {
                            message,
                            stream_seq: trace.seq,
                        });
                    }
                }
                Err(errors) => {
                    // The reason names fields and rules, never the payload.
                    tracing::error!(
                        request_id = trace.request_id,
                        trace_id = trace.trace_id,
                        stream_seq = trace.seq,
                        reason = %errors,
                        "invalid payload; dead-lettering"
                    );
                    dead_index.insert(index);
                    dead.push(DeadLetter {
                        stream_seq: trace.seq,
                        subject: m.subject.to_string(),
                        payload: m.payload.to_vec(),
                        reason: format!("invalid message: {errors}"),
                        request_id: trace.request_id.map(str::to_owned),
                    });
                }
            }
            traces.push(trace);
        }
        let unique = rows.len();

        let started = Instant::now();
        let Some(inserted) = self
            .store_with_retry(&batch, &mut rows, &mut dead, &mut dead_index, cancel)
            .await
        else {
            for m in &batch {
                let _ = m.ack_with(AckKind::Nak(None)).await;
            }
            tracing::warn!(
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
        let committed: Vec<&Trace> = traces
            .iter()
            .enumerate()
            .filter(|(index, _)| !dead_index.contains(index))
            .map(|(_, trace)| trace)
            .collect();
        for trace in &committed {
            if let Some(at) = trace.received_at_us {
                metrics::histogram!("worker_end_to_end_latency_ms")
                    .record(now_us.saturating_sub(at) as f64 / 1000.0);
            }
        }
        let duplicates = (batch.len() - dead.len()) as u64 - inserted;
        metrics::counter!("worker_batches_total").increment(1);
        metrics::histogram!("worker_batch_size").record(batch.len() as f64);
        metrics::histogram!("worker_commit_latency_ms").record(commit_ms);
        metrics::counter!("worker_rows_inserted_total").increment(inserted);
        metrics::counter!("worker_duplicates_skipped_total").increment(duplicates);
        metrics::counter!("worker_dead_letters_total").increment(dead.len() as u64);
        log_commit(
            &committed,
            BatchCounts {
                unique,
                inserted,
                duplicates,
                dead_letters: dead.len(),
                commit_ms,
            },
        );

        if self.config.faults.stop_after_commit_before_ack {
            tracing::warn!("fault injection: stopping after the commit, before the acks");
            return Flow::Stop;
        }
        for (index, m) in batch.iter().enumerate() {
            let kind = if dead_index.contains(&index) {
                AckKind::Term
            } else {
                AckKind::Ack
            };
            if let Err(error) = m.ack_with(kind).await {
                // Only a redelivery follows, which the upsert absorbs.
                tracing::warn!(%error, "ack not sent");
            }
        }
        Flow::Continue
    }

    /// Retries outages with backoff for as long as it takes (keeping the batch's messages from
    /// being redelivered meanwhile); isolates rows Postgres refuses into dead letters. `None`
    /// when cancelled before the batch could be stored.
    async fn store_with_retry(
        &self,
        batch: &[jetstream::Message],
        rows: &mut Vec<Row>,
        dead: &mut Vec<DeadLetter>,
        dead_index: &mut HashSet<usize>,
        cancel: &CancellationToken,
    ) -> Option<u64> {
        let mut delays = nats::backoff_delays();
        let mut last_progress = Instant::now();
        loop {
            let error = match store::store_batch(&self.db, rows, dead).await {
                Ok(inserted) => return Some(inserted),
                Err(error) => error,
            };
            if store::is_permanent(&error) {
                tracing::warn!(%error, "batch refused by postgres; isolating the bad rows");
                match self.isolate(batch, rows, dead, dead_index).await {
                    Ok(inserted) => return Some(inserted),
                    Err(error) if !store::is_permanent(&error) => {
                        tracing::warn!(%error, "isolation interrupted by an outage");
                    }
                    Err(error) => {
                        tracing::error!(%error, "isolation failed");
                    }
                }
            }
            metrics::counter!("worker_db_errors_total").increment(1);
            let delay = delays.next().unwrap_or(Duration::from_secs(5));
            tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "batch not stored; retrying");
            if last_progress.elapsed() >= self.config.consumer.ack_wait / 3 {
                for m in batch {
                    let _ = m.ack_with(AckKind::Progress).await;
                }
                last_progress = Instant::now();
            }
            tokio::select! {
                () = cancel.cancelled() => return None,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Writes rows one at a time so that only the ones Postgres refuses become dead letters.
    async fn isolate(
        &self,
        batch: &[jetstream::Message],
        rows: &mut Vec<Row>,
        dead: &mut Vec<DeadLetter>,
        dead_index: &mut HashSet<usize>,
    ) -> Result<u64, sqlx::Error> {
        let mut inserted = 0;
        let mut kept = Vec::with_capacity(rows.len());
        let mut pending = std::mem::take(rows).into_iter();
        while let Some(row) = pending.next() {
            match store::store_batch(&self.db, std::slice::from_ref(&row), &[]).await {
                Ok(n) => {
                    inserted += n;
                    kept.push(row);
                }
                Err(error) if store::is_permanent(&error) => {
                    let index = batch
                        .iter()
                        .position(|m| {
                            m.info()
                                .is_ok_and(|i| i.stream_sequence as i64 == row.stream_seq)
                        })
                        .unwrap_or(usize::MAX);
                    let m = batch.get(index);
                    let trace = m.map(Trace::of);
                    tracing::error!(
                        %error,
                        request_id = trace.as_ref().and_then(|t| t.request_id),
                        trace_id = trace.as_ref().and_then(|t| t.trace_id),
                        message_id = %row.message.message_id,
                        stream_seq = row.stream_seq,
                        "row refused by postgres; dead-lettering"
                    );
                    dead_index.insert(index);
                    dead.push(DeadLetter {
                        stream_seq: row.stream_seq,
                        subject: m.map(|m| m.subject.to_string()).unwrap_or_default(),
                        payload: m.map(|m| m.payload.to_vec()).unwrap_or_default(),
                        reason: format!("refused by postgres: {error}"),
                        request_id: m
                            .and_then(|m| header(m, REQUEST_ID_HEADER))
                            .map(str::to_owned),
                    });
                }
                Err(error) => {
                    kept.push(row);
                    kept.extend(pending);
                    *rows = kept;
                    return Err(error);
                }
            }
        }
        *rows = kept;
        // The rows are stored; now the dead letters, alone.
        store::store_batch(&self.db, &[], dead).await?;
        Ok(inserted)
    }
}

fn header<'a>(m: &'a jetstream::Message, name: &str) -> Option<&'a str> {
    m.headers.as_ref()?.get(name).map(|v| v.as_str())
}

/// What a worker log line needs to name a message: the ids the gateway sent along in headers.
struct Trace<'a> {
    seq: i64,
    delivered: i64,
    request_id: Option<&'a str>,
    trace_id: Option<&'a str>,
    /// From `Nats-Msg-Id`, which the gateway sets to the message id.
    message_id: Option<&'a str>,
    received_at_us: Option<u128>,
}

impl<'a> Trace<'a> {
    fn of(m: &'a jetstream::Message) -> Self {
        let (seq, delivered) = m
            .info()
            .map(|i| (i.stream_sequence as i64, i.delivered))
            .unwrap_or((0, 1));
        Self {
            seq,
            delivered,
            request_id: header(m, REQUEST_ID_HEADER),
            // Re-validated: anything can publish to the subject, and the value goes into logs.
            trace_id: header(m, TRACEPARENT_HEADER).and_then(telemetry::trace_id_from_traceparent),
            message_id: header(m, "Nats-Msg-Id"),
            received_at_us: header(m, RECEIVED_AT_HEADER).and_then(|v| v.parse().ok()),
        }
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
fn log_commit(committed: &[&Trace<'_>], counts: BatchCounts) {
    for trace in committed {
        tracing::debug!(
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
        tracing::info!(request_ids, trace_ids, "batch committed (more request ids)");
    }
}

/// Comma-separated (the gateway's request ids never contain commas): greppable, and one string field in every
/// log store. `None` when no message carried the id, so the field is left out.
fn ids_of(traces: &[&Trace<'_>]) -> (Option<String>, Option<String>) {
    let join = |ids: Vec<&str>| (!ids.is_empty()).then(|| ids.join(","));
    (
        join(traces.iter().filter_map(|t| t.request_id).collect()),
        join(traces.iter().filter_map(|t| t.trace_id).collect()),
    )
}

/// Messages already delivered to this worker but not yet batched go back at once rather than
/// after `ack_wait`.
async fn hand_back(messages: &mut pull::Stream) {
    let mut handed_back = 0;
    while let Some(Some(Ok(m))) = messages.next().now_or_never() {
        let _ = m.ack_with(AckKind::Nak(None)).await;
        handed_back += 1;
    }
    if handed_back > 0 {
        tracing::info!(handed_back, "buffered messages handed back");
    }
}
