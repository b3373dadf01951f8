#!/usr/bin/env bash
# The ingest benchmark: NATS and Postgres (reused or started, see services.sh), the gateway and
# workers in release mode on a dedicated stream and database, the matrix of BENCHMARKS.md, and the
# tables written into BENCHMARKS.md between its ingest-bench markers.
#
#   scripts/bench.sh              # the full matrix (about 9 minutes on 2 cores)
#   QUICK=1 scripts/bench.sh      # the same matrix, small: a smoke test of the harness
#
# Knobs (environment): BENCH_WORKERS (workers during the HTTP cases, default 1), BENCH_REQUESTS
# (requests per closed-loop case and reference, default 200000),
# BENCH_PORT (gateway port, default 18000; workers use the next ones), BENCH_NO_WRITE=1 (print
# the tables instead of writing BENCHMARKS.md), BENCH_SKIP_BUILD=1 (use the binaries in
# target/release as they are), BENCH_CASES (space-separated subset of
# "refs upkeep closed alone open drain"), BENCH_OPEN_SECS / BENCH_OPEN_RATES (the open-loop cases, default 60 s
# at "5000 10000"; a long run at a sustainable rate is the RSS soak), BENCH_NICE (the CPU
# priority of the gateway and the generator, default -10; see below), BENCH_TEXT (the generator's
# text lengths: "chat", the default, or "short"), BENCH_DB / BENCH_STREAM (the database and stream
# the run creates afresh, default ingest_bench / BENCH, so two runs on one box need not share
# them), and the gateway's and the worker's own variables
# (docs/configuration.md), SEARCH_INDEX among them: the run waits until the database's index
# matches it before measuring anything.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  HTTP_N=30000 HEALTH_N=30000 REF_N=30000 OPEN_SECS=8 DRAIN_N=50000
else
  HTTP_N=${BENCH_REQUESTS:-200000} HEALTH_N=${BENCH_REQUESTS:-200000} REF_N=${BENCH_REQUESTS:-200000}
  OPEN_SECS=${BENCH_OPEN_SECS:-60} DRAIN_N=500000
fi
CASES=${BENCH_CASES:-refs upkeep closed alone open drain}
WORKERS=${BENCH_WORKERS:-1}
PORT=${BENCH_PORT:-18000}
OUT=.data/bench
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
RUN=r$(date +%s)

ADMIN_URL=$DATABASE_URL
BENCH_DB=${BENCH_DB:-ingest_bench}
BENCH_URL=$(url_with_database "$ADMIN_URL" "$BENCH_DB")
export DATABASE_URL=$BENCH_URL
export WEBHOOK_SECRET=${BENCH_SECRET:-bench-secret}
if [[ -n ${BENCH_STREAM:-} ]]; then
  export NATS_STREAM=$BENCH_STREAM NATS_SUBJECT=bench.$BENCH_STREAM.messages
else
  export NATS_STREAM=BENCH NATS_SUBJECT=bench.messages
fi
export NATS_CONSUMER=bench-worker
export LOG_LEVEL=${LOG_LEVEL:-info}

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

# CPU priority on a box where everything competes for 2 cores: the gateway (latency-critical:
# a sender waits on it) and the generator (the instrument: a starved generator measures its own
# stalls) run at nice $BENCH_NICE; the worker, NATS and Postgres stay at 0, so in a storm
# JetStream absorbs what the drain cannot take yet. A deployment does the same with systemd's
# Nice=/CPUWeight= or compose's cpu_shares (docs/operations.md). BENCH_NICE=0 runs everything alike. A
# negative value needs root or CAP_SYS_NICE; without them the run says so and uses 0.
NICE=${BENCH_NICE:--10}
# `nice` warns and runs the command anyway when it may not raise a priority: ask what it got.
if [[ $(nice -n "$NICE" nice 2>/dev/null) != "$NICE" ]]; then
  log "cannot run at nice $NICE here (needs root or CAP_SYS_NICE): everything at 0"
  NICE=0
fi
PRIORITY=(nice -n "$NICE")
BENCH="${PRIORITY[*]} ./target/release/ingest-bench"

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  log "building (release)"
  cargo build --release -q -p ingest-gateway -p ingest-worker -p ingest-bench
fi

log "fresh database $BENCH_DB and stream $NATS_STREAM"
psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" -c "CREATE DATABASE $BENCH_DB" >/dev/null
$BENCH reset --stream "$NATS_STREAM" >/dev/null

GW_PID="" WORKER_PIDS=()
stop_all() {
  [[ -n $GW_PID ]] && kill -TERM "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
  GW_PID=""
  stop_workers
}
stop_workers() {
  local pid
  for pid in "${WORKER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${WORKER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  WORKER_PIDS=()
}
trap 'stop_all' EXIT INT TERM

wait_ready() { # url pid what
  local deadline=$((SECONDS + 60))
  until curl -fsS "$1" >/dev/null 2>&1; do
    kill -0 "$2" 2>/dev/null || { log "$3 exited; see $OUT/$3.err"; exit 1; }
    ((SECONDS < deadline)) || { log "$3 not ready after 60 s"; exit 1; }
    sleep 0.2
  done
}

# Logs are formatted (their CPU is part of what is measured) and then discarded, so the disk
# the logs would land on is not part of the figure.
# On a shared machine someone else's server may hold the port and answer the readiness check.
port_free() { ! port_open 127.0.0.1 "$1" || { log "port $1 is taken: set BENCH_PORT"; exit 1; }; }
start_gateway() {
  port_free "$PORT"
  GATEWAY_ADDR=127.0.0.1:$PORT "${PRIORITY[@]}" ./target/release/ingest-gateway >/dev/null 2>"$OUT/gateway.err" &
  GW_PID=$!
  wait_ready "http://127.0.0.1:$PORT/health/ready" "$GW_PID" gateway
}
start_workers() { # count
  local i pid
  for ((i = 1; i <= $1; i++)); do
    port_free $((PORT + i))
    WORKER_ADDR=127.0.0.1:$((PORT + i)) ./target/release/ingest-worker >/dev/null 2>"$OUT/worker$i.err" &
    pid=$!
    WORKER_PIDS+=("$pid")
    wait_ready "http://127.0.0.1:$((PORT + i))/health/ready" "$pid" "worker$i"
  done
}
watch_args() {
  local w=(--watch "nats=comm:nats-server" --watch "postgres=comm:postgres")
  [[ -n $GW_PID ]] && w+=(--watch "gateway=$GW_PID")
  if ((${#WORKER_PIDS[@]})); then w+=(--watch "worker=$(IFS=,; echo "${WORKER_PIDS[*]}")"); fi
  printf '%s\n' "${w[@]}"
}
bench() { # args...
  local w
  mapfile -t w < <(watch_args)
  $BENCH "$@" "${w[@]}" --out "$RESULTS" --secret "$WEBHOOK_SECRET" >/dev/null
  tail -n 1 "$RESULTS" | cut -c1-400 >&2
}

# The binaries switch the search index in the background after they are ready: measure only once
# the database has what SEARCH_INDEX asks for (and say which indexes `messages` has; the raw
# UNNEST reference copies exactly those).
SEARCH=${SEARCH_INDEX:-trigram}
wait_search_index() {
  local deadline=$((SECONDS + 600)) state=""
  until [[ $state == "$SEARCH" ]]; do
    ((SECONDS < deadline)) || { log "search_index is '$state', not '$SEARCH', after 600 s"; exit 1; }
    sleep 0.5
    state=$(curl -fsS "http://127.0.0.1:$PORT/health/ready" | sed -n 's/.*"search_index":"\([a-z]*\)".*/\1/p' || true)
  done
  log "search_index $state; indexes of messages: $(psql -tA "$BENCH_URL" -c \
    "SELECT string_agg(i.indexname || CASE WHEN x.indisvalid THEN '' ELSE ' (INVALID)' END, ', ' ORDER BY i.indexname)
     FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname JOIN pg_index x ON x.indexrelid = c.oid
     WHERE i.tablename = 'messages'")"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u +%FT%TZ)
start_workers "$WORKERS"
start_gateway
wait_search_index
TARGET=http://127.0.0.1:$PORT

if [[ $CASES == *refs* ]]; then
  for c in 16 64 256; do
    log "reference: GET /health/live, $c connections"
    bench http --target "$TARGET" --path /health/live --connections "$c" --requests "$HEALTH_N" --label "health-c$c"
  done
  for dup in 0 0.2; do
    log "reference: raw JetStream publish, dup $dup"
    bench nats --scratch 1 --requests "$REF_N" --dup "$dup" --inflight 1024 --run-id "$RUN-ref$dup" --label "nats-ref-d$dup"
  done
  log "reference: raw UNNEST upsert of $DRAIN_N rows"
  bench pg --requests "$DRAIN_N" --batch "${BATCH_SIZE:-500}" --run-id "$RUN-pg" --label pg-ref
fi

# What the read model's upkeep costs Postgres per stored row: the worker's insert alone and with
# the upkeep, in alternating passes on a database of its own (the passes empty its tables).
if [[ $CASES == *upkeep* ]]; then
  UPKEEP_DB=${BENCH_DB}_upkeep
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $UPKEEP_DB WITH (FORCE)" -c "CREATE DATABASE $UPKEEP_DB" >/dev/null
  log "reference: the aggregate upkeep, $((DRAIN_N / 2)) rows, insert alone and with the upkeep, 3 rounds"
  $BENCH upkeep --database-url "$(url_with_database "$ADMIN_URL" "$UPKEEP_DB")" --requests "$((DRAIN_N / 2))" \
    --batch "${BATCH_SIZE:-500}" --repeat 3 --run-id "$RUN-upkeep" --label upkeep --out "$RESULTS" >/dev/null
  tail -n 1 "$RESULTS" | cut -c1-400 >&2
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $UPKEEP_DB WITH (FORCE)" >/dev/null
fi

if [[ $CASES == *closed* ]]; then
  for c in 16 64 256; do
    for dup in 0 0.2; do
      log "POST /webhook closed loop: $c connections, $dup re-sends"
      bench http --target "$TARGET" --connections "$c" --dup "$dup" --requests "$HTTP_N" \
        --e2e-db "$BENCH_URL" --run-id "$RUN-c$c-d$dup" --label "webhook-c$c-d$dup" \
        --workers-on-box "$WORKERS"
    done
  done
fi

# The same cases with no worker on the box: the accept path alone, as it runs when the store path
# has cores (or machines) of its own, or is stopped while JetStream absorbs a storm. The rows wait
# in the stream, which is emptied afterwards, so there is no e2e here.
if [[ $CASES == *alone* ]]; then
  stop_workers
  for c in 16 64 256; do
    for dup in 0 0.2; do
      log "POST /webhook closed loop, no worker on the box: $c connections, $dup re-sends"
      bench http --target "$TARGET" --connections "$c" --dup "$dup" --requests "$HTTP_N" \
        --run-id "$RUN-a$c-d$dup" --label "alone-c$c-d$dup" --workers-on-box 0
    done
  done
  $BENCH reset --stream "$NATS_STREAM" --purge 1 >/dev/null
  start_workers "$WORKERS"
fi

if [[ $CASES == *open* ]]; then
  for rate in ${BENCH_OPEN_RATES:-5000 10000}; do
    log "POST /webhook open loop: $rate/s for $OPEN_SECS s"
    bench http --target "$TARGET" --connections 128 --rate "$rate" --duration "$OPEN_SECS" \
      --e2e-db "$BENCH_URL" --run-id "$RUN-o$rate" --label "webhook-open-$rate" \
      --workers-on-box "$WORKERS"
  done
fi

if [[ $CASES == *drain* ]]; then
  for w in 1 2; do
    stop_workers
    psql -q "$BENCH_URL" -c "TRUNCATE messages" >/dev/null
    log "backlog: publishing $DRAIN_N messages with no worker running"
    bench nats --requests "$DRAIN_N" --run-id "$RUN-drain$w" --label "backlog-w$w"
    SINCE=$(($(date +%s%N) / 1000))
    log "drain: $w worker(s)"
    start_workers "$w"
    bench drain --expect "$DRAIN_N" --workers "$w" --since-us "$SINCE" --label "drain-w$w"
  done
fi

stop_all
trap - EXIT INT TERM
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
$BENCH reset --stream "$NATS_STREAM" >/dev/null

TABLES=$($BENCH report --results "$RESULTS")
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git diff --quiet HEAD 2>/dev/null || echo " (with uncommitted changes)")
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
MEM=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
COMMAND=""
for knob in QUICK SEARCH_INDEX BENCH_TEXT BENCH_WORKERS BENCH_REQUESTS BENCH_CASES BENCH_OPEN_SECS BENCH_OPEN_RATES BENCH_SKIP_BUILD BENCH_NICE; do
  [[ -n ${!knob:-} && ${!knob} != 0 ]] && COMMAND+="$knob=${!knob// /,} "
done
COMMAND+="scripts/bench.sh"
# The run's context goes beside the raw results and to the terminal; BENCHMARKS.md gets the table.
cat >"$OUT/context.md" <<EOF
| | |
|---|---|
| command | \`$COMMAND\` (BENCH_WORKERS=$WORKERS; $HTTP_N requests per closed-loop case; open loop ${OPEN_SECS} s; backlog $DRAIN_N) |
| commit | \`$COMMIT\`$DIRTY |
| date | $STARTED |
| machine | $(nproc) cores ($CPU), $MEM, $(uname -r); generator, gateway, workers, NATS and Postgres all on this box |
| load average before / after | $LOAD_BEFORE / $LOAD_AFTER |
| CPU priority | gateway and generator at nice $NICE; workers, NATS and Postgres at 0 (\`BENCH_NICE\`) |
| search index | \`SEARCH_INDEX=$SEARCH\`; text lengths \`${BENCH_TEXT:-chat}\` (\`BENCH_TEXT\`) |
| services | nats-server $(nats-server --version 2>/dev/null | sed 's/^nats-server: //'), $(psql --version | sed 's/^psql (PostgreSQL) /PostgreSQL /'), synchronous_commit=$(psql -tA "$BENCH_URL" -c 'show synchronous_commit') |
EOF
cat "$OUT/context.md" >&2
SECTION=$(printf '%s\n%s\n%s' '<!-- ingest-bench:begin (written by scripts/bench.sh; edit outside these markers) -->' "$TABLES" '<!-- ingest-bench:end -->')
if [[ ${BENCH_NO_WRITE:-0} == 1 ]]; then
  printf '%s\n' "$SECTION"
  exit 0
fi
[[ -f BENCHMARKS.md ]] || printf '# Benchmarks\n\n' >BENCHMARKS.md
printf '%s\n' "$SECTION" >"$OUT/section.md"
if grep -q '<!-- ingest-bench:begin' BENCHMARKS.md; then
  awk -v f="$OUT/section.md" '
    /<!-- ingest-bench:begin/ { while ((getline l < f) > 0) print l; skip = 1; next }
    /<!-- ingest-bench:end -->/ { skip = 0; next }
    !skip { print }' BENCHMARKS.md >"$OUT/BENCHMARKS.md.new"
  mv "$OUT/BENCHMARKS.md.new" BENCHMARKS.md
else
  { echo; cat "$OUT/section.md"; } >>BENCHMARKS.md
fi
log "table written to BENCHMARKS.md (raw results: $RESULTS; the run's context: $OUT/context.md)"
