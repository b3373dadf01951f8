//! Read-your-writes: a read waits until every message JetStream had acknowledged when the read
//! began is stored in Postgres (or dead-lettered), whichever gateway took it.
//!
//! The watermark is the stream itself. The stream is a WorkQueue: a message leaves it only when a
//! worker acks it, and a worker acks only after its batch committed (or after the dead letter
//! committed, with `Term`). So one `STREAM.INFO` answers both questions a read has: `last_seq`,
//! the newest message any gateway was acknowledged for, and `first_seq`, the oldest still
//! waiting. Every message below `first_seq` is readable. A read takes `last_seq` from a probe
//! sent after it arrived, then waits for a probe whose `first_seq` has passed it.
//!
//! Probes are single-flight (flight.rs): one at a time, shared by every read waiting for one. A
//! read that arrives while a probe is in flight waits for the next, because the one in flight may
//! have been answered before that read's write was. On an idle system a read costs one round
//! trip. With `DATABASE_READ_URL` on a replica, the read then waits for the replica to replay
//! what the primary committed (replica.rs), inside the same timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State as ConnectionState;
use async_nats::jetstream;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tokio_util::sync::CancellationToken;

use crate::flight::Flights;
use crate::metrics;
use crate::prefer::Preferences;
use crate::replica::{ReadReplica, Source};
use crate::state::AppState;

pub static CONSISTENCY: HeaderName = HeaderName::from_static("consistency");

/// While workers are behind, back-to-back probes are spaced by this much, so a crowd of waiting
/// reads costs NATS a bounded rate of requests rather than a busy loop. With nothing pending,
/// probes are not spaced: a read's wait is then its round trip alone.
const PROBE_GAP: Duration = Duration::from_millis(1);

/// How a read met the guarantee; the `Consistency` response header and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every message acknowledged before the read began is in the answer.
    Fresh,
    /// The wait timed out, or NATS could not be asked: the answer is what is stored now.
    Stale,
    /// The request opted out (`Prefer: consistency=eventual`) or the wait is disabled.
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Fresh, Outcome::Stale, Outcome::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Fresh => "fresh",
            Outcome::Stale => "stale",
            Outcome::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Marks {
    /// The newest message JetStream has acknowledged to any publisher.
    last_seq: u64,
    /// Every message up to here is stored or dead-lettered.
    stored_through: u64,
}

impl Marks {
    fn of(state: &jetstream::stream::State) -> Self {
        let stored_through = if state.messages == 0 {
            state.last_sequence
        } else {
            state.first_sequence.saturating_sub(1)
        };
        Self {
            last_seq: state.last_sequence,
            stored_through,
        }
    }
}

/// The gateway's read-your-writes watermark; cheap to clone.
#[derive(Clone)]
pub struct Watermark(Arc<Shared>);

struct Shared {
    client: async_nats::Client,
    timeout: Duration,
    /// `STREAM.INFO` requests; `None` answers a failed one.
    probes: Flights<Marks>,
}

impl Watermark {
    /// Starts the prober; it stops when `cancel` fires. `timeout` zero disables the wait.
    pub fn spawn(
        client: async_nats::Client,
        jetstream: jetstream::Context,
        stream: String,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> Self {
        let shared = Arc::new(Shared {
            client,
            timeout,
            probes: Flights::new(),
        });
        if !timeout.is_zero() {
            tokio::spawn(prober(shared.clone(), jetstream, stream, cancel));
        }
        Self(shared)
    }

    /// Waits, at most the configured timeout, until every message acknowledged before this call
    /// is readable, and says where to read it: with a read replica, the wait includes its replay
    /// of those commits (replica.rs). A read that is not `Fresh` goes where reads go now.
    pub async fn wait(&self, opt_out: bool, replica: &ReadReplica) -> (Outcome, Source) {
        if opt_out || self.0.timeout.is_zero() {
            return (Outcome::Skipped, replica.source());
        }
        // A disconnected client would only queue the request until the timeout.
        if self.0.client.connection_state() != ConnectionState::Connected {
            return (Outcome::Stale, replica.source());
        }
        let started = Instant::now();
        let readable = tokio::time::timeout(self.0.timeout, async {
            match self.caught_up().await {
                Outcome::Fresh => replica.caught_up().await,
                Outcome::Stale | Outcome::Skipped => None,
            }
        })
        .await;
        metrics::read_consistency_wait(started.elapsed());
        match readable {
            Ok(Some(source)) => (Outcome::Fresh, source),
            Ok(None) | Err(_) => (Outcome::Stale, replica.source()),
        }
    }

    async fn caught_up(&self) -> Outcome {
        let Some(first) = self.next_probe().await else {
            return Outcome::Stale;
        };
        let target = first.last_seq;
        let mut marks = first;
        while marks.stored_through < target {
            match self.next_probe().await {
                Some(next) => marks = next,
                None => return Outcome::Stale,
            }
        }
        Outcome::Fresh
    }

    /// The answer of a probe sent after this call began (single flight: shared with every
    /// caller waiting at the same time).
    async fn next_probe(&self) -> Option<Marks> {
        self.0.probes.next().await
    }
}

async fn prober(
    shared: Arc<Shared>,
    jetstream: jetstream::Context,
    stream: String,
    cancel: CancellationToken,
) {
    // A handle only (no request): the name was already checked when the stream was set up.
    let stream = match jetstream.get_stream_no_info(&stream).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "read consistency disabled: every read will be stale");
            return;
        }
    };
    // Logged when probes start failing and when they recover, not once per read.
    let mut failing = false;
    while let Some(ticket) = shared.probes.pending(&cancel).await {
        let sent = Instant::now();
        let answer = match tokio::time::timeout(shared.timeout, stream.get_info()).await {
            Ok(Ok(info)) => Ok(Marks::of(&info.state)),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("timed out".to_owned()),
        };
        match (&answer, failing) {
            (Err(error), false) => {
                tracing::warn!(%error, "read consistency probes failing; reads are served stale")
            }
            (Ok(_), true) => tracing::info!("read consistency probes answer again"),
            _ => {}
        }
        failing = answer.is_err();
        let answer = answer.ok();
        shared.probes.answer(ticket, answer);
        if answer.is_none_or(|m| m.stored_through < m.last_seq) {
            tokio::time::sleep_until((sent + PROBE_GAP).into()).await;
        }
    }
}

/// The read routes' layer: waits for the watermark, then serves, and says how in the
/// `Consistency` header.
pub async fn layer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let opt_out = Preferences::of(request.headers()).eventual_consistency;
    let (outcome, source) = state.watermark.wait(opt_out, &state.replica).await;
    metrics::read_consistency(outcome);
    if let Source::Primary(reason) = source {
        metrics::read_replica_fallback(reason);
    }
    request.extensions_mut().insert(source);
    let mut response = next.run(request).await;
    mark(response.headers_mut(), outcome, opt_out);
    response
}

fn mark(headers: &mut HeaderMap, outcome: Outcome, opt_out: bool) {
    headers.insert(
        CONSISTENCY.clone(),
        HeaderValue::from_static(outcome.as_str()),
    );
    if opt_out {
        headers.append(
            crate::prefer::PREFERENCE_APPLIED.clone(),
            HeaderValue::from_static("consistency=eventual"),
        );
    }
}
