//! The durable consumer: pulls batches from JetStream, writes each in one transaction (an
//! idempotent insert, then the read model's upkeep), acks after the commit. Serves health and
//! metrics over HTTP. `main.rs` is a thin shell over [`Application`], so tests run it in-process.
//!
//! The modules import one another one way, down the chain consume -> commit -> store -> batch ->
//! dead_letter (max_deliveries beside commit, everything over metrics and config), so that a
//! change to a lower one never has to look up; a test below fails on any circle.

mod batch;
mod cli;
mod commit;
mod config;
mod consume;
mod dead_letter;
mod max_deliveries;
mod metrics;
pub mod partitions;
mod readiness;
pub mod retention;
mod state;
mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use axum::Router;
use ingest_shared::{db, health, ops, search_index, telemetry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use cli::Cli;
pub use config::{Config, Faults};

use state::{AppState, Inner};

pub struct Application {
    listener: TcpListener,
    state: AppState,
    consumer: Arc<consume::Consumer>,
}

impl Application {
    /// Binds the health listener. Neither NATS nor Postgres has to be up: the worker starts
    /// not-ready and begins consuming when both answer.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = telemetry::metrics_handle();
        crate::metrics::register();
        let client =
            ingest_shared::nats::connect(&config.nats.url, &config.nats.auth, "ingest-worker")
                .await
                .context("NATS_URL")?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .build(client.clone());
        let db = db::lazy_pool(
            &config.database_url,
            config.db_max_connections,
            Duration::from_secs(2),
        )
        .context("DATABASE_URL")?;
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("WORKER_ADDR: cannot listen on {}", config.addr))?;
        let consumer = Arc::new(consume::Consumer {
            config: config.clone(),
            jetstream: jetstream.clone(),
            db: db.clone(),
        });
        let state = AppState::new(Inner {
            config,
            nats: client,
            jetstream,
            db,
            metrics,
        });
        Ok(Self {
            listener,
            state,
            consumer,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Migrates, consumes and serves until `shutdown` resolves; then finishes the batch in hand
    /// (committed and acked, or handed back unacked) and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cancel = CancellationToken::new();
        // Subscribed before the consumer pulls, so that no advisory its pulls cause is missed.
        let advisories = max_deliveries::subscribe(&self.state.nats, &self.state.config).await;
        let max_deliveries = tokio::spawn(
            max_deliveries::Mover::new(
                self.state.config.clone(),
                self.state.jetstream.clone(),
                self.state.db.clone(),
            )
            .run(advisories, cancel.clone()),
        );
        let consuming = {
            let (cancel, consumer, db) =
                (cancel.clone(), self.consumer.clone(), self.state.db.clone());
            let search_index = self.state.config.search_index;
            let partitions = self.state.config.partitions.clone();
            tokio::spawn(async move {
                db::migrate_with_retry(&db, &cancel).await;
                // Until they exist, rows land in the default partition: nothing waits for them.
                tokio::spawn(partitions::keep_ahead(
                    db.clone(),
                    partitions,
                    cancel.clone(),
                ));
                // In the background: a build may take long, and the batches go on meanwhile.
                let (db_bg, cancel_bg) = (db.clone(), cancel.clone());
                tokio::spawn(async move {
                    search_index::keep_in_line(&db_bg, search_index, &cancel_bg).await;
                });
                consumer.run(cancel).await;
            })
        };
        let lag = tokio::spawn(health::probe(
            self.state.clone(),
            self.state.config.lag_poll,
            cancel.clone(),
        ));
        // Each retention setting runs its own loop, whether or not the other is set.
        let config = &self.state.config;
        let retention: Vec<_> = [
            (config.retention.clone(), retention::Expiring::Messages),
            (
                config.dead_letter_retention.clone(),
                retention::Expiring::DeadLetters,
            ),
        ]
        .into_iter()
        .filter_map(|(settings, what)| {
            let settings = settings?;
            Some(tokio::spawn(retention::run(
                self.state.db.clone(),
                settings,
                what,
                cancel.clone(),
            )))
        })
        .collect();

        let router = router(self.state.clone());
        let http_cancel = cancel.clone();
        let http = axum::serve(self.listener, router)
            .with_graceful_shutdown(async move { http_cancel.cancelled().await });
        let http = tokio::spawn(async move { http.await });

        shutdown.await;
        cancel.cancel();
        let consumed = consuming.await;
        let _ = max_deliveries.await;
        lag.abort();
        // Awaited, not aborted: a DELETE in flight finishes its (short) transaction first.
        for retention in retention {
            let _ = retention.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.state.nats.flush()).await;
        let served = http.await;
        tracing::info!("worker stopped");
        consumed.context("consumer task")?;
        served.context("http task")?.context("http server")
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .merge(ops::router(state.metrics.clone()))
        .with_state(state)
}

ingest_shared::impl_service!(Application, Config, Cli, "ingest-worker");

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn the_modules_import_one_another_without_a_circle() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let sources: BTreeMap<String, String> = std::fs::read_dir(&dir)
            .expect("src/ is readable")
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
            .map(|path| {
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&path).expect("a source file"))
            })
            .filter(|(name, _)| name != "lib" && name != "main")
            .collect();
        // Imports through the crate root or in braces would hide an edge from the search below.
        for (name, source) in &sources {
            for hidden in ["crate::{", "crate::Config", "crate::Faults", "crate::Cli"] {
                assert!(
                    !source.contains(hidden),
                    "{name}.rs: import `{hidden}` by its module path"
                );
            }
        }
        let mut imports: BTreeMap<&str, BTreeSet<&str>> = sources
            .iter()
            .map(|(name, source)| {
                let used = sources
                    .keys()
                    .filter(|other| *other != name)
                    .filter(|other| {
                        source
                            .match_indices(&format!("crate::{other}"))
                            .any(|(at, path)| {
                                !source[at + path.len()..]
                                    .starts_with(|c: char| c == '_' || c.is_alphanumeric())
                            })
                    })
                    .map(String::as_str)
                    .collect();
                (name.as_str(), used)
            })
            .collect();
        // Takes away, round by round, the modules that import nothing left; what remains when
        // none can go is in a circle or above one.
        loop {
            let leaves: Vec<&str> = imports
                .iter()
                .filter(|(_, used)| used.iter().all(|u| !imports.contains_key(u)))
                .map(|(name, _)| *name)
                .collect();
            if leaves.is_empty() {
                break;
            }
            for leaf in leaves {
                imports.remove(leaf);
            }
        }
        assert!(
            imports.is_empty(),
            "modules in or above a circle: {imports:?}"
        );
    }
}
