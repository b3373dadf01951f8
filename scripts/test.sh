#!/usr/bin/env bash
# The test command: makes sure NATS and Postgres are there (see services.sh), then runs every
# test in the workspace against them. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services
export TEST_NATS_URL=$NATS_URL TEST_DATABASE_URL=$DATABASE_URL
cargo test --workspace "$@"
