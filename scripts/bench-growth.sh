#!/usr/bin/env bash
# The growth benchmark: does storing a row cost the same in a large table as in a small one? For
# each size, a database `ingest_growth_<size>` pre-filled with that many messages by SQL (seeded
# once, then reused), and in it:
#
#   drain      a backlog of chat-mix messages published to JetStream with no worker running, then
#              drained by one release worker: rows/s, and the CPU per stored row of the Postgres
#              processes of that database (`pg_db`: its backends and autovacuum workers; the
#              server may be shared) and of the worker. Once per SEARCH_MODES entry (the trigram
#              index on and off). The drained rows are then deleted again and taken out of the
#              aggregates with the statement retention uses, so the database keeps its size.
#   reads      the read matrix of scripts/bench-read.sh against the same database (trigram on).
#   retention  partitioned schema only: a month older than the seeded year is loaded, a worker
#              with RETENTION_DAYS set drops it, and a probe reading `messages` back to back
#              records the longest time the table was blocked.
#
# Results are appended to .data/bench/growth.jsonl; the table of BENCHMARKS.md's section "Growth"
# is rewritten between its growth-bench markers from the latest result of each size and schema.
#
#   scripts/bench-growth.sh                              # 1M, 10M, 100M (100M: hours, ~50+ GB)
#   SIZES="1000000 10000000" scripts/bench-growth.sh
#   SIZES=1000000 SEARCH_MODES=none PHASES=drain scripts/bench-growth.sh
#   RESEED=1 SIZES=1000000 scripts/bench-growth.sh      # seed again even if the database matches
#
# Knobs (environment): SIZES, SEARCH_MODES ("trigram none": switching the index on a large table
# is a CREATE INDEX CONCURRENTLY over all of it, so the modes run starting with the one the
# database is in), PHASES ("drain reads retention"), BACKLOG (messages per drain, default
# 300000), READ_DURATION (per read case, default 5s), READ_CASES (default: bench-read.sh's),
# GROWTH_VACUUM (1: VACUUM messages after removing the drained rows so every drain starts from a
# table without dead rows; default 1), RESEED, SKIP_BUILD=1, BENCH_PORT (default 18100; the
# worker uses the next port, bench-read the one after), BENCH_NO_WRITE=1 (print the table instead
# of writing BENCHMARKS.md), GROWTH_STREAM (the JetStream stream, default GROWTH: another name
# lets a second run seed beside a first). Databases `ingest_growth_*` are kept for the next run:
# drop them by hand to free their disk. Disk: about 770 MB per million rows with every index
# (the chat mix), so 100M rows need about 80 GB; the script says what a seed took and what is
# left.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services

SIZES=${SIZES:-1000000 10000000 100000000}
SEARCH_MODES=${SEARCH_MODES:-trigram none}
PHASES=${PHASES:-drain reads retention}
BACKLOG=${BACKLOG:-300000}
PORT=${BENCH_PORT:-18100}
WORKER_PORT=$((PORT + 1))
OUT=.data/bench
RESULTS=$OUT/growth.jsonl
mkdir -p "$OUT"
ADMIN_URL=$DATABASE_URL
BIN=target/release
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
export WEBHOOK_SECRET=growth-secret NATS_STREAM=${GROWTH_STREAM:-GROWTH} NATS_SUBJECT=${GROWTH_STREAM:-growth}.messages \
  NATS_CONSUMER=${GROWTH_STREAM:-growth}-worker LOG_LEVEL=${LOG_LEVEL:-info}

log() { printf '[growth %s] %s\n' "$(date -u +%T)" "$*" >&2; }

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building (release)"
  cargo build --release -q -p ingest-gateway -p ingest-worker -p ingest-bench
fi

WORKER_PID="" PROBE_PID=""
stop_pid() { if [[ -n $1 ]]; then kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi; }
stop_worker() { stop_pid "$WORKER_PID"; WORKER_PID=""; }
trap 'stop_pid "$PROBE_PID"; stop_worker' EXIT INT TERM

# The newest migration in the repository: a seeded database migrated to an older one is seeded
# again (the binaries would otherwise migrate its full table first).
LATEST_MIGRATION=$(ls migrations/*.sql | sed 's#.*/##; s/_.*//' | sort -n | tail -n 1)

psql_db() { psql "$DB_URL" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# The worker, in the background, against $DB_URL; extra VAR=value settings as arguments.
start_worker() { # log-file [VAR=value...]
  local logfile=$1
  shift
  env DATABASE_URL="$DB_URL" WORKER_ADDR=127.0.0.1:$WORKER_PORT "$@" "$BIN/ingest-worker" >"$logfile" 2>&1 &
  WORKER_PID=$!
}
wait_ready() { # url what
  local deadline=$((SECONDS + 120))
  until curl -fsS "$1" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "$2 not ready after 120 s"; exit 1; }
    sleep 0.2
  done
}

index_state() {
  psql_db -c "SELECT CASE WHEN i.indexrelid IS NULL THEN 'none' WHEN i.indisvalid THEN 'trigram' ELSE 'invalid' END
              FROM (SELECT to_regclass('messages_text_trgm_idx') AS oid) n LEFT JOIN pg_index i ON i.indexrelid = n.oid"
}

# Brings the trigram index in line with $1 the way a deployment does: a worker with SEARCH_INDEX
# set builds or drops it (CONCURRENTLY) after start-up; nothing is measured meanwhile.
set_search_mode() { # trigram|none
  [[ $(index_state) == "$1" ]] && return 0
  log "SEARCH_INDEX=$1: the worker brings the index in line (a full build at this size takes a while)"
  local started=$SECONDS
  start_worker "$OUT/growth-index.log" SEARCH_INDEX="$1"
  until [[ $(index_state) == "$1" ]]; do
    kill -0 "$WORKER_PID" 2>/dev/null || { log "worker exited; see $OUT/growth-index.log"; exit 1; }
    sleep 2
  done
  stop_worker
  log "search index $1 after $((SECONDS - started)) s"
}

# Whether the seeded database can be reused: same size, same schema version, aggregates intact.
seed_matches() { # size
  [[ ${RESEED:-0} == 1 ]] && return 1
  [[ $(psql "$ADMIN_URL" -X -At -c "SELECT 1 FROM pg_database WHERE datname = '$DB'") == 1 ]] || return 1
  local got
  got=$(psql_db -c "SELECT s.rows || ' ' || (SELECT max(version) FROM _sqlx_migrations) || ' ' || t.total_messages
                    FROM bench_growth_seed s, message_totals t" 2>/dev/null) || return 1
  [[ $got == "$1 $LATEST_MIGRATION $1" ]]
}

seed() { # size
  local size=$1 started=$SECONDS t0
  log "seeding $DB: $size rows (drop, migrate, load, index, aggregates, vacuum)"
  psql "$ADMIN_URL" -X -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  # The worker applies the migrations; it is ready once they are. The migration's trigram index
  # stays (SEARCH_INDEX=trigram), and the seed drops and rebuilds every index around the load.
  start_worker "$OUT/growth-seed.log" SEARCH_INDEX=trigram
  wait_ready "http://127.0.0.1:$WORKER_PORT/health/ready" worker
  stop_worker
  t0=$(date -u -d 'today 00:00' +%s)
  psql_db -v rows="$size" -v senders=10000 -v recipients=1000 -v t0="$t0" -f scripts/bench-growth-seed.sql >/dev/null
  psql_db -c "VACUUM ANALYZE messages" -c "VACUUM ANALYZE sender_stats" -c "VACUUM ANALYZE recipient_stats" \
    -c "VACUUM ANALYZE message_hours" -c "VACUUM ANALYZE message_days" -c "VACUUM ANALYZE message_totals"
  if [[ $(psql_db -c "SELECT to_regclass('message_ids') IS NOT NULL") == t ]]; then
    psql_db -c "VACUUM ANALYZE message_ids"
  fi
  psql_db -c "CREATE TABLE bench_growth_seed (rows bigint NOT NULL, t0 bigint NOT NULL, seeded_at timestamptz NOT NULL DEFAULT now(), seed_s int NOT NULL)" \
    -c "INSERT INTO bench_growth_seed (rows, t0, seed_s) VALUES ($size, $t0, $((SECONDS - started)))"
  log "seeded $DB in $((SECONDS - started)) s: $(psql_db -c "SELECT pg_size_pretty(pg_database_size(current_database()))"), $(df -h --output=avail "$(psql_db -c 'SHOW data_directory')" | tail -n 1 | tr -d ' ') left on the disk"
}

# One JSON line into $RESULTS: the command's own line plus what it was measured on.
record() { # json-line phase [mode]
  python3 - "$1" "$2" "${3:-}" >>"$RESULTS" <<PY
import json, sys
r = json.loads(sys.argv[1])
r.update(phase=sys.argv[2], search=sys.argv[3] or None, size=$SIZE, schema="$SCHEMA",
         commit="$COMMIT", load="$(cut -d' ' -f1-3 /proc/loadavg)", load_before="$LOAD_BEFORE",
         at="$(date -u +%FT%TZ)", backlog=$BACKLOG)
print(json.dumps(r))
PY
}

drain() { # mode
  local mode=$1 run line
  set_search_mode "$mode"
  "$BIN/ingest-bench" reset --stream "$NATS_STREAM" >/dev/null
  run=g$(date +%s)
  log "$SIZE rows, search $mode: publishing a backlog of $BACKLOG messages"
  "$BIN/ingest-bench" nats --requests "$BACKLOG" --run-id "$run" --ts-base "$T0" --ids hashed \
    --label backlog >/dev/null
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  log "$SIZE rows, search $mode: draining with 1 worker (load average $LOAD_BEFORE)"
  start_worker /dev/null SEARCH_INDEX="$mode"
  line=$("$BIN/ingest-bench" drain --expect "$BACKLOG" --metrics "127.0.0.1:$WORKER_PORT" \
    --ts-from "$T0" --database-url "$DB_URL" --timeout 3600 --label "drain-$mode" \
    --watch "worker=$WORKER_PID" --watch "pg_db=db:$DB" --watch "postgres=comm:postgres" \
    --watch "nats=comm:nats-server")
  stop_worker
  record "$line" drain "$mode"
  tail -n 1 "$RESULTS" | cut -c1-300 >&2
  # The backlog's rows are the only ones at or after T0.
  line=$("$BIN/ingest-bench" unstore --database-url "$DB_URL" --ts-from "$T0" --ts-to $((T0 + 3650 * 86400)))
  log "removed the drained rows: $line"
  if [[ ${GROWTH_VACUUM:-1} == 1 ]]; then
    local started=$SECONDS
    psql_db -c "VACUUM messages"
    log "VACUUM messages: $((SECONDS - started)) s"
  fi
  "$BIN/ingest-bench" reset --stream "$NATS_STREAM" >/dev/null
}

reads() {
  set_search_mode trigram
  local dir=target/bench-results/growth-$SIZE
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  log "$SIZE rows: the read matrix (scripts/bench-read.sh, REUSE=1)"
  local cases=()
  [[ -n ${READ_CASES:-} ]] && cases=(CASES="$READ_CASES")
  env BENCH_DB="$DB" REUSE=1 ROWS="$SIZE" SKIP_BUILD=1 SEARCH_INDEX=trigram CONSISTENCY="${READ_CONSISTENCY:-off}" \
    DURATION="${READ_DURATION:-5s}" BENCH_OUT="$dir" BENCH_PORT=$((PORT + 2)) BENCH_DAY0=$((T0 - 365 * 86400)) \
    "${cases[@]}" scripts/bench-read.sh
  grep '^RESULT' "$dir/results.txt" | while read -r result; do
    record "$(python3 -c 'import json, sys; print(json.dumps({"kind": "read", **dict(kv.split("=", 1) for kv in sys.argv[1].split()[1:])}))' "$result")" reads trigram
  done
}

# A month two months before the seeded year's first month: old enough that a worker with
# RETENTION_DAYS set drops it whole, and far enough from the seeded rows that none of them expire.
retention() {
  if [[ $SCHEMA != partitioned ]]; then
    log "$SIZE rows: retention drops partitions; this schema has none: skipped"
    return 0
  fi
  local first_month from to days rows line started
  first_month=$(date -u -d "@$((T0 - 365 * 86400))" +%Y-%m-01)
  from=$(date -u -d "$first_month -2 month" +%s)
  to=$(date -u -d "$first_month -1 month" +%s)
  rows=$((SIZE / 12))
  log "$SIZE rows: loading an expired month of $rows rows ($(date -u -d "@$from" +%F))"
  psql_db -v rows="$rows" -v from="$from" -v to="$to" -f scripts/bench-growth-expired.sql >/dev/null
  line=$("$BIN/ingest-bench" count-in --database-url "$DB_URL" --ts-from "$from" --ts-to "$to")
  log "added to the aggregates: $line"
  psql_db -c "VACUUM ANALYZE messages"
  days=$((($(date +%s) - to) / 86400))
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  log "$SIZE rows: a worker with RETENTION_DAYS=$days drops it; probing the table meanwhile"
  "$BIN/ingest-bench" retention-probe --database-url "$DB_URL" --cutoff "$to" --timeout 3600 \
    --label retention >"$OUT/growth-probe.json" &
  PROBE_PID=$!
  started=$SECONDS
  start_worker "$OUT/growth-retention.log" SEARCH_INDEX="$(index_state)" RETENTION_DAYS="$days" LOG_LEVEL=info
  wait "$PROBE_PID" || { log "retention probe failed; see $OUT/growth-retention.log"; PROBE_PID=""; stop_worker; return 1; }
  PROBE_PID=""
  stop_worker
  log "expired month gone after $((SECONDS - started)) s; the worker's retention lines:"
  grep -i -E 'retention|partition' "$OUT/growth-retention.log" | cut -c1-300 >&2 || true
  record "$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); r["total_after"] = int(sys.argv[2]); print(json.dumps(r))' \
    "$OUT/growth-probe.json" "$(psql_db -c 'SELECT total_messages FROM message_totals')")" retention
  [[ $(psql_db -c 'SELECT total_messages FROM message_totals') == "$SIZE" ]] ||
    log "WARNING: total_messages is not $SIZE after retention: the drop did not keep the aggregates"
}

for SIZE in $SIZES; do
  DB=ingest_growth_$SIZE
  DB_URL=$(url_with_database "$ADMIN_URL" "$DB")
  if seed_matches "$SIZE"; then
    log "reusing $DB ($SIZE rows, migration $LATEST_MIGRATION)"
  else
    seed "$SIZE"
  fi
  T0=$(psql_db -c "SELECT t0 FROM bench_growth_seed")
  SCHEMA=$(psql_db -c "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'messages'::regclass)
                       THEN 'partitioned' ELSE 'unpartitioned' END")
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  if [[ $PHASES == *drain* ]]; then
    # The mode the database is in first: switching costs a full index build or a drop.
    modes=$SEARCH_MODES
    current=$(index_state)
    if [[ " $modes " == *" $current "* ]]; then
      modes="$current $(tr ' ' '\n' <<<"$modes" | grep -vx "$current" | tr '\n' ' ')"
    fi
    for mode in $modes; do
      drain "$mode"
      # The reads need the trigram index: right after its drain, before a switch drops it.
      if [[ $mode == trigram && $PHASES == *reads* ]]; then reads; READ_DONE=1; fi
    done
  fi
  if [[ $PHASES == *reads* && ${READ_DONE:-0} != 1 ]]; then reads; fi
  READ_DONE=0
  if [[ $PHASES == *retention* ]]; then retention; fi
done
"$BIN/ingest-bench" reset --stream "$NATS_STREAM" >/dev/null

TABLE=$(python3 scripts/bench-growth-report.py "$RESULTS")
SECTION=$(printf '%s\n%s\n%s' '<!-- growth-bench:begin (written by scripts/bench-growth.sh; edit outside these markers) -->' "$TABLE" '<!-- growth-bench:end -->')
if [[ ${BENCH_NO_WRITE:-0} == 1 ]] || ! grep -q '<!-- growth-bench:begin' BENCHMARKS.md; then
  printf '%s\n' "$SECTION"
  exit 0
fi
printf '%s\n' "$SECTION" >"$OUT/growth-section.md"
awk -v f="$OUT/growth-section.md" '
  /<!-- growth-bench:begin/ { while ((getline l < f) > 0) print l; skip = 1; next }
  /<!-- growth-bench:end -->/ { skip = 0; next }
  !skip { print }' BENCHMARKS.md >"$OUT/BENCHMARKS.md.new"
mv "$OUT/BENCHMARKS.md.new" BENCHMARKS.md
log "table written to BENCHMARKS.md (raw results: $RESULTS)"
