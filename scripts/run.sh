#!/usr/bin/env bash
# The run command: NATS and Postgres (reused or started, see services.sh), then one worker and the
# gateway in release mode. Ctrl-C stops both gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
[[ -f .env ]] && { set -a; source .env; set +a; }
ensure_services
: "${WEBHOOK_SECRET:=dev-secret-change-me}"
: "${GATEWAY_ADDR:=0.0.0.0:8000}"
: "${WORKER_ADDR:=0.0.0.0:8001}"
export WEBHOOK_SECRET GATEWAY_ADDR WORKER_ADDR

cargo build --release -p ingest-gateway -p ingest-worker
mkdir -p .data
./target/release/ingest-worker >>.data/worker.log 2>&1 &
WORKER=$!
./target/release/ingest-gateway &
GATEWAY=$!
trap 'kill -TERM $GATEWAY $WORKER 2>/dev/null; wait $GATEWAY $WORKER 2>/dev/null' EXIT INT TERM

GW_PORT=${GATEWAY_ADDR##*:}
until curl -fsS "http://127.0.0.1:$GW_PORT/health/ready" >/dev/null 2>&1; do
  kill -0 $GATEWAY 2>/dev/null || { echo "gateway exited" >&2; exit 1; }
  sleep 0.3
done

BODY='{"message_id":"m1","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T10:00:00Z","text":"Hello"}'
cat >&2 <<MSG

  gateway  http://127.0.0.1:$GW_PORT   (POST /webhook, /health/live, /health/ready, /metrics)
  worker   http://127.0.0.1:${WORKER_ADDR##*:}   (/health/live, /health/ready, /metrics; logs in .data/worker.log)
  secret   WEBHOOK_SECRET=$WEBHOOK_SECRET

  Try it:

  BODY='$BODY'
  SIG=\$(printf '%s' "\$BODY" | openssl dgst -sha256 -hmac '$WEBHOOK_SECRET' | sed 's/^.* //')
  curl -sS -X POST http://127.0.0.1:$GW_PORT/webhook -H 'Content-Type: application/json' -H "X-Signature: \$SIG" -d "\$BODY"

MSG
wait $GATEWAY
