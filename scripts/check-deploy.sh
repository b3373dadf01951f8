#!/usr/bin/env bash
# Checks the deployment files without a Docker engine: docker-compose.yml against the Compose
# specification's JSON schema (check-jsonschema from PyPI carries a copy), and the Prometheus
# configuration and alert rules with promtool (Debian's `prometheus` package, installed when
# missing and apt can; otherwise the check is skipped and says so). scripts/test.sh runs it; tests/deployment.rs checks what the schema cannot (ports,
# health checks, that every mounted file exists, what Prometheus scrapes).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

VENV=.data/check-jsonschema-venv
if [[ ! -x $VENV/bin/check-jsonschema ]]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" 2>/dev/null || { apt_install python3 python3-venv && python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install -q "check-jsonschema==${CHECK_JSONSCHEMA_VERSION:-0.39.0}"
fi
echo "[deploy] docker-compose.yml against the Compose specification" >&2
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml

command -v promtool >/dev/null || apt_install --no-install-recommends prometheus || true
if command -v promtool >/dev/null; then
  echo "[deploy] promtool: prometheus.yml and alerts.yml" >&2
  promtool check config deploy/prometheus/prometheus.yml
  promtool check rules deploy/prometheus/alerts.yml
else
  echo "[deploy] promtool not installed (apt-get install prometheus): Prometheus files not checked" >&2
fi
