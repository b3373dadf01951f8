#!/usr/bin/env bash
# The test command: makes sure NATS and Postgres are there (see services.sh), then runs every
# test in the workspace against them: with cargo-nextest when it is installed (tests of every
# binary side by side, settings in .config/nextest.toml), otherwise with cargo test. Extra
# arguments go to `cargo nextest run` (or `cargo test`); NEXTEST=0 uses cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services
full=$(($# == 0))

# What the run fetches from package registries is fetched in the background while the tests
# compile: Debian's packages the tests need, and for a full run the tools of the checks after
# them. One job, so that two apt-get never wait on each other's lock.
PREPARE_LOG=$DATA/test-prepare.log
prepare() {
  # The cluster test in tests/deployment.rs starts nats-server processes of its own, even when
  # the NATS above was already running (and so never installed here).
  command -v nats-server >/dev/null || [[ -x /usr/sbin/nats-server ]] || apt_install nats-server
  # tests/browser.rs drives Debian's chromium through chromedriver (the console and /docs).
  command -v chromedriver >/dev/null || [[ -x /usr/bin/chromedriver ]] ||
    apt_install chromium chromium-driver
  if ((full)); then
    command -v npm >/dev/null || apt_install npm
    ./scripts/check-deploy.sh --install
    if [[ -z ${SKIP_SCHEMATHESIS:-} ]]; then ./scripts/schemathesis.sh --install; fi
  fi
}
prepare >"$PREPARE_LOG" 2>&1 &
PREPARE=$!
finish_prepare() {
  if ! wait "$PREPARE"; then
    cat "$PREPARE_LOG" >&2
    echo "[test] installing what the tests need failed (above)" >&2
    exit 1
  fi
}

export TEST_NATS_URL=$NATS_URL TEST_DATABASE_URL=$DATABASE_URL
if [[ ${NEXTEST:-1} != 0 ]] && cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-run "$@"
  finish_prepare
  # Nextest does not run doctests; they go first, so that nextest's summary closes the run.
  if ((full)); then cargo test --workspace --doc; fi
  cargo nextest run --workspace "$@"
else
  cargo test --workspace --no-run "$@"
  finish_prepare
  cargo test --workspace --no-fail-fast "$@"
fi

# The files the pages embed are the pinned npm packages' (scripts/vendor-ui.sh; needs npm and
# the npm registry).
if ((full)); then
  ./scripts/vendor-ui.sh --check
fi

# The deployment files, without Docker: the compose schema, and promtool when installed.
if ((full)); then
  ./scripts/check-deploy.sh
fi

# Property-based API testing against the gateway's OpenAPI document (schemathesis from PyPI):
# no 5xx, every answer as documented. A fixed seed keeps CI reproducible; SKIP_SCHEMATHESIS=1 skips.
if [[ -z ${SKIP_SCHEMATHESIS:-} ]] && ((full)); then
  # The binaries the test build just made (tests/bin: the same main), so nothing compiles twice.
  GATEWAY_BIN=target/debug/test-ingest-gateway WORKER_BIN=target/debug/test-ingest-worker \
    ./scripts/schemathesis.sh
fi

# The fuzz target (fuzz/README.md) needs nightly and cargo-fuzz; run it briefly when both are
# there, otherwise say so. Its properties also run on stable as proptests in shared/tests.
if cargo +nightly --version >/dev/null 2>&1 && cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "[test] fuzzing webhook_body for ${FUZZ_SECONDS:-20} s" >&2
  # The corpus directory is the fuzzer's working set (not committed); libFuzzer needs it to exist.
  mkdir -p fuzz/corpus/webhook_body
  (cd fuzz && cargo +nightly fuzz run webhook_body corpus/webhook_body seeds -- \
    -max_total_time="${FUZZ_SECONDS:-20}")
else
  echo "[test] fuzz target skipped: needs the nightly toolchain and cargo-fuzz (see fuzz/README.md)" >&2
fi
