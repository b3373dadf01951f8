#!/usr/bin/env bash
# Read API benchmark: seeds ROWS messages from SENDERS senders into a database of its own
# (ingest_bench), serves it with a release gateway, and measures p50/p90/p99 with wrk at
# CONNECTIONS concurrent clients for each query of BENCHMARKS.md; then captures each query's
# EXPLAIN ANALYZE (auto_explain) under target/bench-results/. Each case runs with read-your-writes
# on and off (`Prefer: consistency=eventual`), idle and, with WRITE_RATE, again under a steady
# open-loop write load of each WRITE_RATE webhooks/s through the same gateway and a worker (the
# worker's backlog at the end of each case is recorded as lag=).
#
#   scripts/bench-read.sh                       # 1,000,000 rows, 10,000 senders, 8 clients, 20 s each
#   ROWS=100000 DURATION=5s scripts/bench-read.sh
#   REUSE=1 scripts/bench-read.sh               # keep the seeded database from the last run
#   PROFILE=dev scripts/bench-read.sh           # a debug gateway (no release build; slower code)
#   SKIP_BUILD=1 scripts/bench-read.sh          # use the binaries already built
#   WRITE_RATE="2000 5000" scripts/bench-read.sh  # also under 2,000 and 5,000 writes/s (ingest-bench + a worker)
#   CONSISTENCY="on" scripts/bench-read.sh      # only with read-your-writes (default "on off")
#
# Only talks to 127.0.0.1. Needs wrk and psql (installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services

ROWS=${ROWS:-1000000}
SENDERS=${SENDERS:-10000}
RECIPIENTS=${RECIPIENTS:-1000}
CONNECTIONS=${CONNECTIONS:-8}
THREADS=${THREADS:-2}
DURATION=${DURATION:-20s}
PORT=${BENCH_PORT:-18080}
DB=${BENCH_DB:-ingest_bench}
OUT=${BENCH_OUT:-target/bench-results}
CASES=${CASES:-all from since since_until q q_estimated q_from cursor offset stats series_day series_hour series_from}
CONSISTENCY=${CONSISTENCY:-on off}
WRITE_RATE=${WRITE_RATE:-}

command -v wrk >/dev/null || apt_install wrk
command -v psql >/dev/null || apt_install postgresql-client
mkdir -p "$OUT"

# The admin URL with its database replaced by $DB.
BENCH_URL=$(url_with_database "$DATABASE_URL" "$DB")
psql_bench() { psql "$BENCH_URL" -X -q -v ON_ERROR_STOP=1 "$@"; }

PROFILE=${PROFILE:-release}
log "building the gateway ($PROFILE profile)"
[[ ${SKIP_BUILD:-0} == 1 ]] || cargo build --profile "$PROFILE" -q -p ingest-gateway -p ingest-worker -p ingest-bench
BIN_DIR=target/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")
BIN=$BIN_DIR/ingest-gateway
GATEWAY_PID="" WORKER_PID="" WRITER_PID=""
stop_pid() { if [[ -n $1 ]]; then kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi; }
stop_gateway() { stop_pid "$GATEWAY_PID"; GATEWAY_PID=""; }
stop_writes() { stop_pid "$WRITER_PID"; WRITER_PID=""; stop_pid "$WORKER_PID"; WORKER_PID=""; }
trap 'stop_writes; stop_gateway' EXIT
# The stream the gateway publishes to and waits on for read-your-writes; the worker drains it.
export WEBHOOK_SECRET=bench NATS_STREAM=BENCH_READ NATS_SUBJECT=bench.read.messages \
  NATS_CONSUMER=bench-read-worker NATS_MAX_BYTES=$((256 << 20))
"$BIN_DIR/ingest-bench" reset --stream "$NATS_STREAM" >/dev/null 2>&1 || true
start_gateway() { # log-level log-file
  DATABASE_URL=$BENCH_URL GATEWAY_ADDR=127.0.0.1:$PORT LOG_LEVEL=$1 "$BIN" >"$2" 2>&1 &
  GATEWAY_PID=$!
  local deadline=$((SECONDS + 60))
  until curl -fsS "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then log "gateway not ready; see $2"; return 1; fi
    sleep 0.2
  done
}

seeded_rows() { psql_bench -Atc "SELECT total_messages FROM message_totals" 2>/dev/null || echo 0; }

if [[ ${REUSE:-0} == 1 && $(seeded_rows) == "$ROWS" ]]; then
  log "reusing $DB ($ROWS rows)"
  start_gateway warn "$OUT/gateway.log"
else
  psql "$DATABASE_URL" -X -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  # The gateway applies the migrations; it is ready once they are.
  start_gateway warn "$OUT/gateway.log"
  log "seeding $ROWS messages from $SENDERS senders to $RECIPIENTS recipients"
  started=$SECONDS
  # Spread over 2025 in a scrambled order (7919 is prime, so i*7919 mod ROWS is a permutation):
  # the heap order is not the ts order, as with real out-of-order arrivals. 1% of the texts
  # carry the word "refund", which no other text shares a trigram with.
  psql_bench -v rows="$ROWS" -v senders="$SENDERS" -v recipients="$RECIPIENTS" <<'SQL'
DROP INDEX messages_text_trgm_idx;
INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text, stream_seq)
SELECT 'bench-' || lpad(i::text, 8, '0'),
       '+91' || lpad((i % :senders)::text, 7, '0'),
       '+1415' || lpad(((i * 7) % :recipients)::text, 6, '0'),
       t,
       to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       CASE WHEN i % 100 = 42 THEN 'please refund order #' || i
            ELSE (ARRAY['hello there', 'order shipped', 'payment received', 'see you soon',
                        'thanks a lot', 'call me back', 'delivery update', 'invoice attached'])[i % 8 + 1]
                 || ' #' || i END,
       i
FROM generate_series(0, :rows - 1) AS i,
     LATERAL (SELECT date_trunc('second', timestamptz '2025-01-01 00:00:00+00'
                 + ((i::bigint * 7919) % :rows) * (interval '31536000 seconds' / :rows)) AS t) AS x;
CREATE INDEX messages_text_trgm_idx ON messages USING gin (text gin_trgm_ops);
SELECT rebuild_message_stats();
SQL
  psql_bench -c "VACUUM ANALYZE messages" -c "VACUUM ANALYZE sender_stats" -c "VACUUM ANALYZE recipient_stats" -c "VACUUM ANALYZE message_hours" -c "VACUUM ANALYZE message_days"
  log "seeded in $((SECONDS - started)) s"
fi

# A deep page: the cursor of the row 98% of the way in (page ~19,600 of 50 rows).
CURSOR=$(psql_bench -Atc "SELECT encode(convert_to('v1|' || (extract(epoch FROM ts) * 1000000)::bigint || '|' || message_id, 'UTF8'), 'hex')
  FROM messages ORDER BY ts, message_id OFFSET $((ROWS * 98 / 100)) LIMIT 1")

{
  echo "# $(date -u +%FT%TZ) rows=$ROWS senders=$SENDERS recipients=$RECIPIENTS connections=$CONNECTIONS duration=$DURATION"
  echo "# profile=$PROFILE, $(nproc) cores, load average at start: $(cut -d' ' -f1-3 /proc/loadavg), PostgreSQL $(psql_bench -Atc 'SHOW server_version')"
} >"$OUT/results.txt"
# The worker's backlog at the end of a case: reads can only be fresh while the store path keeps up.
worker_lag() {
  [[ -n $WORKER_PID ]] || return 0
  curl -fsS "http://127.0.0.1:$((PORT + 1))/metrics" 2>/dev/null \
    | awk '$1 == "worker_consumer_pending" {printf "lag=%d", $2}'
}
run_cases() { # load label
  local case consistency
  for case in $CASES; do
    for consistency in $CONSISTENCY; do
      export BENCH_CASE=$case BENCH_CONSISTENCY=$consistency BENCH_LOAD=$1 SENDERS BENCH_CURSOR=$CURSOR
      # Warm-up, not recorded: first-touch costs (connections, page cache) are not what is measured.
      wrk -t"$THREADS" -c"$CONNECTIONS" -d3s -s scripts/bench-read.lua "http://127.0.0.1:$PORT" >/dev/null
      wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s scripts/bench-read.lua "http://127.0.0.1:$PORT" \
        | grep '^RESULT' | sed "s/\$/ $(worker_lag)/" | tee -a "$OUT/results.txt"
    done
  done
}
run_cases idle
for rate in $WRITE_RATE; do
  DATABASE_URL=$BENCH_URL WORKER_ADDR=127.0.0.1:$((PORT + 1)) LAG_POLL_SECS=1 LOG_LEVEL=warn \
    "$BIN_DIR/ingest-worker" >"$OUT/worker-$rate.log" 2>&1 &
  WORKER_PID=$!
  # Enough requests to outlast every case; stopped when the cases are done.
  cases=$(wc -w <<<"$CASES") modes=$(wc -w <<<"$CONSISTENCY")
  secs=$(( (${DURATION%s} + 3) * cases * modes + 30 ))
  log "writing $rate webhooks/s for up to $secs s while reading"
  "$BIN_DIR/ingest-bench" http --target "http://127.0.0.1:$PORT" --secret "$WEBHOOK_SECRET" \
    --rate "$rate" --duration "$secs" --connections 64 --run-id "rr$rate-$(date +%s)" \
    --label "read-bench-writes-$rate" >"$OUT/writes-$rate.json" 2>"$OUT/writes-$rate.err" &
  WRITER_PID=$!
  sleep 3
  run_cases "$rate/s"
  # The worker's own view (commit latency, batches): what one batch cycle was under this load.
  curl -fsS "http://127.0.0.1:$((PORT + 1))/metrics" >"$OUT/worker-metrics-$rate.txt" 2>/dev/null || true
  stop_writes
  "$BIN_DIR/ingest-bench" reset --stream "$NATS_STREAM" >/dev/null 2>&1 || true
done
stop_gateway

# EXPLAIN ANALYZE of one request of each case, exactly as the gateway runs it: auto_explain sends
# each plan to the client as a NOTICE, which sqlx logs.
log "capturing plans"
psql "$DATABASE_URL" -X -q -c "ALTER DATABASE $DB SET session_preload_libraries = 'auto_explain'" \
  -c "ALTER DATABASE $DB SET auto_explain.log_min_duration = 0" \
  -c "ALTER DATABASE $DB SET auto_explain.log_analyze = on" \
  -c "ALTER DATABASE $DB SET auto_explain.log_buffers = on" \
  -c "ALTER DATABASE $DB SET auto_explain.log_level = notice"
start_gateway "warn,sqlx::postgres::notice=info" "$OUT/gateway-explain.log"
for case in $CASES; do
  : >"$OUT/gateway-explain.log"
  BENCH_CASE=$case BENCH_CONSISTENCY=off SENDERS=$SENDERS BENCH_CURSOR=$CURSOR \
    wrk -t1 -c1 -d1s -s scripts/bench-read.lua "http://127.0.0.1:$PORT" >/dev/null
  python3 - "$OUT/gateway-explain.log" >"$OUT/explain-$case.txt" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        record = json.loads(line)
    except ValueError:
        continue
    text = next((v for v in record.values() if isinstance(v, str) and "Query Text" in v), None)
    if text is None:
        fields = record.get("fields", {})
        text = next((v for v in fields.values() if isinstance(v, str) and "Query Text" in v), None)
    # The first plan of a read statement, not of the gateway's own start-up or probe queries.
    if text and "FROM message" in text:
        print(text)
        break
PY
done
stop_gateway
psql "$DATABASE_URL" -X -q -c "ALTER DATABASE $DB RESET ALL"
log "results in $OUT/results.txt, plans in $OUT/explain-*.txt"
