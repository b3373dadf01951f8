#!/usr/bin/env bash
# The test command: makes sure NATS and Postgres are there (see services.sh), then runs every
# test in the workspace against them. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services
# The cluster test in tests/deployment.rs starts nats-server processes of its own, even when the
# NATS above was already running (and so never installed here).
command -v nats-server >/dev/null || [[ -x /usr/sbin/nats-server ]] || apt_install nats-server
export TEST_NATS_URL=$NATS_URL TEST_DATABASE_URL=$DATABASE_URL
cargo test --workspace "$@"
