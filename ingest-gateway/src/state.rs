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
    /// Every `/webhook` publish goes through it (see publisher.rs).
    pub publisher: crate::publisher::Publisher,
    pub subject: async_nats::Subject,
    pub db: PgPool,
    /// The read API's pool (`DATABASE_READ_URL`).
    pub read_db: PgPool,
    pub metrics: PrometheusHandle,
    /// Read-your-writes (see consistency.rs).
    pub watermark: crate::consistency::Watermark,
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
