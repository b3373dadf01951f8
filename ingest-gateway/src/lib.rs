//! The HTTP edge: verifies and validates webhooks, stores them in JetStream, and serves health
//! and metrics. `main.rs` is a thin shell over [`Application`], so tests run it in-process.

mod access;
mod cli;
mod config;
mod consistency;
mod dead_letters;
mod error;
mod flight;
mod ingest;
mod metrics;
mod observe;
mod openapi;
mod overload;
mod prefer;
mod query;
mod read;
mod readiness;
mod replica;
mod routes;
mod serve;
mod sources;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use axum::Router;
use axum::http::{Method, Uri};
use ingest_shared::{db, health, nats, ops, search_index, telemetry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

pub use crate::routes::webhook::RESULTS as WEBHOOK_RESULTS;
pub use cli::Cli;
pub use config::Config;
pub use error::ApiError;

use state::{AppState, Inner};

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    background: CancellationToken,
}

impl Application {
    /// Binds the listener and starts the background set-up (stream, migrations). Neither NATS nor
    /// Postgres has to be up: the gateway starts not-ready and becomes ready when they answer.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = telemetry::metrics_handle();
        crate::metrics::register(&config, &routes::SENDERS);

        let client = nats::connect(&config.nats.url, &config.nats.auth, "ingest-gateway")
            .await
            .context("NATS_URL")?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(config.publish_timeout)
            .max_ack_inflight(config.max_inflight_publishes)
            .backpressure_on_inflight(true)
            .build(client.clone());
        let db = db::lazy_pool(
            &config.database_url,
            config.db_max_connections,
            std::time::Duration::from_secs(2),
        )
        .context("DATABASE_URL")?;
        let replica_options =
            read_options(&config, &config.database_read_url).context("DATABASE_READ_URL")?;
        let read_db = read_pool(&config, replica_options.clone());

        let background = CancellationToken::new();
        let replica = if config.database_read_url == config.database_url {
            replica::ReadReplica::same_as_primary(read_db)
        } else {
            let primary_reads = read_pool(
                &config,
                read_options(&config, &config.database_url).context("DATABASE_URL")?,
            );
            replica::ReadReplica::spawn(
                read_db,
                replica_options,
                primary_reads,
                db.clone(),
                background.clone(),
            )
        };
        {
            let (js, settings, cancel) =
                (jetstream.clone(), config.nats.clone(), background.clone());
            tokio::spawn(
                async move { nats::ensure_stream_with_retry(&js, &settings, &cancel).await },
            );
            let (db, cancel, search_index) = (db.clone(), background.clone(), config.search_index);
            tokio::spawn(async move {
                db::migrate_with_retry(&db, &cancel).await;
                search_index::keep_in_line(&db, search_index, &cancel).await;
            });
        }

        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("GATEWAY_ADDR: cannot listen on {}", config.addr))?;
        let batcher =
            ingest::batcher::Batcher::spawn(jetstream.clone(), config.max_inflight_publishes);
        let watermark = consistency::Watermark::spawn(
            client.clone(),
            jetstream.clone(),
            config.nats.stream.clone(),
            config.read_consistency_timeout,
            background.clone(),
        );
        let sources = sources::live::LiveSources::new(&config);
        sources.clone().watch(background.clone());
        let state = AppState::new(Inner {
            sources,
            subject: config.nats.subject.clone().into(),
            exports: std::sync::Arc::new(tokio::sync::Semaphore::new(
                config.max_concurrent_exports,
            )),
            encode_thread: read::encode_thread::EncodeThread::start()
                .context("cannot start the export encoding thread")?,
            config,
            nats: client,
            jetstream,
            batcher,
            db,
            replica,
            metrics,
            watermark,
        });
        let router = router(state.clone());
        Ok(Self {
            listener,
            router,
            state,
            background,
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

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tokio::spawn(health::probe(
            self.state.clone(),
            readiness::PROBE_INTERVAL,
            self.background.clone(),
        ));
        let header_read_timeout = self.state.config.header_read_timeout;
        let served = serve::serve(self.listener, self.router, header_read_timeout, shutdown).await;
        self.background.cancel();
        // Publishes already acknowledged are stored; this only pushes out what is buffered.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.state.nats.flush()).await;
        tracing::info!("gateway stopped");
        served.context("http server")
    }
}

fn router(state: AppState) -> Router {
    let header_limits = overload::HeaderLimits {
        max_headers: state.config.max_headers,
        max_header_bytes: state.config.max_header_bytes,
    };
    let (api, documented) = OpenApiRouter::new()
        .merge(routes::webhook::router())
        .merge(routes::whatsapp::router())
        .merge(routes::sources::router())
        .merge(reads(state.clone()))
        .merge(admin(state.clone()))
        .split_for_parts();
    let document = openapi::router(documented).route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        access::require_read,
    ));
    // Routes merged before `bounded` share the concurrency bound and the request deadline.
    let api = overload::bounded(api, &state.config);
    Router::new()
        .merge(api)
        .merge(ops::router(state.metrics.clone()))
        .merge(document)
        // The pages' static files: no token (they carry no data), no read-your-writes wait.
        .merge(routes::ui::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            header_limits,
            overload::header_guard,
        ))
        .layer(axum::middleware::from_fn(observe::observe))
        // Outside the access log, which logs the address it settles on.
        .layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::new(state.config.trusted_proxies.clone()),
            sources::client::layer,
        ))
        .with_state(state)
}

/// The read API: behind `READ_TOKENS` when set (access.rs), and every route waits for
/// read-your-writes (consistency.rs) once the caller is admitted.
fn reads(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(routes::messages::router())
        .merge(routes::stats::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            consistency::layer,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            access::require_read,
        ))
}

/// The admin API (`/admin/*`): absent (404) while `ADMIN_TOKENS` is unset, else only with one
/// of its tokens (access.rs). No read-your-writes wait: it reads the primary directly.
fn admin(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(routes::dead_letters::router())
        .merge(routes::sources::admin_router())
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            access::require_admin,
        ))
}

/// How the read API connects. Every query is planned with its actual parameters, because the
/// read queries fold away the filters that are not given (`$n IS NULL OR ...`) and a cached
/// generic plan would keep them all; the timeout bounds what one search can cost.
fn read_options(
    config: &Config,
    url: &ingest_shared::config::SecretUrl,
) -> Result<sqlx::postgres::PgConnectOptions, sqlx::Error> {
    let options = db::connect_options(url)?;
    let timeout_ms = config.read_statement_timeout.as_millis().to_string();
    Ok(options.options([
        ("plan_cache_mode", "force_custom_plan"),
        ("statement_timeout", timeout_ms.as_str()),
        ("default_transaction_read_only", "on"),
    ]))
}

/// A read API pool of its own, so analysts' queries never take the connections the gateway's
/// other work needs. Lazy: the primary's fallback pool opens nothing until a replica fails.
fn read_pool(config: &Config, options: sqlx::postgres::PgConnectOptions) -> sqlx::PgPool {
    db::pool_options(&options)
        .max_connections(config.read_db_max_connections)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options)
}

async fn not_found(_: Method, _: Uri) -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

ingest_shared::impl_service!(Application, Config, Cli, "ingest-gateway");
