//! Ready means a webhook sent now would be stored and readable: a secret to verify it, the
//! database, and the stream. The report itself is `ingest_shared::health`.

use std::time::Duration;

use ingest_shared::health::{self, CHECK_TIMEOUT, Check, ReadReplicaReport, Readiness};
use ingest_shared::search_index::IndexState;

use crate::state::AppState;

/// How often the gateway re-checks readiness for its gauges; `/health/ready` calls update them
/// too.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

impl Readiness for AppState {
    const GAUGE: &'static str = crate::metrics::READY;

    async fn checks(&self) -> Vec<Check> {
        let secret = if self.config.secrets.is_empty() {
            Err("WEBHOOK_SECRET is not set")
        } else {
            Ok(())
        };
        let (database, stream) = tokio::join!(health::database(&self.db), self.check_stream());
        vec![
            ("secret", secret),
            ("database", database),
            ("stream", stream),
        ]
    }

    async fn search_index(&self) -> Option<IndexState> {
        health::search_index(&self.db).await
    }

    fn read_replica(&self) -> Option<ReadReplicaReport> {
        self.replica.report()
    }

    async fn refresh(&self) {
        crate::metrics::nats_connected(health::nats_connected(&self.nats));
    }
}

impl AppState {
    async fn check_stream(&self) -> Result<(), &'static str> {
        if !health::nats_connected(&self.nats) {
            return Err("nats disconnected");
        }
        let name = &self.config.nats.stream;
        match tokio::time::timeout(CHECK_TIMEOUT, self.jetstream.get_stream(name)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err("stream missing"),
            Err(_) => Err("jetstream timed out"),
        }
    }
}
