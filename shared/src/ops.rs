//! The routes both binaries serve besides their own: `/health/live`, `/health/ready` (the
//! binary's checks, health.rs) and `/metrics`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::build_info;
use crate::health::{self, LiveBody, Readiness};

/// The ops routes, and `build_info` set for `version` (the binary's own crate version).
pub fn router<S: Readiness>(metrics: PrometheusHandle, version: &'static str) -> Router<S> {
    build_info::record(version);
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready::<S>))
        .route(
            "/metrics",
            get(move || std::future::ready(render(&metrics))),
        )
}

async fn live() -> Json<LiveBody> {
    Json(LiveBody::ALIVE)
}

async fn ready<S: Readiness>(State(state): State<S>) -> impl IntoResponse {
    let body = health::report(&state).await;
    (body.status_code(), Json(body))
}

fn render(metrics: &PrometheusHandle) -> impl IntoResponse + use<> {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}
