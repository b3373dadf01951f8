//! The routes both binaries serve besides their own: `/health/live`, `/health/ready` (the
//! binary's checks, health.rs) and `/metrics`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;

use utoipa::OpenApi;

use crate::build_info;
use crate::health::{self, LiveBody, Readiness, ReadyBody};

/// The ops routes' part of a binary's OpenAPI document, from the handlers' own annotations.
#[derive(OpenApi)]
#[openapi(paths(live, ready, metrics))]
struct Ops;

pub fn document() -> utoipa::openapi::OpenApi {
    Ops::openapi()
}

/// The ops routes, and `build_info` set for this build (build_info.rs).
pub fn router<S: Readiness>(handle: PrometheusHandle) -> Router<S> {
    build_info::record();
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready::<S>))
        .route("/metrics", get(metrics).with_state(handle))
}

#[utoipa::path(
    get,
    path = "/health/live",
    tag = "ops",
    summary = "Liveness",
    responses((status = 200, description = "The process runs", body = LiveBody))
)]
async fn live() -> Json<LiveBody> {
    Json(LiveBody::ALIVE)
}

#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "ops",
    summary = "Readiness",
    description = "Ready when every check of this binary passes (gateway: the secret is set, \
        Postgres answers with the schema applied and the JetStream stream exists; worker: \
        Postgres and its consumer are usable). `search_index` reports the trigram search \
        index as the database has it; it never makes a binary not-ready.",
    responses(
        (status = 200, description = "Ready", body = ReadyBody),
        (status = 503, description = "Not ready; `missing` names what", body = ReadyBody),
    )
)]
async fn ready<S: Readiness>(State(state): State<S>) -> impl IntoResponse {
    let body = health::report(&state).await;
    (body.status_code(), Json(body))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String))
)]
async fn metrics(State(metrics): State<PrometheusHandle>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}
