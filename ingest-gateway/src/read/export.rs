//! The streamed `GET /messages?format=ndjson|csv`: every match of the filters, read by keyset in
//! round trips of a bounded number of rows and written out one round trip at a time, so neither
//! the gateway nor the database holds the whole result.
//!
//! A connection is taken from the pool for each round trip only: a slow client holds none while
//! it reads (past the one round trip read ahead). The stream holds the export's permit (`MAX_CONCURRENT_EXPORTS`); when the client goes
//! away the server drops the stream, and with it the permit and any round trip in progress.
//! Rows are read without one transaction around them: each round trip sees what was committed
//! when it ran, and read-your-writes (the wait before the first) covers every message
//! acknowledged before the request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use sqlx::PgPool;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::AbortOnDropHandle;

use super::encode::{Encoder, ExportRow};
use super::encode_thread::EncodeThread;
use super::params::Params;
use crate::metrics;

/// What every round trip of one export asks.
struct Query {
    db: PgPool,
    params: Params,
    rows_per_trip: i64,
}

/// Holds an export to a rate of rows: without it one export takes as much of the database and
/// of the gateway's threads as it can, and the ingest path's latency is what pays.
struct Pace {
    rows_per_sec: f64,
    since: tokio::time::Instant,
    rows: u64,
}

impl Pace {
    fn new(rows_per_sec: u32) -> Option<Self> {
        (rows_per_sec > 0).then(|| Self {
            rows_per_sec: f64::from(rows_per_sec),
            since: tokio::time::Instant::now(),
            rows: 0,
        })
    }

    /// Waits until the rows sent so far keep to the rate, then counts `rows` in.
    async fn next(&mut self, rows: usize) {
        let due = self.since + Duration::from_secs_f64(self.rows as f64 / self.rows_per_sec);
        tokio::time::sleep_until(due).await;
        self.rows += rows as u64;
    }
}

type Trip = AbortOnDropHandle<sqlx::Result<Vec<ExportRow>>>;

/// One export in progress; [`Export::into_stream`] writes it out.
///
/// The next round trip is sent as soon as the previous one's rows are in (and due, at the
/// export's pace), so the database works on it while those rows are encoded and sent: at most
/// two round trips' rows are held. Encoding runs on a thread of its own at a lower CPU priority
/// (encode_thread.rs), so a long chunk never holds up the requests that share the runtime's
/// threads (the ingest path's among them).
pub struct Export {
    query: Arc<Query>,
    encoder: Encoder,
    encode_thread: EncodeThread,
    /// The round trip in flight; aborted with the export.
    next: Option<Trip>,
    pace: Option<Pace>,
    started: bool,
    done: bool,
    _permit: OwnedSemaphorePermit,
    _gauge: metrics::ExportInProgress,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("export query: {0}")]
    Db(#[from] sqlx::Error),
    #[error("export encoding: {0}")]
    Encode(#[from] csv::Error),
    #[error("export task: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("export encoding panicked")]
    EncodeThread,
}

impl Export {
    pub fn new(
        db: PgPool,
        params: Params,
        rows_per_trip: i64,
        rows_per_sec: u32,
        with_source: bool,
        encode_thread: EncodeThread,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        let encoder = Encoder::new(params.format, params.include_raw, with_source);
        Self {
            query: Arc::new(Query {
                db,
                params,
                rows_per_trip,
            }),
            encoder,
            encode_thread,
            next: None,
            pace: Pace::new(rows_per_sec),
            started: false,
            done: false,
            _permit: permit,
            _gauge: metrics::ExportInProgress::start(),
        }
    }

    /// The response body: one chunk per round trip (the first also carries the CSV header).
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, ExportError>> + Send + 'static {
        futures::stream::try_unfold(self, |mut export| async move {
            Ok(export.next_chunk().await?.map(|chunk| (chunk, export)))
        })
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ExportError> {
        if self.done {
            return Ok(None);
        }
        let trip = match self.next.take() {
            Some(trip) => trip,
            None => send_trip(self.query.clone(), None),
        };
        let rows = trip.await??;
        // The next round trip leaves when these rows are due, not before: the database's work
        // keeps to the pace too, not just what is sent.
        if let Some(pace) = &mut self.pace {
            pace.next(rows.len()).await;
        }
        self.done = (rows.len() as i64) < self.query.rows_per_trip;
        if let (false, Some(last)) = (self.done, rows.last()) {
            let after = (last.ts, last.message_id.clone());
            self.next = Some(send_trip(self.query.clone(), Some(after)));
        }
        let (encoder, header, count) = (self.encoder, !self.started, rows.len());
        self.started = true;
        let out = self
            .encode_thread
            .run(move || -> csv::Result<Vec<u8>> {
                let mut out = Vec::with_capacity(rows.len() * 320 + 64);
                if header {
                    encoder.header(&mut out)?;
                }
                encoder.rows(&rows, &mut out)?;
                Ok(out)
            })
            .await
            .ok_or(ExportError::EncodeThread)??;
        metrics::export_rows(self.query.params.format, count);
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(Bytes::from(out)))
    }
}

/// Sends the round trip after `after` (the first when `None`).
fn send_trip(query: Arc<Query>, after: Option<(DateTime<Utc>, String)>) -> Trip {
    AbortOnDropHandle::new(tokio::spawn(async move {
        let p = &query.params;
        let (after_ts, after_id) = match &after {
            Some((ts, id)) => (Some(*ts), Some(id.as_str())),
            None => (None, None),
        };
        sqlx::query_file_as!(
            ExportRow,
            "src/read/export_batch.sql",
            p.from.as_deref(),
            p.to.as_deref(),
            p.since,
            p.until,
            p.pattern.as_deref(),
            after_ts,
            after_id,
            p.include_raw,
            query.rows_per_trip,
            p.source.as_deref()
        )
        .fetch_all(&query.db)
        .await
    }))
}

/// A meaningful file name: the filters' time range, its open ends as `start` and the time of the
/// request (`20250115T100000Z`).
pub fn file_name(params: &Params, now: DateTime<Utc>) -> String {
    let stamp = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    let since = params.since.map_or_else(|| "start".to_owned(), stamp);
    let until = stamp(params.until.unwrap_or(now));
    let ext = params.format.name();
    format!("messages-{since}-{until}.{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    // Paused time: the clock moves only by the pace's own sleeps, so the test measures the pace
    // and nothing else.
    #[tokio::test(start_paused = true)]
    async fn a_paced_export_sends_its_rows_no_faster_than_the_rate() {
        let start = Instant::now();
        let mut pace = Pace::new(1000).expect("a rate");
        pace.next(1000).await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first round trip waits for nothing"
        );
        pace.next(500).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        pace.next(1000).await;
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
    }

    #[test]
    fn a_rate_of_zero_is_unpaced() {
        assert!(Pace::new(0).is_none());
    }
}
