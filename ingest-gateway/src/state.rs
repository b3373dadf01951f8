use std::sync::Arc;

use async_nats::jetstream;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;

use crate::Config;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub nats: async_nats::Client,
    pub jetstream: jetstream::Context,
    /// Every publish to JetStream goes through it (see ingest/batcher.rs).
    pub batcher: crate::ingest::batcher::Batcher,
    pub subject: async_nats::Subject,
    pub db: PgPool,
    /// The read API's databases: `DATABASE_READ_URL`, and the primary while a replica there
    /// cannot be reached. Handlers take theirs per request (`replica::ReadDb`).
    pub replica: crate::replica::ReadReplica,
    pub metrics: PrometheusHandle,
    /// Read-your-writes (see consistency.rs).
    pub watermark: crate::consistency::Watermark,
    /// One permit per export in progress (`MAX_CONCURRENT_EXPORTS`).
    pub exports: Arc<tokio::sync::Semaphore>,
    /// The sources in use, swapped whole on reload (sources/live.rs).
    pub sources: Arc<crate::sources::live::LiveSources>,
    /// Where exports encode their rows (read/encode_thread.rs).
    pub encode_thread: crate::read::encode_thread::EncodeThread,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
