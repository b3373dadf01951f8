#!/usr/bin/env bash
# Checks the deployment files without a Docker engine: docker-compose.yml against the Compose
# specification's JSON schema (check-jsonschema from PyPI carries a copy), the Prometheus
# configuration, alert rules and their unit tests with promtool (Debian's `prometheus` package),
# the Alertmanager routes with amtool (Debian's `prometheus-alertmanager`), and the Kubernetes
# manifests (scripts/check-k8s.sh). Both are installed
# when missing and apt can; otherwise their check is skipped and says so. scripts/test.sh runs
# it; tests/deployment.rs and tests/alerts.rs check what these cannot (ports, health checks,
# that every mounted file exists, what Prometheus scrapes, runbooks and severities).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

VENV=.data/check-jsonschema-venv
ensure_venv "$VENV" check-jsonschema "check-jsonschema==${CHECK_JSONSCHEMA_VERSION:-0.39.0}"
command -v promtool >/dev/null || apt_install --no-install-recommends prometheus || true
command -v amtool >/dev/null || apt_install --no-install-recommends prometheus-alertmanager || true
scripts/check-k8s.sh --install
# --install: only the above (test.sh fetches the tools while the tests compile).
[[ ${1:-} == --install ]] && exit 0

echo "[deploy] docker-compose.yml against the Compose specification" >&2
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml

if command -v promtool >/dev/null; then
  echo "[deploy] promtool: prometheus.yml and alerts.yml" >&2
  promtool check config deploy/prometheus/prometheus.yml
  promtool check rules deploy/prometheus/alerts.yml
  promtool test rules deploy/prometheus/alerts_test.yml
else
  echo "[deploy] promtool not installed (apt-get install prometheus): Prometheus files not checked" >&2
fi

if command -v amtool >/dev/null; then
  echo "[deploy] amtool: alertmanager.yml" >&2
  amtool check-config deploy/alertmanager/alertmanager.yml
else
  echo "[deploy] amtool not installed (apt-get install prometheus-alertmanager): Alertmanager routes not checked" >&2
fi

echo "[deploy] the Kubernetes manifests (scripts/check-k8s.sh)" >&2
scripts/check-k8s.sh

echo "[deploy] scripts/release.sh on a throwaway clone (scripts/check-release.sh)" >&2
scripts/check-release.sh
