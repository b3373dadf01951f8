//! The worker's command: name, version and description. `ingest_shared::cli` adds one option
//! per variable the configuration reads, so `--help` lists them all.

#[derive(clap::Parser)]
#[command(
    name = "ingest-worker",
    version,
    about = "Consumes the webhooks the gateway stored in NATS JetStream and writes them to Postgres",
    long_about = None
)]
pub struct Cli {}
