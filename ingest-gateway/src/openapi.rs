//! `GET /openapi.json`: the OpenAPI 3 document, so a client or a fuzzer can be built from it.
//! The routers make it: a route is added with utoipa-axum's `routes!`, which takes its path and
//! its schemas from the handler's own `#[utoipa::path]`, so no route is served undocumented. This
//! file adds the title and the tags, and serves the result.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ingest-webhooks gateway",
        description = "Signed message webhooks in; analysts' reads out. Every error is JSON with a `detail`."
    ),
    tags(
        (name = "ingest", description = "Receiving webhooks"),
        (name = "read", description = "Querying what was stored"),
        (name = "admin", description = "Dead letters: triage, redrive, delete (`ADMIN_TOKENS`)"),
        (name = "ops", description = "Health, metrics and this document")
    ),
    modifiers(&BearerTokens)
)]
struct Frame;

/// The `bearer` scheme the read and admin routes name (`READ_TOKENS`, `ADMIN_TOKENS`).
struct BearerTokens;

impl utoipa::Modify for BearerTokens {
    fn modify(&self, document: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The rendered document, made once at start-up; a render error is answered 500 and logged.
#[derive(Clone)]
struct Document(Result<Arc<str>, Arc<str>>);

/// `GET /openapi.json`, serving `routes` (the document of the routers it describes) with the
/// title, the tags and this route itself added.
pub fn router(routes: utoipa::openapi::OpenApi) -> Router<AppState> {
    let (router, own) = OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .split_for_parts();
    let mut document = Frame::openapi();
    document.merge(routes);
    document.merge(ingest_shared::ops::document());
    document.merge(own);
    let rendered = document
        .to_json()
        .map(Arc::from)
        .map_err(|e| Arc::from(e.to_string()));
    router.with_state(Document(rendered))
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    summary = "This OpenAPI 3 document",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The document", content_type = "application/json", body = Object),
        (status = 401, description = "`READ_TOKENS` is set and no valid bearer token was sent", body = crate::error::DetailBody),
    )
)]
async fn openapi_json(State(document): State<Document>) -> Response {
    match document.0 {
        Ok(json) => (
            [(header::CONTENT_TYPE, "application/json")],
            json.to_string(),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot render the OpenAPI document");
            ApiError::Internal.into_response()
        }
    }
}
