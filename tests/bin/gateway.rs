//! The same `main` as ingest-gateway's (allocator included), built by the tests crate so that the
//! fault tests run it without a second `cargo build` (a build of that package alone would unify
//! features differently and recompile much of the dependency tree).
include!("../../ingest-gateway/src/main.rs");
