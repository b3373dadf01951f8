#!/usr/bin/env bash
# Export benchmark (GET /messages?format=ndjson|csv, BENCHMARKS.md "Export"): seeds ROWS messages
# into a database of its own (BENCH_DB, kept and reused by name while it holds ROWS rows), serves
# it with a release gateway, and measures
#   - each format's export of every row: rows/s (the gateway's export_rows_total over curl's
#     time) and the gateway's RSS growth during it (VmRSS sampled every 50 ms);
#   - the ingest path's latency under a steady open-loop RATE webhooks/s (ingest-bench http, a
#     worker storing into the same database) for DURATION s, without and then with NDJSON exports
#     running back to back the whole time.
#
#   scripts/bench-export.sh                     # 1,000,000 rows, 2,000 webhooks/s, 20 s per phase
#   ROWS=100000 DURATION=10 scripts/bench-export.sh
#   SKIP_BUILD=1 scripts/bench-export.sh        # use the release binaries already built
#   EXPORT_ROWS_PER_SEC=0 scripts/bench-export.sh   # exports unpaced (the gateway's setting)
#   BENCH_NICE=0 scripts/bench-export.sh        # every process at the same CPU priority
#
# Only talks to 127.0.0.1. Needs curl and psql (psql installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services

ROWS=${ROWS:-1000000}
RATE=${RATE:-2000}
DURATION=${DURATION:-20}
PORT=${BENCH_PORT:-18090}
DB=${BENCH_DB:-ingest_bench_export}
OUT=${BENCH_OUT:-target/bench-results/export}
command -v psql >/dev/null || apt_install postgresql-client
mkdir -p "$OUT"
BENCH_URL=$(url_with_database "$DATABASE_URL" "$DB")
psql_bench() { psql "$BENCH_URL" -X -q -v ON_ERROR_STOP=1 "$@"; }

# CPU priority as in scripts/bench.sh and the deployment docs: the gateway (a sender waits on it)
# and the load generator at nice $BENCH_NICE; the worker, NATS, Postgres and the export's client
# at 0. BENCH_NICE=0 runs everything alike; a negative value needs root or CAP_SYS_NICE.
NICE=${BENCH_NICE:--10}
if [[ $(nice -n "$NICE" nice 2>/dev/null) != "$NICE" ]]; then
  log "cannot run at nice $NICE here (needs root or CAP_SYS_NICE): everything at 0"
  NICE=0
fi
PRIORITY=(nice -n "$NICE")

[[ ${SKIP_BUILD:-0} == 1 ]] || cargo build --release -q -p ingest-gateway -p ingest-worker -p ingest-bench
BIN_DIR=target/release
GATEWAY_PID="" WORKER_PID="" EXPORTS_PID=""
stop_pid() { if [[ -n $1 ]]; then kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi; }
trap 'stop_pid "$EXPORTS_PID"; stop_pid "$WORKER_PID"; stop_pid "$GATEWAY_PID"' EXIT
export WEBHOOK_SECRET=bench NATS_STREAM=BENCH_EXPORT NATS_SUBJECT=bench.export.messages \
  NATS_CONSUMER=bench-export-worker NATS_MAX_BYTES=$((256 << 20))
"$BIN_DIR/ingest-bench" reset --stream "$NATS_STREAM" >/dev/null 2>&1 || true
BASE=http://127.0.0.1:$PORT

start_gateway() {
  DATABASE_URL=$BENCH_URL GATEWAY_ADDR=127.0.0.1:$PORT LOG_LEVEL=warn \
    "${PRIORITY[@]}" "$BIN_DIR/ingest-gateway" >>"$OUT/gateway.log" 2>&1 &
  GATEWAY_PID=$!
  local deadline=$((SECONDS + 120))
  until curl -fsS "$BASE/health/ready" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then log "gateway not ready; see $OUT/gateway.log"; return 1; fi
    sleep 0.2
  done
}

seeded_rows() { psql_bench -Atc "SELECT total_messages FROM message_totals" 2>/dev/null || echo 0; }
if [[ $(seeded_rows) == "$ROWS" ]]; then
  log "reusing $DB ($ROWS rows)"
  start_gateway
else
  psql "$DATABASE_URL" -X -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  start_gateway # applies the migrations
  log "seeding $ROWS messages (scripts/bench-growth-seed.sql)"
  started=$SECONDS
  psql_bench -v rows="$ROWS" -v senders=10000 -v recipients=1000 \
    -v t0=$(( $(date +%s) / 86400 * 86400 )) -f scripts/bench-growth-seed.sql >/dev/null
  psql_bench -c "VACUUM ANALYZE messages"
  log "seeded in $((SECONDS - started)) s"
fi

rss_kib() { awk '$1 == "VmRSS:" {print $2}' "/proc/$GATEWAY_PID/status"; }
export_rows() { # format
  curl -fsS "$BASE/metrics" | awk -v s="export_rows_total{format=\"$1\"}" '$1 == s {print $2}'
}
{
  echo "# $(date -u +%FT%TZ) rows=$ROWS rate=$RATE duration=${DURATION}s nice=$NICE export_rows_per_sec=${EXPORT_ROWS_PER_SEC:-default}"
  echo "# $(nproc) cores, load average at start: $(cut -d' ' -f1-3 /proc/loadavg), PostgreSQL $(psql_bench -Atc 'SHOW server_version')"
} | tee "$OUT/results.txt"

# One export of every row per format, the gateway's RSS sampled meanwhile.
for format in ndjson csv; do
  before_rows=$(export_rows "$format") base=$(rss_kib)
  (peak=$base; while kill -0 "$GATEWAY_PID" 2>/dev/null && [[ ! -e $OUT/.stop ]]; do
     r=$(rss_kib); ((r > peak)) && peak=$r; echo "$peak" >"$OUT/.peak"; sleep 0.05; done) &
  sampler=$!
  stats=$(curl -fsS -o /dev/null -w '%{time_total} %{size_download}' "$BASE/messages?format=$format")
  touch "$OUT/.stop"; wait "$sampler" || true; rm -f "$OUT/.stop"
  rows=$(( $(export_rows "$format") - before_rows ))
  read -r secs bytes <<<"$stats"
  peak=$(cat "$OUT/.peak")
  echo "RESULT export format=$format rows=$rows seconds=$secs bytes=$bytes" \
    "rows_per_s=$(awk -v r="$rows" -v s="$secs" 'BEGIN {printf "%d", r / s}')" \
    "rss_base_mib=$((base / 1024)) rss_growth_mib=$(awk -v p="$peak" -v b="$base" 'BEGIN {printf "%.1f", (p - b) / 1024}')" \
    "load=$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT/results.txt"
done

# The ingest path at RATE webhooks/s, a worker storing into the same database.
DATABASE_URL=$BENCH_URL WORKER_ADDR=127.0.0.1:$((PORT + 1)) LOG_LEVEL=warn \
  "$BIN_DIR/ingest-worker" >"$OUT/worker.log" 2>&1 &
WORKER_PID=$!
ingest() { # label
  "${PRIORITY[@]}" "$BIN_DIR/ingest-bench" http --target "$BASE" --secret "$WEBHOOK_SECRET" --rate "$RATE" \
    --duration "$DURATION" --connections 64 --run-id "export-$1-$(date +%s)" \
    --label "export-bench-$1" >"$OUT/ingest-$1.json" 2>"$OUT/ingest-$1.err"
  python3 - "$1" "$OUT/ingest-$1.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
l = r["latency"]
print(f"RESULT ingest while={sys.argv[1]} sent_per_s={r['sent_per_s']:.0f} "
      f"accepted_per_s={r['accepted_per_s']:.0f} p50_ms={l['p50_ms']:.2f} p99_ms={l['p99_ms']:.2f} "
      f"max_ms={l['max_ms']:.2f} statuses={json.dumps(r['statuses'], separators=(',', ':'))}")
PY
}
ingest idle | sed "s/\$/ load=$(cut -d' ' -f1 /proc/loadavg)/" | tee -a "$OUT/results.txt"
before_rows=$(export_rows ndjson)
(while true; do curl -fsS -o /dev/null "$BASE/messages?format=ndjson" || true; done) &
EXPORTS_PID=$!
started=$(date +%s.%N)
ingest exporting | sed "s/\$/ load=$(cut -d' ' -f1 /proc/loadavg)/" | tee -a "$OUT/results.txt"
stop_pid "$EXPORTS_PID"; EXPORTS_PID=""
rows=$(( $(export_rows ndjson) - before_rows ))
echo "RESULT export-under-ingest format=ndjson rows=$rows" \
  "rows_per_s=$(awk -v r="$rows" -v s="$(date +%s.%N)" -v t="$started" 'BEGIN {printf "%d", r / (s - t)}')" \
  | tee -a "$OUT/results.txt"
# Back to the seeded rows, so the next run reuses the database: the webhooks' messages (ts from
# ingest-bench's default 2025-01-15T10:00:00Z on, one a second) leave the table and its aggregates.
stop_pid "$WORKER_PID"; WORKER_PID=""
"$BIN_DIR/ingest-bench" reset --stream "$NATS_STREAM" >/dev/null 2>&1 || true
DATABASE_URL=$BENCH_URL "$BIN_DIR/ingest-bench" unstore --ts-from 1736935200 \
  --ts-to $((1736935200 + 2 * RATE * DURATION + 86400)) >/dev/null
log "results in $OUT/results.txt"
