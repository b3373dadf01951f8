// jemalloc instead of glibc's malloc: a profile of the accept path had a fifth of the gateway's
// CPU in glibc's allocator (arena locks between the runtime's threads, and the consolidation a
// large allocation triggers: hyper allocates its header arrays per request). With jemalloc the
// gateway accepts ~20% more per core-second; mimalloc did as well but doubled the RSS
// (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    ingest_shared::service::main::<ingest_gateway::Application>()
}
