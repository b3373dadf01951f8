# Shortcuts; each target is one documented command. Docker targets need Docker with Compose v2.
.PHONY: up down destroy logs ps test run bench fmt lint release

COMPOSE ?= docker compose

# Build the image and start NATS, Postgres, the gateway (port 8000), two workers, Prometheus
# (127.0.0.1:9090), Alertmanager (127.0.0.1:9093), the Postgres exporter (127.0.0.1:9187) and
# Grafana (127.0.0.1:3000, user admin, GRAFANA_ADMIN_PASSWORD from .env).
up: .env
	$(COMPOSE) up -d --build

# Stop everything; the stream, the database and the metrics stay in their volumes.
down:
	$(COMPOSE) down

# Stop everything and delete the volumes: every stored message, queued message and metric.
destroy:
	$(COMPOSE) down -v

logs:
	$(COMPOSE) logs -f --tail=100

ps:
	$(COMPOSE) ps

# The README's test command: real NATS and Postgres, started when missing.
test:
	./scripts/test.sh

# The README's run command: NATS, Postgres, a worker and the gateway, in release mode, no Docker.
run:
	./scripts/run.sh

# Load test; see BENCHMARKS.md.
bench:
	./scripts/bench.sh

fmt:
	cargo fmt --all

# The lint gate .ci/run runs: rustfmt, clippy with warnings as errors, unused dependencies.
lint:
	./scripts/lint.sh

# Cut a release: make release VERSION=X.Y.Z (DRY_RUN=1 prints the steps); see docs/releasing.md.
release:
	@test -n "$(VERSION)" || { echo "usage: make release VERSION=X.Y.Z [DRY_RUN=1]"; exit 2; }
	./scripts/release.sh $(if $(DRY_RUN),--dry-run) $(VERSION)

# A first .env: the example with fresh random secrets (hex, so it is safe inside DATABASE_URL).
# Never overwrites an existing .env.
.env:
	@test -f .env.example
	@secret() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }; \
	sed -e "s/^WEBHOOK_SECRET=.*/WEBHOOK_SECRET=$$(secret)/" \
	    -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$$(secret)/" \
	    -e "s/^GRAFANA_ADMIN_PASSWORD=.*/GRAFANA_ADMIN_PASSWORD=$$(secret)/" .env.example > .env
	@echo "wrote .env with random WEBHOOK_SECRET, POSTGRES_PASSWORD and GRAFANA_ADMIN_PASSWORD; senders need the WEBHOOK_SECRET"
