//! The streamed `GET /messages?format=ndjson|csv`: every match of the filters, read by keyset in
//! round trips of a bounded number of rows and written out one round trip at a time, so neither
//! the gateway nor the database holds the whole result.
//!
//! A connection is taken from the pool for each round trip only: a slow client holds none while
//! it reads. The stream holds the export's permit (`MAX_CONCURRENT_EXPORTS`); when the client goes
//! away the server drops the stream, and with it the permit and any round trip in progress.
//! Rows are read without one transaction around them: each round trip sees what was committed
//! when it ran, and read-your-writes (the wait before the first) covers every message
//! acknowledged before the request.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use sqlx::PgPool;
use tokio::sync::OwnedSemaphorePermit;

use super::encode::{Encoder, ExportRow};
use super::params::Params;
use crate::metrics;

/// One export in progress; [`Export::into_stream`] writes it out.
pub struct Export {
    db: PgPool,
    params: Params,
    encoder: Encoder,
    rows_per_trip: i64,
    /// The last row sent: where the next round trip starts.
    after: Option<(DateTime<Utc>, String)>,
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
}

impl Export {
    pub fn new(
        db: PgPool,
        params: Params,
        rows_per_trip: i64,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        let encoder = Encoder::new(params.format, params.include_raw);
        Self {
            db,
            params,
            encoder,
            rows_per_trip,
            after: None,
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
        let rows = self.fetch().await?;
        self.done = (rows.len() as i64) < self.rows_per_trip;
        let mut out = Vec::with_capacity(rows.len() * 160 + 64);
        if !self.started {
            self.started = true;
            self.encoder.header(&mut out)?;
        }
        self.encoder.rows(&rows, &mut out)?;
        metrics::export_rows(self.params.format, rows.len());
        if let Some(last) = rows.into_iter().last() {
            self.after = Some((last.ts, last.message_id));
        }
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(Bytes::from(out)))
    }

    async fn fetch(&self) -> sqlx::Result<Vec<ExportRow>> {
        let p = &self.params;
        let (after_ts, after_id) = match &self.after {
            Some((ts, id)) => (Some(*ts), Some(id.as_str())),
            None => (None, None),
        };
        sqlx::query_as::<_, ExportRow>(include_str!("export_batch.sql"))
            .bind(p.from.as_deref())
            .bind(p.to.as_deref())
            .bind(p.since)
            .bind(p.until)
            .bind(p.pattern.as_deref())
            .bind(after_ts)
            .bind(after_id)
            .bind(p.include_raw)
            .bind(self.rows_per_trip)
            .fetch_all(&self.db)
            .await
    }
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
