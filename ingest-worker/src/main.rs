fn main() -> std::process::ExitCode {
    ingest_shared::service::main::<ingest_worker::Application>()
}
