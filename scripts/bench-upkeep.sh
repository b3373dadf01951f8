#!/usr/bin/env bash
# What the aggregate upkeep costs Postgres per stored row, measured the way issue #29 asks: the
# release worker drains the same backlog with the upkeep (the build every deployment runs) and
# without it (a build with the bench-only cargo feature `bench-skip-upkeep`), in alternating
# passes of one run, and the difference of the Postgres CPU per stored row is the upkeep's cost.
#
# Each pass: emptied tables (messages, message_ids, the aggregates), a backlog of chat-mix
# messages published to JetStream with no worker running, then drained by one worker, timed by
# the worker's own metrics (`ingest-bench drain --metrics`, so the bench puts no query on the
# database while it drains). CPU is that of the Postgres processes of this database (`pg_db`:
# its backends and autovacuum workers, from /proc), per stored row. After each pass with the
# upkeep every aggregate is compared with a direct count (`mismatches` must be 0), and the HOT
# share of the aggregates' updates is read from pg_stat_user_tables.
#
#   scripts/bench-upkeep.sh                         # search index off and on, 3 pairs each
#   PAIRS=5 SEARCH_MODES=none scripts/bench-upkeep.sh
#
# Knobs (environment): BACKLOG (messages per pass, default 200000), PAIRS (with/without pairs per
# search mode, default 3), SEARCH_MODES (default "none trigram"), SKIP_BUILD=1 (use the binaries
# in target/release as they are, ingest-worker-skip-upkeep included), BENCH_PORT (default 18200;
# the worker uses the next port), BENCH_NO_WRITE=1 (print the table instead of writing
# BENCHMARKS.md). Its database `ingest_bench_upkeep` is dropped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services

BACKLOG=${BACKLOG:-200000}
PAIRS=${PAIRS:-3}
SEARCH_MODES=${SEARCH_MODES:-none trigram}
PORT=${BENCH_PORT:-18200}
WORKER_PORT=$((PORT + 1))
OUT=.data/bench
RESULTS=$OUT/upkeep.jsonl
mkdir -p "$OUT"
: >"$RESULTS"
ADMIN_URL=$DATABASE_URL
DB=ingest_bench_upkeep
DB_URL=$(url_with_database "$ADMIN_URL" "$DB")
BIN=target/release
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
export WEBHOOK_SECRET=upkeep-secret NATS_STREAM=UPKEEP NATS_SUBJECT=upkeep.messages \
  NATS_CONSUMER=upkeep-worker LOG_LEVEL=${LOG_LEVEL:-info}
# The backlog's first ts: today, so its rows land in a partition the worker made ahead.
T0=$(date -u -d 'today 00:00' +%s)

log() { printf '[upkeep %s] %s\n' "$(date -u +%T)" "$*" >&2; }

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building (release): the worker without the upkeep, then as deployed"
  cargo build --release -q -p ingest-worker --features bench-skip-upkeep
  cp "$BIN/ingest-worker" "$BIN/ingest-worker-skip-upkeep"
  cargo build --release -q -p ingest-worker -p ingest-bench
fi

WORKER_PID=""
stop_worker() {
  if [[ -n $WORKER_PID ]]; then kill -TERM "$WORKER_PID" 2>/dev/null || true; wait "$WORKER_PID" 2>/dev/null || true; fi
  WORKER_PID=""
}
trap 'stop_worker' EXIT INT TERM

psql_db() { psql "$DB_URL" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

start_worker() { # binary [VAR=value...]
  local binary=$1
  shift
  env DATABASE_URL="$DB_URL" WORKER_ADDR=127.0.0.1:$WORKER_PORT "$@" "$BIN/$binary" >"$OUT/upkeep-worker.log" 2>&1 &
  WORKER_PID=$!
}

wait_for() { # what command...
  local what=$1 deadline=$((SECONDS + 120))
  shift
  until "$@"; do
    kill -0 "$WORKER_PID" 2>/dev/null || { log "worker exited; see $OUT/upkeep-worker.log"; exit 1; }
    ((SECONDS < deadline)) || { log "$what: not after 120 s"; exit 1; }
    sleep 0.5
  done
}
ready() { curl -fsS "http://127.0.0.1:$WORKER_PORT/health/ready" >/dev/null 2>&1; }
index_is() { [[ $(psql_db -f scripts/bench-upkeep-index.sql) == "$1" ]]; }

# One JSON line into $RESULTS: the drain's own line plus what it was measured on.
record() { # json-line variant mode pair mismatches hot-json
  python3 - "$@" >>"$RESULTS" <<PY
import json, sys
r = json.loads(sys.argv[1])
r.update(variant=sys.argv[2], search=sys.argv[3], pair=int(sys.argv[4]),
         mismatches=None if sys.argv[5] == "" else int(sys.argv[5]),
         hot=json.loads(sys.argv[6]) if sys.argv[6] else None, backlog=$BACKLOG,
         commit="$COMMIT", load_before="$LOAD_BEFORE", load="$(cut -d' ' -f1-3 /proc/loadavg)")
print(json.dumps(r))
PY
}

pass() { # variant mode pair
  local variant=$1 mode=$2 pair=$3 binary=ingest-worker run line mismatches="" hot_before hot=""
  [[ $variant == without ]] && binary=ingest-worker-skip-upkeep
  psql_db -f ingest-bench/src/sql/upkeep_reset.sql
  "$BIN/ingest-bench" reset --stream "$NATS_STREAM" >/dev/null
  run=u$pair${variant:0:2}$(date +%s)
  "$BIN/ingest-bench" nats --requests "$BACKLOG" --run-id "$run" --ts-base "$T0" --label backlog >/dev/null
  hot_before=$(psql_db -f scripts/bench-upkeep-hot.sql)
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  start_worker "$binary" SEARCH_INDEX="$mode"
  line=$("$BIN/ingest-bench" drain --expect "$BACKLOG" --metrics "127.0.0.1:$WORKER_PORT" \
    --ts-from "$T0" --database-url "$DB_URL" --timeout 1800 --label "drain-$variant-$mode" \
    --watch "pg_db=db:$DB" --watch "worker=$WORKER_PID" --watch "postgres=comm:postgres")
  stop_worker
  if [[ $variant == with ]]; then
    mismatches=$(psql_db -f ingest-bench/src/sql/upkeep_mismatches.sql)
    hot=$(python3 -c 'import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({t: {k: b[t][k] - a.get(t, {}).get(k, 0) for k in b[t]} for t in b}))' \
      "$hot_before" "$(psql_db -f scripts/bench-upkeep-hot.sql)")
  fi
  record "$line" "$variant" "$mode" "$pair" "$mismatches" "$hot"
  log "search $mode, pair $pair, $variant the upkeep: $(python3 -c 'import json, sys
r = json.loads(sys.argv[1])
print("{} rows, {:.0f} rows/s, pg_db {:.1f} us/row, mismatches {}".format(
    r["rows"], r["rows_per_s"], r["cpu_us_per_row"].get("pg_db", 0), r["mismatches"]))' "$(tail -n 1 "$RESULTS")")"
  [[ -z $mismatches || $mismatches == 0 ]] || { log "the aggregates differ from a direct count"; exit 1; }
}

log "fresh database $DB"
psql "$ADMIN_URL" -X -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
for mode in $SEARCH_MODES; do
  # The worker brings the trigram index in line with SEARCH_INDEX after start-up; the tables
  # are empty, so that is quick, and it happens before anything is measured.
  start_worker ingest-worker SEARCH_INDEX="$mode"
  wait_for "worker ready" ready
  wait_for "search index $mode" index_is "$mode"
  stop_worker
  for ((pair = 1; pair <= PAIRS; pair++)); do
    # Which variant goes first alternates, so drift over the run falls on both alike.
    if ((pair % 2)); then order="with without"; else order="without with"; fi
    for variant in $order; do pass "$variant" "$mode" "$pair"; done
  done
done
"$BIN/ingest-bench" reset --stream "$NATS_STREAM" >/dev/null
psql "$ADMIN_URL" -X -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"

TABLE=$(python3 scripts/bench-upkeep-report.py "$RESULTS")
SECTION=$(printf '%s\n%s\n%s' '<!-- upkeep-bench:begin (written by scripts/bench-upkeep.sh; edit outside these markers) -->' "$TABLE" '<!-- upkeep-bench:end -->')
if [[ ${BENCH_NO_WRITE:-0} == 1 ]] || ! grep -q '<!-- upkeep-bench:begin' BENCHMARKS.md; then
  printf '%s\n' "$SECTION"
  exit 0
fi
printf '%s\n' "$SECTION" >"$OUT/upkeep-section.md"
awk -v f="$OUT/upkeep-section.md" '
  /<!-- upkeep-bench:begin/ { while ((getline l < f) > 0) print l; skip = 1; next }
  /<!-- upkeep-bench:end -->/ { skip = 0; next }
  !skip { print }' BENCHMARKS.md >"$OUT/BENCHMARKS.md.new"
mv "$OUT/BENCHMARKS.md.new" BENCHMARKS.md
log "table written to BENCHMARKS.md (raw results: $RESULTS)"
