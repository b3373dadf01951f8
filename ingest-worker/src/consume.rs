//! The consumer loop: opens the consumer, fills batches and keeps up to `BATCHES_IN_FLIGHT` of
//! them committing (commit.rs), and hands back what it holds when it stops.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::{self, AckKind};
use futures::{FutureExt, StreamExt};
use ingest_shared::nats;
use ingest_shared::retry::{self, Backoff};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, Trace};
use crate::commit::{self, Flow};
use crate::config::Config;

pub struct Consumer {
    pub config: Config,
    pub jetstream: jetstream::Context,
    pub db: PgPool,
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

impl Consumer {
    /// Runs until `cancel` fires. Whatever NATS or Postgres do meanwhile, it reconnects and
    /// retries by itself; it only returns when asked to.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            let Some(messages) = retry::until_ok(
                Backoff::new(),
                &cancel,
                || self.open(),
                |error, delay| {
                    tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "cannot open the consumer");
                },
            )
            .await
            else {
                break;
            };
            if let Flow::Stop = self.consume(messages, &cancel).await {
                break;
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
    #[tracing::instrument(name = "batch", skip_all, fields(size = messages.len(), first_seq = tracing::field::Empty))]
    async fn process(&self, messages: Vec<jetstream::Message>, cancel: &CancellationToken) -> Flow {
        if let Some(first) = messages.first() {
            tracing::Span::current().record("first_seq", Trace::of(first).seq);
        }
        commit::commit(&self.db, &self.config, Batch::new(messages), cancel).await
    }
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

#[cfg(test)]
mod tests {
    /// The lines the other modules write under `batch::LOG_TARGET` and this module's own lines
    /// share one target, so one filter follows a message through the worker.
    #[test]
    fn the_consumer_log_target_is_this_module() {
        assert_eq!(
            module_path!().strip_suffix("::tests"),
            Some(crate::batch::LOG_TARGET)
        );
    }
}
