//! One batch of pulled messages: what is stored, what is dead-lettered, and the acks that follow.

use std::collections::HashSet;
use std::fmt::Display;

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use ingest_shared::message::{self, Message};
use ingest_shared::telemetry::{self, TRACEPARENT_HEADER};
use ingest_shared::{RECEIVED_AT_HEADER, REQUEST_ID_HEADER, SOURCE_HEADER};

use crate::dead_letter::{DeadLetter, Kind};
use crate::metrics::{MESSAGES_CONSUMED, REDELIVERIES};

/// The target of every log line about the consumer's messages, whichever module writes it
/// (batch.rs, commit.rs, store.rs, max_deliveries.rs). Spelled out rather than `module_path!()`:
/// it is the pull loop's module path, which operators filter on (docs/operations.md), and it
/// lives here, at the bottom of the chain, so that the modules above import it downward.
pub const LOG_TARGET: &str = "ingest_worker::consume";

/// A message to insert.
pub struct Row {
    pub message: Message,
    /// The body as published, which `messages.raw` keeps.
    pub payload: Bytes,
    pub stream_seq: i64,
    /// The source it came in through (the gateway's `X-Source` header); `None` without the
    /// header (an older gateway, a redriven dead letter whose source was not known), stored as
    /// NULL, "not known".
    pub source: Option<String>,
    /// Which of the batch's messages it came from.
    index: usize,
}

pub struct Batch {
    messages: Vec<jetstream::Message>,
    /// One per distinct message id, in the order pulled.
    rows: Vec<Row>,
    dead: Vec<DeadLetter>,
    /// By message index: whether it became a dead letter (and is terminated, not acked).
    dead_at: Vec<bool>,
    /// Rows before any was refused by Postgres.
    unique: usize,
}

impl Batch {
    /// Parses the pulled messages: a message id seen before in the batch adds no row, and an
    /// invalid payload becomes a dead letter at once.
    pub fn new(messages: Vec<jetstream::Message>) -> Self {
        ::metrics::counter!(MESSAGES_CONSUMED).increment(messages.len() as u64);
        let mut batch = Self {
            rows: Vec::with_capacity(messages.len()),
            dead: Vec::new(),
            dead_at: vec![false; messages.len()],
            unique: 0,
            messages,
        };
        let mut seen = HashSet::with_capacity(batch.messages.len());
        for index in 0..batch.messages.len() {
            let trace = batch.trace(index);
            let parsed = message::parse(&batch.messages[index].payload);
            if trace.delivered > 1 {
                ::metrics::counter!(REDELIVERIES).increment(1);
                tracing::warn!(
                    target: LOG_TARGET,
                    request_id = trace.request_id,
                    trace_id = trace.trace_id,
                    message_id = parsed.as_ref().ok().map(|m| m.message_id.as_str()),
                    stream_seq = trace.seq,
                    delivered = trace.delivered,
                    "redelivered message"
                );
            }
            match parsed {
                Ok(message) => {
                    if seen.insert(message.message_id.clone()) {
                        batch.rows.push(Row {
                            message,
                            payload: batch.messages[index].payload.clone(),
                            stream_seq: trace.seq,
                            source: header(&batch.messages[index], SOURCE_HEADER)
                                .filter(|s| !s.is_empty())
                                .map(str::to_owned),
                            index,
                        });
                    }
                }
                Err(errors) => {
                    // The reason names fields and rules, never the payload.
                    tracing::error!(
                        target: LOG_TARGET,
                        request_id = trace.request_id,
                        trace_id = trace.trace_id,
                        stream_seq = trace.seq,
                        reason = %errors,
                        "invalid payload; dead-lettering"
                    );
                    batch.dead_letter(index, Kind::Invalid, format!("invalid message: {errors}"));
                }
            }
        }
        batch.unique = batch.rows.len();
        batch
    }

    /// Messages pulled, dead letters and duplicates included.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// The rows to insert.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead
    }

    /// Distinct message ids among the valid payloads.
    pub fn unique(&self) -> usize {
        self.unique
    }

    /// Turns row `row` (its position in [`Batch::rows`]) into a dead letter: Postgres refuses it.
    pub fn refuse(&mut self, row: usize, error: &dyn Display) {
        let row = self.rows.remove(row);
        let trace = self.trace(row.index);
        tracing::error!(
            target: LOG_TARGET,
            %error,
            request_id = trace.request_id,
            trace_id = trace.trace_id,
            message_id = %row.message.message_id,
            stream_seq = row.stream_seq,
            "row refused by postgres; dead-lettering"
        );
        self.dead_letter(
            row.index,
            Kind::Refused,
            format!("refused by postgres: {error}"),
        );
    }

    fn dead_letter(&mut self, index: usize, kind: Kind, reason: String) {
        let m = &self.messages[index];
        self.dead.push(DeadLetter::new(
            kind,
            self.trace(index).seq,
            m.subject.as_str(),
            &m.payload,
            m.headers.as_ref(),
            reason,
        ));
        self.dead_at[index] = true;
    }

    /// The messages stored (or already stored): every one but the dead letters.
    pub fn committed(&self) -> Vec<Trace<'_>> {
        (0..self.messages.len())
            .filter(|&index| !self.dead_at[index])
            .map(|index| self.trace(index))
            .collect()
    }

    /// After the commit: acks the stored messages, terminates the dead letters.
    pub async fn ack(&self) {
        for (m, &dead) in self.messages.iter().zip(&self.dead_at) {
            let kind = if dead { AckKind::Term } else { AckKind::Ack };
            if let Err(error) = m.ack_with(kind).await {
                // Only a redelivery follows, which the upsert absorbs.
                tracing::warn!(target: LOG_TARGET, %error, "ack not sent");
            }
        }
    }

    /// Gives every message back to JetStream for redelivery now, rather than after the ack wait.
    pub async fn hand_back(&self) {
        for m in &self.messages {
            let _ = m.ack_with(AckKind::Nak(None)).await;
        }
    }

    /// Asks JetStream to wait another ack wait before redelivering the messages.
    pub async fn in_progress(&self) {
        for m in &self.messages {
            let _ = m.ack_with(AckKind::Progress).await;
        }
    }

    fn trace(&self, index: usize) -> Trace<'_> {
        Trace::of(&self.messages[index])
    }
}

fn header<'a>(m: &'a jetstream::Message, name: &str) -> Option<&'a str> {
    m.headers.as_ref()?.get(name).map(|v| v.as_str())
}

/// What a worker log line needs to name a message: the ids the gateway sent along in headers.
pub struct Trace<'a> {
    pub seq: i64,
    pub delivered: i64,
    pub request_id: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    /// From `Nats-Msg-Id`, which the gateway sets to the message id.
    pub message_id: Option<&'a str>,
    pub received_at_us: Option<u128>,
}

impl<'a> Trace<'a> {
    pub fn of(m: &'a jetstream::Message) -> Self {
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
