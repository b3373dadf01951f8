#!/usr/bin/env bash
# The lint gate `.ci/run` runs before the tests: formatting and clippy with warnings as errors,
# over every crate and target of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
# clippy builds the gateway's jemalloc, whose build runs `make`.
ensure_build_tools
echo "[lint] cargo fmt --check" >&2
cargo fmt --all -- --check
echo "[lint] cargo clippy --all-targets -D warnings" >&2
cargo clippy --workspace --all-targets -q -- -D warnings
