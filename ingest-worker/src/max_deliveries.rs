//! Messages JetStream gave up on. After `MAX_DELIVER` deliveries without an ack, the server stops
//! delivering a message but a WorkQueue stream keeps it, so the stream's first sequence (what a
//! consistent read waits on) can never pass it. Such a message is moved to `dead_letters`
//! (kind `max_deliveries`, the raw bytes kept, redrivable like the others) and only then deleted
//! from the stream.
//!
//! Two ways to find one:
//! - the server's advisory, sent once, when the exhausted message comes up for redelivery. The
//!   workers subscribe as one queue group, so one of them handles each advisory.
//! - a scan at start and every `ACK_WAIT_SECS`, for what no worker heard (none was running, the
//!   worker that heard it died, or a server restart: it sends the advisory only once). A stored
//!   message at or below the sequence the consumer is done with (everything below its ack floor,
//!   or everything delivered when nothing awaits an ack) is not pending: it was either acked, and
//!   the stream is about to drop it, or given up on. A message a worker still holds is pending
//!   and never qualifies. One is moved only once seen so for `ACK_WAIT_SECS` (an ack on its way
//!   is not taken for one) and published `ACK_WAIT_SECS` x `MAX_DELIVER` ago.
//!
//! A message whose id is already in `messages` is only deleted from the stream, with no dead
//! letter: after a NATS restart the stream can still hold messages whose acks the consumer had
//! counted, which the same checks would otherwise take for given up on.
//!
//! Each move is idempotent: the upsert on the payload's digest keeps one row, a row already
//! written for the same sequence is not written again (checked under a lock on the digest, so
//! two workers finding it at once write it once), and deleting a sequence already gone is no
//! error.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, message::StreamMessage};
use futures::StreamExt;
use ingest_shared::message;
use serde::Deserialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::batch::LOG_TARGET;
use crate::config::{Config, RawPayload};
use crate::dead_letter::{DeadLetter, Kind};
use crate::metrics::{DEAD_LETTERS, MAX_DELIVERIES};
use crate::store;

/// Most given-up messages one scan walks past the stream's first sequence.
const SCAN_LIMIT: usize = 100;

/// The advisory's fields this needs (nats-server's `io.nats.jetstream.advisory.v1.max_deliver`).
#[derive(Debug, Deserialize)]
struct Advisory {
    stream_seq: u64,
    deliveries: u64,
}

/// Sequences the scan found given up on, and when first.
type Suspects = HashMap<u64, Instant>;

/// How a message was found: the log says which.
#[derive(Clone, Copy)]
enum Found {
    Advisory { deliveries: u64 },
    Scan,
}

pub struct Mover {
    config: Config,
    jetstream: jetstream::Context,
    db: PgPool,
}

/// With `MAX_DELIVER` unlimited nothing is ever given up on, and nothing here runs.
fn enabled(config: &Config) -> bool {
    config.consumer.max_deliver > 0
}

/// The subject the server sends the advisory on for the worker's consumer.
fn advisory_subject(config: &Config) -> String {
    format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
        config.nats.stream, config.consumer.durable
    )
}

/// Subscribes to the advisory, before the consumer pulls anything so that none sent for this
/// worker's pulls is missed. `None` when `MAX_DELIVER` is unlimited.
pub async fn subscribe(
    client: &async_nats::Client,
    config: &Config,
) -> Option<async_nats::Subscriber> {
    if !enabled(config) {
        return None;
    }
    match client
        .queue_subscribe(advisory_subject(config), config.consumer.durable.clone())
        .await
    {
        Ok(subscriber) => Some(subscriber),
        Err(error) => {
            // The scan still finds them, one ACK_WAIT_SECS later.
            tracing::warn!(target: LOG_TARGET, %error, "cannot subscribe to the max-deliveries advisory");
            None
        }
    }
}

impl Mover {
    pub fn new(config: Config, jetstream: jetstream::Context, db: PgPool) -> Self {
        Self {
            config,
            jetstream,
            db,
        }
    }

    /// Handles advisories and scans until `cancel` fires. A move in progress finishes first: its
    /// dead letter and its delete are short.
    pub async fn run(
        self,
        mut advisories: Option<async_nats::Subscriber>,
        cancel: CancellationToken,
    ) {
        if !enabled(&self.config) {
            return;
        }
        let mut scans = tokio::time::interval(self.config.consumer.ack_wait);
        scans.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut suspects = Suspects::new();
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                advisory = next(&mut advisories) => match advisory {
                    Some(message) => self.on_advisory(&message.payload).await,
                    None => advisories = None,
                },
                _ = scans.tick() => {
                    match self.scan(&suspects).await {
                        Ok(seen) => suspects = seen,
                        Err(error) => tracing::debug!(target: LOG_TARGET, %error, "max-deliveries scan skipped"),
                    }
                }
            }
        }
        tracing::debug!(target: LOG_TARGET, "max-deliveries task stopped");
    }

    async fn on_advisory(&self, payload: &[u8]) {
        let advisory: Advisory = match serde_json::from_slice(payload) {
            Ok(advisory) => advisory,
            Err(error) => {
                tracing::warn!(target: LOG_TARGET, %error, "unreadable max-deliveries advisory");
                return;
            }
        };
        let stream = match self.stream().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(target: LOG_TARGET, %error, stream_seq = advisory.stream_seq, "max-deliveries advisory not handled; the scan will retry");
                return;
            }
        };
        match stream.get_raw_message(advisory.stream_seq).await {
            Ok(message) => {
                let found = Found::Advisory {
                    deliveries: advisory.deliveries,
                };
                self.move_one(&stream, message, found).await;
            }
            // Moved already (by another worker's scan), or acked at the last moment.
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => {}
            Err(error) => {
                tracing::warn!(target: LOG_TARGET, %error, stream_seq = advisory.stream_seq, "max-deliveries advisory not handled; the scan will retry");
            }
        }
    }

    async fn stream(&self) -> anyhow::Result<Stream> {
        Ok(self.jetstream.get_stream(&self.config.nats.stream).await?)
    }

    /// Moves the given-up messages seen so for at least `ACK_WAIT_SECS`; returns the ones seen
    /// now, with when each was first seen, for the next scan.
    async fn scan(&self, previous: &Suspects) -> anyhow::Result<Suspects> {
        let stream = self.stream().await?;
        // Read with the stream just now; the consumer after it, so a message found at or below
        // `done` was not pending when the consumer was read.
        let state = stream.cached_info().state.clone();
        let consumer = stream.consumer_info(&self.config.consumer.durable).await?;
        let read_at = Instant::now();
        let done = if consumer.num_ack_pending == 0 {
            consumer.delivered.stream_sequence
        } else {
            consumer.ack_floor.stream_sequence
        };
        let mut seen = Suspects::new();
        if state.messages == 0 || state.first_sequence > done {
            return Ok(seen);
        }
        let mut seq = state.first_sequence;
        while seen.len() < SCAN_LIMIT && seq <= done {
            let message = match stream
                .get_first_raw_message_by_subject(&self.config.nats.subject, seq)
                .await
            {
                Ok(message) => message,
                Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => break,
                Err(error) => return Err(error.into()),
            };
            seq = message.sequence + 1;
            if message.sequence > done {
                break;
            }
            let since = previous.get(&message.sequence).copied().unwrap_or(read_at);
            let held = read_at.duration_since(since) >= self.config.consumer.ack_wait;
            if held && self.old_enough(&message) {
                self.move_one(&stream, message, Found::Scan).await;
            } else {
                seen.insert(message.sequence, since);
            }
        }
        Ok(seen)
    }

    /// Published at least `ACK_WAIT_SECS` x `MAX_DELIVER` ago, as a message that used up its
    /// deliveries by timing out must be. The server's clock against this one's: a skew of
    /// seconds does not matter next to that span.
    fn old_enough(&self, message: &StreamMessage) -> bool {
        let consumer = &self.config.consumer;
        let span = consumer.ack_wait.as_secs() as i64 * consumer.max_deliver;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        now - message.time.unix_timestamp() >= span
    }

    /// Whether the message's id is already in `messages`; bytes that are no message are not.
    async fn already_stored(&self, payload: &[u8]) -> Result<bool, sqlx::Error> {
        let Ok(message) = message::parse(payload) else {
            return Ok(false);
        };
        sqlx::query_file_scalar!("src/sql/max_deliveries_stored.sql", message.message_id)
            .fetch_one(&self.db)
            .await
    }

    /// The dead letter first, committed (none when the message is already stored); then the
    /// delete. Never the other way round: a crash in between leaves the message in the stream,
    /// where the scan finds it again.
    async fn move_one(&self, stream: &Stream, message: StreamMessage, found: Found) {
        let seq = message.sequence;
        let max_deliver = self.config.consumer.max_deliver;
        let letter = DeadLetter::new(
            Kind::MaxDeliveries,
            seq as i64,
            message.subject.as_str(),
            &message.payload,
            Some(&message.headers),
            format!(
                "max_deliveries: not acknowledged after {max_deliver} deliveries (MAX_DELIVER)"
            ),
        );
        let outcome = match self.already_stored(&message.payload).await {
            Ok(true) => Ok((true, false)),
            Ok(false) => self
                .write_once(&letter)
                .await
                .map(|written| (false, written)),
            Err(error) => Err(error),
        };
        let (stored, written) = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(target: LOG_TARGET, %error, stream_seq = seq, "undeliverable message not dead-lettered yet; the scan will retry");
                return;
            }
        };
        // Another worker may have deleted it first: then that one says so.
        let deleted = match stream.delete_message(seq).await {
            Ok(_) => true,
            Err(error) => {
                let gone = matches!(
                    stream.get_raw_message(seq).await,
                    Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound
                );
                if !gone {
                    tracing::warn!(target: LOG_TARGET, %error, stream_seq = seq, "dead-lettered message not deleted from the stream yet; the scan will retry");
                    return;
                }
                false
            }
        };
        let (via, deliveries) = match found {
            Found::Advisory { deliveries } => ("advisory", deliveries),
            Found::Scan => ("scan", max_deliver as u64),
        };
        if stored && deleted {
            tracing::warn!(
                target: LOG_TARGET,
                stream_seq = seq,
                request_id = letter.request_id.as_deref(),
                found = via,
                "message already stored was still in the stream; deleted from it"
            );
        } else if written {
            ::metrics::counter!(MAX_DELIVERIES).increment(1);
            ::metrics::counter!(DEAD_LETTERS).increment(1);
            tracing::error!(
                target: LOG_TARGET,
                stream_seq = seq,
                deliveries,
                request_id = letter.request_id.as_deref(),
                found = via,
                "message not acknowledged after MAX_DELIVER deliveries; moved to dead letters"
            );
        }
    }

    /// Writes the dead letter unless a worker already wrote it for this sequence; `true` when this
    /// call wrote it. The check and the write run under a lock on the payload's digest.
    async fn write_once(&self, letter: &DeadLetter) -> Result<bool, sqlx::Error> {
        let mut lock = self.db.acquire().await?;
        sqlx::query_file!("src/sql/max_deliveries_lock.sql", letter.dedup_key)
            .execute(&mut *lock)
            .await?;
        let written = async {
            // Whether a dead letter for these bytes at this sequence is already written.
            let moved: bool = sqlx::query_file_scalar!(
                "src/sql/max_deliveries_moved.sql",
                letter.dedup_key,
                letter.stream_seq,
                letter.kind.as_str()
            )
            .fetch_one(&mut *lock)
            .await?;
            if !moved {
                store::store_batch(
                    &self.db,
                    RawPayload::Keep,
                    &[],
                    std::slice::from_ref(letter),
                )
                .await?;
            }
            Ok::<_, sqlx::Error>(!moved)
        }
        .await;
        let unlocked =
            sqlx::query_file_scalar!("src/sql/max_deliveries_unlock.sql", letter.dedup_key)
                .fetch_one(&mut *lock)
                .await;
        if unlocked.is_err() {
            // Closing the connection is what releases the lock then; it must not go back to the pool.
            lock.close_on_drop();
        }
        written
    }
}

/// The next advisory; pending for ever without a subscription.
async fn next(advisories: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match advisories {
        Some(subscriber) => subscriber.next().await,
        None => std::future::pending().await,
    }
}
