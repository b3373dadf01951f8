#!/usr/bin/env bash
# The lint gate `.ci/run` runs before the tests: formatting, clippy with warnings as errors over
# every crate and target of the workspace, no dependency that no code uses (cargo-machete,
# installed from crates.io when missing; a false positive goes in the crate's
# [package.metadata.cargo-machete] ignored list, with the reason), and .sqlx/ matching the
# statements and migrations (scripts/sqlx-prepare.sh --check, on the Postgres services.sh finds
# or starts).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
# clippy builds the gateway's jemalloc, whose build runs `make`.
ensure_build_tools
echo "[lint] cargo fmt --check" >&2
cargo fmt --all -- --check
echo "[lint] cargo clippy --all-targets -D warnings" >&2
cargo clippy --workspace --all-targets -q -- -D warnings
echo "[lint] cargo machete (unused dependencies)" >&2
# An unoptimised build: it compiles in far less time than a release one, and a scan of this
# workspace takes no time either way.
command -v cargo-machete >/dev/null || cargo install --locked --debug -q cargo-machete
cargo machete
echo "[lint] .sqlx/ up to date (scripts/sqlx-prepare.sh --check)" >&2
scripts/sqlx-prepare.sh --check
