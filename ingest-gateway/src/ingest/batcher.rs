//! The batcher: one task that hands the publishes of concurrent requests to NATS together
//! (publish.rs sends each message through it and awaits its PubAck).
//!
//! When each request task publishes on its own, the NATS client's connection task is woken
//! right after each one (tokio runs a freshly woken task next) and writes every message in a
//! syscall of its own; nats-server then pays a read, a store and a PubAck write per message,
//! about four times its cost per message under a publisher that keeps many in flight (see
//! BENCHMARKS.md). Here the requests queue their publish, and one task sends whatever has queued
//! after letting every other ready task run, so one wake of the connection carries them all.
//! Each request still awaits its own PubAck: batching changes how bytes reach the socket, not
//! what a 200 means.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture, context::PublishError};
use tokio::sync::{mpsc, oneshot};

/// Publishes taken per round; past it the next round starts at once.
const MAX_BATCH: usize = 256;

type Sent = Result<PublishAckFuture, PublishError>;

struct Job {
    subject: async_nats::Subject,
    headers: HeaderMap,
    payload: bytes::Bytes,
    sent: oneshot::Sender<Sent>,
}

/// The handle requests publish through; the task behind it ends when the last handle is dropped.
#[derive(Clone)]
pub struct Batcher {
    jobs: mpsc::Sender<Job>,
}

/// The batcher task is gone (it only stops when every handle is dropped, so this is a bug or
/// a runtime shutting down).
#[derive(Debug)]
pub struct Closed;

impl Batcher {
    /// `capacity` bounds the publishes queued but not yet handed to the client; the client's own
    /// in-flight bound (`max_ack_inflight`) applies after that.
    pub fn spawn(jetstream: jetstream::Context, capacity: usize) -> Self {
        let (jobs, queue) = mpsc::channel(capacity.max(1));
        tokio::spawn(run(jetstream, queue));
        Self { jobs }
    }

    /// Queues the publish and returns once it is handed to the NATS client; await the returned
    /// future for the PubAck.
    pub async fn publish(
        &self,
        subject: async_nats::Subject,
        headers: HeaderMap,
        payload: bytes::Bytes,
    ) -> Result<Sent, Closed> {
        let (sent, handed) = oneshot::channel();
        let job = Job {
            subject,
            headers,
            payload,
            sent,
        };
        self.jobs.send(job).await.map_err(|_| Closed)?;
        handed.await.map_err(|_| Closed)
    }
}

async fn run(jetstream: jetstream::Context, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        if batch.len() < MAX_BATCH {
            // Let every task that is ready now (other connections whose requests just arrived)
            // run and queue its publish before this round goes out.
            tokio::task::yield_now().await;
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        for job in batch.drain(..) {
            let sent = jetstream
                .publish_with_headers(job.subject, job.headers, job.payload)
                .await;
            // The request may have timed out and gone; its publish still went out, which is
            // what a retrying sender expects (the stream de-duplicates its retry).
            let _ = job.sent.send(sent);
        }
    }
}
