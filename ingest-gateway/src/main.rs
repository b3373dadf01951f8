use ingest_gateway::{Application, Config};
use ingest_shared::{config, shutdown, telemetry};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    config::load_dotenv();
    let config = match Config::from_env(&config::ProcessEnv) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ingest-gateway: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init_logging(&config.log_level);
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "gateway failed to start");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %app.local_addr(), "gateway listening");
    match app.run_until_stopped(shutdown::signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "gateway stopped with an error"
            );
            std::process::ExitCode::FAILURE
        }
    }
}
