//! The gateway's command: name, version and description. `ingest_shared::cli` adds one option
//! per variable the configuration reads, so `--help` lists them all.

#[derive(clap::Parser)]
#[command(
    name = "ingest-gateway",
    version,
    about = "Verifies signed webhooks, stores them in NATS JetStream, and serves the read API",
    long_about = None
)]
pub struct Cli {}
