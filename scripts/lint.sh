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

# Supply chain (deny.toml): licenses, bans and sources need only Cargo.lock and the local registry,
# so they always run. Advisories need the RustSec database, which is cloned from GitHub: when it
# cannot be fetched, the check runs on a copy fetched earlier (said so), or is skipped with a
# message; a network failure never fails the gate, and never passes it silently either.
echo "[lint] cargo deny check licenses bans sources" >&2
command -v cargo-deny >/dev/null || cargo install --locked -q cargo-deny
cargo deny check licenses bans sources
if cargo deny fetch db >/dev/null 2>&1; then
  echo "[lint] cargo deny check advisories" >&2
  cargo deny check advisories
elif compgen -G "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/*/crates" >/dev/null; then
  echo "[lint] cargo deny check advisories: the advisory database could not be fetched;" \
    "checking against the copy fetched earlier, which may miss recent advisories" >&2
  cargo deny --offline check advisories
else
  echo "[lint] SKIPPED cargo deny check advisories: the advisory database" \
    "(https://github.com/RustSec/advisory-db) could not be fetched and no earlier copy exists;" \
    "known vulnerabilities were NOT checked (run \`cargo deny fetch db\` where GitHub answers)" >&2
fi
