# syntax=docker/dockerfile:1
#
# One image, three binaries: ingest-gateway (the default command), ingest-worker, and
# ingest-healthcheck (the HEALTHCHECK probe). docker-compose.yml picks the command per service.
#
#   docker build -t ingest-webhooks .
#   docker run --rm -e WEBHOOK_SECRET=... -e NATS_URL=... -e DATABASE_URL=... -p 8000:8000 ingest-webhooks
#   docker run --rm ... ingest-webhooks ingest-worker
#
# Layers: cargo-chef turns the workspace manifests into a recipe, so the dependency build (minutes)
# is cached until Cargo.toml or Cargo.lock change; editing a source file rebuilds only the
# workspace crates.

ARG RUST_VERSION=1.95.0
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
# make: the gateway links jemalloc, whose build (tikv-jemalloc-sys) runs it; the slim image has
# gcc but not make.
RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version ${CARGO_CHEF_VERSION}
WORKDIR /app

FROM chef AS planner
# .dockerignore keeps target/, .git, .env and local data out of the context.
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
    -p ingest-gateway -p ingest-worker -p ingest-healthcheck
# Only what the three binaries are built from. tests/ is a workspace member, so cargo needs it to
# load the workspace, though nothing in it is built here. migrations/ is embedded at compile time
# (sqlx::migrate!), so the image applies the schema itself. The statements are checked against
# .sqlx/ (offline, as .cargo/config.toml sets): the build needs no database.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY .sqlx .sqlx
COPY shared shared
COPY ingest-gateway ingest-gateway
COPY ingest-worker ingest-worker
COPY healthcheck healthcheck
COPY migrations migrations
COPY tests tests
# The commit, for build_info and --version (shared/build.rs reads it: the context has no .git).
# Declared after the dependency layers, so a new commit does not rebuild them.
ARG INGEST_GIT_SHA
RUN cargo build --release --locked \
    --bin ingest-gateway --bin ingest-worker --bin ingest-healthcheck

# glibc and libgcc (what a Rust binary links), CA certificates, no shell, no package manager;
# the :nonroot tag runs as uid 65532. TLS is rustls, so no OpenSSL either.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
# OCI labels: which version and commit the image holds, and where its source is
# (scripts/release.sh passes all three).
ARG INGEST_VERSION=unknown
ARG INGEST_GIT_SHA=unknown
ARG IMAGE_SOURCE=""
LABEL org.opencontainers.image.title="ingest-webhooks" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${INGEST_VERSION}" \
      org.opencontainers.image.revision="${INGEST_GIT_SHA}" \
      org.opencontainers.image.source="${IMAGE_SOURCE}"
COPY --from=builder /app/target/release/ingest-gateway /usr/local/bin/ingest-gateway
COPY --from=builder /app/target/release/ingest-worker /usr/local/bin/ingest-worker
COPY --from=builder /app/target/release/ingest-healthcheck /usr/local/bin/ingest-healthcheck
USER 65532:65532
ENV GATEWAY_ADDR=0.0.0.0:8000 \
    WORKER_ADDR=0.0.0.0:8001 \
    LOG_LEVEL=info
EXPOSE 8000 8001
# Both binaries drain on SIGTERM (finish in-flight requests, commit or hand back the batch in
# hand); give them `stop_grace_period` in compose to do it.
STOPSIGNAL SIGTERM
# Ready, not merely alive: "healthy" then means "serving" (secret set, Postgres and JetStream
# answering), which is what `depends_on: service_healthy` and load balancers want. Without
# arguments the probe checks whichever of the gateway (GATEWAY_ADDR) and the worker (WORKER_ADDR)
# listens, so this one line is right for both binaries; exec form, as there is no shell.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/ingest-healthcheck"]
CMD ["/usr/local/bin/ingest-gateway"]
