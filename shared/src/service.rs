//! The `main` of both binaries: answer the command line, read the configuration once, start
//! logging, build, serve until SIGTERM or Ctrl-C. Kept here so the release binaries and the test suite's copies of them
//! (tests/bin) are the same code.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use crate::config::{self, ConfigError, Env};
use crate::{build_info, cli, shutdown, telemetry};

/// What a service's library offers its `main`.
pub trait Service: Sized {
    const NAME: &'static str;
    /// The binary's crate version, for the first log line.
    const VERSION: &'static str;
    type Config;

    /// The binary's command (name, version, about); the shared code adds one option per
    /// variable (cli.rs).
    fn command() -> clap::Command;

    fn config_from_env(env: &dyn Env) -> Result<Self::Config, ConfigError>;
    fn log_level(config: &Self::Config) -> &str;
    fn build(config: Self::Config) -> impl Future<Output = anyhow::Result<Self>>;
    fn local_addr(&self) -> SocketAddr;
    fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = anyhow::Result<()>>;
}

/// Runs `S` as a process. Exit codes: 0 after a clean shutdown or `--help`/`--version`, 2 for a
/// bad configuration or command line (the message goes to stderr, before logging exists), 1 for
/// any other failure.
pub fn main<S: Service>() -> ExitCode {
    config::load_dotenv();
    let vars = cli::variables(S::config_from_env);
    let env = cli::parse(S::command(), &vars);
    let config = match S::config_from_env(&env) {
        Ok(config) => config,
        Err(error) => {
            // Logging is not set up yet, and a bad configuration must reach the operator.
            eprintln!("{}: {error}", S::NAME);
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(S::log_level(&config));
    tracing::info!(
        service = S::NAME,
        version = S::VERSION,
        git_sha = build_info::GIT_SHA,
        "starting"
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(error = %error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let app = match S::build(config).await {
            Ok(app) => app,
            Err(error) => {
                tracing::error!(
                    service = S::NAME,
                    error = format!("{error:#}"),
                    "failed to start"
                );
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(service = S::NAME, addr = %app.local_addr(), "listening");
        match app.run_until_stopped(shutdown::signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(
                    service = S::NAME,
                    error = format!("{error:#}"),
                    "stopped with an error"
                );
                ExitCode::FAILURE
            }
        }
    })
}

/// Implements [`Service`] for a binary's `Application`, which both crates shape alike: a
/// `Config::from_env`, a `log_level` field, `build`, `local_addr` and `run_until_stopped`, and a
/// `clap::Parser` for the command.
#[macro_export]
macro_rules! impl_service {
    ($app:ty, $config:ty, $cli:ty, $name:literal) => {
        impl $crate::service::Service for $app {
            const NAME: &'static str = $name;
            const VERSION: &'static str = $crate::build_info::VERSION;
            type Config = $config;

            fn command() -> ::clap::Command {
                <$cli as ::clap::CommandFactory>::command()
            }

            fn config_from_env(
                env: &dyn $crate::config::Env,
            ) -> Result<$config, $crate::config::ConfigError> {
                <$config>::from_env(env)
            }
            fn log_level(config: &$config) -> &str {
                &config.log_level
            }
            async fn build(config: $config) -> anyhow::Result<Self> {
                <$app>::build(config).await
            }
            fn local_addr(&self) -> ::std::net::SocketAddr {
                <$app>::local_addr(self)
            }
            async fn run_until_stopped(
                self,
                shutdown: impl ::std::future::Future<Output = ()> + Send + 'static,
            ) -> anyhow::Result<()> {
                <$app>::run_until_stopped(self, shutdown).await
            }
        }
    };
}
