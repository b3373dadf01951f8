#!/usr/bin/env bash
# Regenerates .sqlx/, what the query macros (`sqlx::query_file!` and its variants) check every
# statement against when the workspace builds offline (the default, .cargo/config.toml): each
# statement's parameter and column types as Postgres describes them on the current schema.
#
#   scripts/sqlx-prepare.sh           # rewrite .sqlx/ (after changing a statement or a migration)
#   scripts/sqlx-prepare.sh --check   # fail when .sqlx/ is not what the statements need
#                                     # (scripts/lint.sh runs this)
#
# Needs Postgres where DATABASE_URL points (services.sh starts one when nothing answers there):
# a throwaway database is created on that server, the migrations are applied to it, and the
# crates that run statements are checked against it with the macros online, which write one
# query-*.json per statement into a temporary directory. No sqlx-cli needed.
#
# The migrations are applied with psql, one transaction per file in version order, as the
# migrator (`sqlx::migrate!`, shared/src/db.rs) applies them: the migrator is compiled into a
# crate whose statements are what is being described, so it cannot run before they compile.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

check=0
case ${1:-} in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

ensure_build_tools
ensure_postgres
command -v psql >/dev/null || apt_install postgresql-client

db="sqlx_prepare_$$"
url=$(url_with_database "$DATABASE_URL" "$db")
out=$(mktemp -d)
cleanup() {
  psql "$DATABASE_URL" -X -q -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$out"
}
trap cleanup EXIT

psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\"" >/dev/null
for migration in migrations/*.sql; do
  psql "$url" -X -q -1 -v ON_ERROR_STOP=1 -f "$migration" >/dev/null
done

# The crates whose statements the macros describe. A macro runs again only when cargo recompiles
# its crate, and an environment variable is no reason to: touching the statements' files (each
# is an input of its crate) recompiles exactly these crates, and the dependencies stay as the
# last build left them.
crates=(shared ingest-gateway ingest-worker ingest-bench)
find "${crates[@]}" -name '*.sql' -path '*/src/*' -exec touch {} +
SQLX_OFFLINE=false DATABASE_URL="$url" SQLX_OFFLINE_DIR="$out" \
  cargo check -q --locked -p ingest-shared -p ingest-gateway -p ingest-worker -p ingest-bench

if ((check)); then
  if ! diff -r -q .sqlx "$out" >/dev/null 2>&1; then
    diff -r -q .sqlx "$out" | sed -e "s#$out#(the statements now)#g" >&2 || true
    echo "[sqlx-prepare] .sqlx/ is stale: it does not match the statements and migrations." >&2
    echo "[sqlx-prepare] Run scripts/sqlx-prepare.sh and commit .sqlx/." >&2
    exit 1
  fi
  echo "[sqlx-prepare] .sqlx/ is up to date ($(ls "$out" | wc -l) statements)" >&2
else
  rm -rf .sqlx
  mkdir .sqlx
  cp "$out"/query-*.json .sqlx/
  echo "[sqlx-prepare] wrote .sqlx/ ($(ls .sqlx | wc -l) statements)" >&2
fi
