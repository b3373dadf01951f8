//! The health and metrics endpoints' documentation, as stubs beside routes/health.rs and
//! routes/metrics.rs, which are not yet routed through `OpenApiRouter`.
// lead: replace when the shared ops routes land (their handlers and typed bodies carry these
// `#[utoipa::path]`s, and their router is merged like the API's in lib.rs).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(paths(health_live, health_ready, metrics))]
struct Ops;

/// The ops endpoints' paths and the schemas they answer with.
pub(super) fn document() -> utoipa::openapi::OpenApi {
    Ops::openapi()
}

#[derive(Serialize, ToSchema)]
pub struct LiveBody {
    #[schema(example = "alive")]
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct ReadyBody {
    /// `ready` or `not_ready`.
    pub status: String,
    /// The checks that failed: `secret`, `database`, `stream`.
    pub missing: Vec<String>,
    /// Each check's outcome: `ok` or why not.
    pub checks: BTreeMap<String, String>,
}

#[utoipa::path(
    get,
    path = "/health/live",
    tag = "ops",
    summary = "Liveness",
    responses((status = 200, description = "The process runs", body = LiveBody))
)]
#[allow(dead_code)]
fn health_live() {}

#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "ops",
    summary = "Readiness",
    description = "Ready when the secret is set, Postgres answers with the schema applied and the \
        JetStream stream exists.",
    responses(
        (status = 200, description = "Ready", body = ReadyBody),
        (status = 503, description = "Not ready; `missing` names what", body = ReadyBody),
    )
)]
#[allow(dead_code)]
fn health_ready() {}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String))
)]
#[allow(dead_code)]
fn metrics() {}
