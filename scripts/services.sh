#!/usr/bin/env bash
# Makes sure NATS (with JetStream) and Postgres answer where NATS_URL and DATABASE_URL point.
# Running servers are reused; otherwise private ones are started under .data/ (or INGEST_DATA_DIR),
# installing nats-server / postgresql with apt-get first when they are missing.
#
#   scripts/services.sh          # ensure both, print what is used
#   scripts/services.sh stop     # stop the private servers this script started
#
# Sourced by run.sh and test.sh (they call ensure_services).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${INGEST_DATA_DIR:-$ROOT/.data}
: "${NATS_URL:=nats://127.0.0.1:4222}"
: "${DATABASE_URL:=postgres://postgres@127.0.0.1:5432/postgres}"

log() { printf '[services] %s\n' "$*" >&2; }

# host and port of scheme://[user[:pw]@]host[:port][/...]
url_host() { local r=${1#*://}; r=${r##*@}; r=${r%%/*}; r=${r%%\?*}; printf '%s' "${r%%:*}"; }
url_port() {
  local r=${1#*://}; r=${r##*@}; r=${r%%/*}; r=${r%%\?*}
  if [[ $r == *:* ]]; then printf '%s' "${r##*:}"; else printf '%s' "$2"; fi
}

# The same URL naming database $2 instead (the query string, if any, kept).
url_with_database() { printf '%s' "$1" | sed -E "s#^([a-z]+://[^/?]+)(/[^?]*)?#\1/$2#"; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() { # host port seconds what
  local deadline=$((SECONDS + $3))
  until port_open "$1" "$2"; do
    if ((SECONDS >= deadline)); then log "$4 did not start listening on $1:$2 within $3 s"; return 1; fi
    sleep 0.2
  done
}

# Exported once the lists are fresh, so the scripts that test.sh runs do not update them again.
APT_UPDATED=${APT_UPDATED:-0}
apt_install() {
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      log "$* is missing and this is not root: install it (apt-get install $*) and rerun"; return 1
    fi
  else SUDO=""; fi
  if ((APT_UPDATED == 0)); then $SUDO apt-get update -qq; export APT_UPDATED=1; fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

ensure_nats() {
  local host port
  host=$(url_host "$NATS_URL"); port=$(url_port "$NATS_URL" 4222)
  if port_open "$host" "$port"; then log "NATS: using $host:$port"; return 0; fi
  command -v nats-server >/dev/null || apt_install nats-server
  mkdir -p "$DATA/nats"
  log "NATS: starting a private nats-server with JetStream on $host:$port (store $DATA/nats)"
  nohup nats-server -a "$host" -p "$port" -js -sd "$DATA/nats" >"$DATA/nats.log" 2>&1 &
  echo $! >"$DATA/nats.pid"
  wait_port "$host" "$port" 30 nats-server
}

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n $dir && -x $dir/initdb ]] && printf '%s' "$dir"
}

as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

ensure_postgres() {
  local host port bindir pgdata
  host=$(url_host "$DATABASE_URL"); port=$(url_port "$DATABASE_URL" 5432)
  if port_open "$host" "$port"; then log "Postgres: using $host:$port"; return 0; fi
  bindir=$(pg_bindir) || true
  if [[ -z ${bindir:-} ]]; then
    apt_install postgresql
    bindir=$(pg_bindir)
    # The package may have started its own cluster on the default port.
    if port_open "$host" "$port"; then log "Postgres: using $host:$port"; return 0; fi
  fi
  pgdata="$DATA/pg"
  if [[ $(id -u) -eq 0 ]]; then
    mkdir -p "$DATA"
    # Postgres refuses to run as root; its data must be reachable by the postgres user.
    if ! runuser -u postgres -- test -x "$DATA"; then pgdata="/var/tmp/ingest-webhooks-pg-$port"; fi
    mkdir -p "$pgdata"; chown postgres:postgres "$pgdata"; chmod 700 "$pgdata"
  else
    mkdir -p "$pgdata"; chmod 700 "$pgdata"
  fi
  if [[ ! -f $pgdata/PG_VERSION ]]; then
    log "Postgres: initialising a private cluster in $pgdata"
    as_postgres "$bindir/initdb" -D "$pgdata" -A trust -U postgres >/dev/null
  fi
  log "Postgres: starting the private cluster on $host:$port"
  as_postgres "$bindir/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
    -o "-p $port -c listen_addresses=$host -k /tmp" start >/dev/null
  printf '%s\n' "$pgdata" >"$DATA/pg.datadir"
  wait_port "$host" "$port" 30 postgres
}

# A Python tool from PyPI in a virtualenv of its own, made when DIR/bin/TOOL is missing:
#   ensure_venv DIR TOOL REQUIREMENT
ensure_venv() {
  [[ -x $1/bin/$2 ]] && return 0
  rm -rf "$1"
  # A fresh Debian may have no python3, or one without the venv module.
  python3 -m venv "$1" 2>/dev/null || { apt_install python3 python3-venv && python3 -m venv "$1"; }
  "$1/bin/pip" install -q "$3"
}

# CI builds from nothing once: incremental compilation only adds its bookkeeping there.
if [[ -n ${CI:-} ]]; then export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}; fi

# The gateway links jemalloc (tikv-jemalloc-sys), whose build runs `make`; a fresh Debian with
# rustup has gcc but not always make. Every script that builds sources this file.
ensure_build_tools() {
  command -v make >/dev/null || apt_install make
}

ensure_services() {
  mkdir -p "$DATA"
  ensure_build_tools
  ensure_nats
  ensure_postgres
  export NATS_URL DATABASE_URL
}

stop_services() {
  if [[ -f $DATA/nats.pid ]]; then kill "$(cat "$DATA/nats.pid")" 2>/dev/null || true; rm -f "$DATA/nats.pid"; fi
  if [[ -f $DATA/pg.datadir ]]; then
    as_postgres "$(pg_bindir)/pg_ctl" -D "$(cat "$DATA/pg.datadir")" -m fast stop >/dev/null || true
    rm -f "$DATA/pg.datadir"
  fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  case ${1:-start} in
    start) ensure_services; log "NATS_URL=$NATS_URL"; log "DATABASE_URL=$DATABASE_URL" ;;
    stop) stop_services ;;
    *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
  esac
fi
