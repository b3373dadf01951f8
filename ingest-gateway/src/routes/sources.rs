//! `/webhook/{source}` for every configured source, the dispatch every sender path goes through
//! (by the source's kind), and `GET /admin/sources`.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::webhook::Webhook;
use super::whatsapp::{self, Handshake, WhatsApp};
use crate::error::{ApiError, DetailBody, ValidationErrorBody};
use crate::ingest::{self, Arrival, StatusBody};
use crate::observe::{RequestId, TraceParent};
use crate::sources::Kind;
use crate::sources::client::ClientAddr;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(handshake, receive))
}

pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Answers for the source `id` of the set in use: 404 when there is none.
pub async fn accept(
    state: &AppState,
    id: &str,
    client: Option<IpAddr>,
    (request_id, trace_parent): (&RequestId, &TraceParent),
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let sources = state.sources.load();
    let Some(source) = sources.get(id) else {
        return ApiError::UnknownSource.into_response();
    };
    let arrival = Arrival { source, client };
    match source.kind {
        Kind::WhatsApp => {
            ingest::receive::<WhatsApp>(state, arrival, request_id, trace_parent, headers, body)
                .await
        }
        Kind::XSignature | Kind::StandardWebhooks => {
            ingest::receive::<Webhook>(state, arrival, request_id, trace_parent, headers, body)
                .await
        }
    }
}

#[utoipa::path(
    post,
    path = "/webhook/{source}",
    operation_id = "source_webhook",
    tag = "ingest",
    summary = "Receive a signed request from a configured source",
    description = "The source's kind says what the body is and how it is signed: `x-signature` \
        and `standard-webhooks` as `POST /webhook`, `whatsapp` as `POST /webhook/whatsapp`, each \
        under the source's own keys. Checked in order: client address (403), rate limit (429), \
        size (413), signature (401), content type (415), body (422).",
    params(("source" = String, Path, description = "the source's id")),
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (new or duplicate)", body = StatusBody),
        (status = 401, description = "Signature missing or wrong", body = DetailBody),
        (status = 403, description = "Client address outside the source's allow_cidrs", body = DetailBody),
        (status = 404, description = "No such source", body = DetailBody),
        (status = 413, description = "Body over the source's max_body_bytes", body = DetailBody),
        (status = 415, description = "Content-Type is not JSON", body = DetailBody),
        (status = 422, description = "Not JSON, or a field is invalid", body = ValidationErrorBody),
        (status = 429, description = "Past the source's rate limit", body = DetailBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
        (status = 503, description = "JetStream unavailable; retry", body = DetailBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    )
)]
async fn receive(
    State(state): State<AppState>,
    Path(source): Path<String>,
    Extension(request_id): Extension<RequestId>,
    Extension(trace_parent): Extension<TraceParent>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let client = client.map(|c| c.0.0);
    accept(
        &state,
        &source,
        client,
        (&request_id, &trace_parent),
        &headers,
        body,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/webhook/{source}",
    operation_id = "source_handshake",
    tag = "ingest",
    summary = "WhatsApp subscription handshake of a source of kind whatsapp",
    params(
        ("source" = String, Path, description = "the source's id"),
        ("hub.mode" = String, Query, description = "must be `subscribe`"),
        ("hub.verify_token" = String, Query, description = "must equal the source's verify_token"),
        ("hub.challenge" = String, Query, description = "echoed back as plain text")
    ),
    responses(
        (status = 200, description = "The challenge, as plain text", content_type = "text/plain", body = String),
        (status = 403, description = "Wrong mode or token, or no token configured", body = DetailBody),
        (status = 404, description = "No such source", body = DetailBody),
        (status = 405, description = "The source is not of kind whatsapp", body = DetailBody),
    )
)]
async fn handshake(
    State(state): State<AppState>,
    Path(source): Path<String>,
    Query(query): Query<Handshake>,
) -> Result<Response, ApiError> {
    let sources = state.sources.load();
    let source = sources.get(&source).ok_or(ApiError::UnknownSource)?;
    whatsapp::answer_handshake(source, query)
}

/// One source as `GET /admin/sources` shows it: never a key.
#[derive(Serialize, ToSchema)]
pub struct SourceView {
    #[schema(example = "partner-a")]
    pub id: String,
    #[schema(example = "x-signature")]
    pub kind: &'static str,
    /// How many signing keys it has.
    pub keys: usize,
    /// Tokens a second; absent when unlimited.
    pub rate_per_sec: Option<u32>,
    pub burst: Option<u32>,
    /// Empty: any address.
    pub allow_cidrs: Vec<String>,
    pub max_body_bytes: usize,
    pub counters: CountersView,
}

/// Counted since the gateway started (kept across reloads).
#[derive(Serialize, ToSchema)]
pub struct CountersView {
    pub accepted: u64,
    pub rate_limited: u64,
    pub forbidden: u64,
    pub invalid_signature: u64,
}

#[derive(Serialize, ToSchema)]
pub struct SourcesBody {
    /// Whether they come from SOURCES_FILE (else the built-in `default` and `whatsapp`).
    pub from_file: bool,
    pub data: Vec<SourceView>,
}

#[utoipa::path(
    get,
    path = "/admin/sources",
    operation_id = "admin_sources",
    tag = "admin",
    summary = "The sources in use, their limits and counters",
    description = "Per gateway instance: the counters are this process's since it started.",
    responses(
        (status = 200, description = "The sources", body = SourcesBody),
        (status = 401, description = "Missing or wrong admin token", body = DetailBody),
        (status = 404, description = "ADMIN_TOKENS unset", body = DetailBody),
    ),
    security(("bearer" = []))
)]
async fn list(State(state): State<AppState>) -> Json<SourcesBody> {
    let sources = state.sources.load();
    let data = sources
        .iter()
        .map(|s| SourceView {
            id: s.id.clone(),
            kind: s.kind.name(),
            keys: s.secrets.len(),
            rate_per_sec: s.limit.map(|l| l.rate_per_sec.get()),
            burst: s.limit.map(|l| l.burst.get()),
            allow_cidrs: s.allow_cidrs.iter().map(ToString::to_string).collect(),
            max_body_bytes: s.max_body_bytes,
            counters: CountersView {
                accepted: s.counters.accepted.load(Ordering::Relaxed),
                rate_limited: s.counters.rate_limited.load(Ordering::Relaxed),
                forbidden: s.counters.forbidden.load(Ordering::Relaxed),
                invalid_signature: s.counters.invalid_signature.load(Ordering::Relaxed),
            },
        })
        .collect();
    Json(SourcesBody {
        from_file: sources.from_file,
        data,
    })
}
