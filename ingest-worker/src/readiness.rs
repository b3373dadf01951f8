//! Ready means this worker can take messages off the consumer and commit them. The report
//! itself is `ingest_shared::health`; its probe also refreshes the worker's lag and pool gauges
//! here, every `LAG_POLL_SECS`.

use std::time::Duration;

use ingest_shared::health::{self, CHECK_TIMEOUT, Check, Readiness};
use ingest_shared::search_index::IndexState;

use crate::metrics;
use crate::state::AppState;
use crate::store;

impl Readiness for AppState {
    const GAUGE: &'static str = metrics::READY;

    async fn checks(&self) -> Vec<Check> {
        let (database, consumer) = tokio::join!(health::database(&self.db), self.check_consumer());
        vec![("database", database), ("consumer", consumer)]
    }

    async fn search_index(&self) -> Option<IndexState> {
        health::search_index(&self.db).await
    }

    /// Stream fill, consumer lag, pool use and the NATS connection state.
    async fn refresh(&self) {
        // One STREAM.INFO request: the stream's figures come with it (`cached_info`).
        let info = async {
            let stream = self
                .jetstream
                .get_stream(&self.config.nats.stream)
                .await
                .ok()?;
            let consumer = stream
                .consumer_info(&self.config.consumer.durable)
                .await
                .ok();
            Some((stream.cached_info().clone(), consumer))
        };
        if let Ok(Some((stream, consumer))) =
            tokio::time::timeout(Duration::from_secs(5), info).await
        {
            ::metrics::gauge!(metrics::STREAM_MESSAGES).set(stream.state.messages as f64);
            ::metrics::gauge!(metrics::STREAM_BYTES).set(stream.state.bytes as f64);
            ::metrics::gauge!(metrics::STREAM_MAX_MESSAGES).set(stream.config.max_messages as f64);
            ::metrics::gauge!(metrics::STREAM_MAX_BYTES).set(stream.config.max_bytes as f64);
            if let Some(info) = consumer {
                ::metrics::gauge!(metrics::CONSUMER_PENDING).set(info.num_pending as f64);
                ::metrics::gauge!(metrics::CONSUMER_ACK_PENDING).set(info.num_ack_pending as f64);
                ::metrics::gauge!(metrics::CONSUMER_REDELIVERED).set(info.num_redelivered as f64);
            }
        }
        let pool = &self.db;
        ::metrics::gauge!(metrics::DB_POOL_CONNECTIONS, "state" => "idle")
            .set(pool.num_idle() as f64);
        ::metrics::gauge!(metrics::DB_POOL_CONNECTIONS, "state" => "in_use")
            .set(pool.size().saturating_sub(pool.num_idle() as u32) as f64);
        let connected = health::nats_connected(&self.nats);
        ::metrics::gauge!(metrics::NATS_CONNECTED).set(if connected { 1.0 } else { 0.0 });
        // Before the migration has run the table lacks `kind`: the gauges keep their last value.
        match store::dead_letters_by_kind(&self.db).await {
            Ok(counts) => {
                for (kind, count) in counts {
                    metrics::dead_letters_stored(kind, count);
                }
            }
            Err(error) => tracing::debug!(%error, "dead letters not counted"),
        }
    }
}

impl AppState {
    async fn check_consumer(&self) -> Result<(), &'static str> {
        if !health::nats_connected(&self.nats) {
            return Err("nats disconnected");
        }
        let info = async {
            let stream = self
                .jetstream
                .get_stream(&self.config.nats.stream)
                .await
                .map_err(|_| "stream missing")?;
            stream
                .consumer_info(&self.config.consumer.durable)
                .await
                .map_err(|_| "consumer missing")
        };
        match tokio::time::timeout(CHECK_TIMEOUT, info).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err("jetstream timed out"),
        }
    }
}
