//! Overload protection: a bound on concurrent API requests with load shedding, a deadline on each
//! request, and limits on request headers. Overload turns into fast 503s with `Retry-After`,
//! never into a queue of minutes or unbounded memory.

use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use tower::BoxError;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;

use crate::Config;
use crate::metrics;

/// Puts the API routes of `router` under one bound: at most `max_concurrent_requests` at once
/// (one semaphore shared by every route, not one each), the rest shed at once rather than queued,
/// each bounded by `request_timeout`. Routes merged later (health, metrics) stay outside, so
/// probes answer under overload.
pub fn bounded<S>(router: Router<S>, config: &Config) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let retry_after = config.retry_after_secs;
    router.route_layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |error: BoxError| async move {
                overloaded(&error, retry_after)
            }))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(
                config.max_concurrent_requests,
            ))
            .layer(TimeoutLayer::new(config.request_timeout)),
    )
}

fn overloaded(error: &BoxError, retry_after_secs: u64) -> Response {
    let (reason, detail) = if error.is::<tower::load_shed::error::Overloaded>() {
        ("overloaded", "too many requests in progress, retry later")
    } else if error.is::<tower::timeout::error::Elapsed>() {
        ("timeout", "request took too long, retry later")
    } else {
        ("other", "temporarily unavailable, retry later")
    };
    metrics::shed(reason);
    tracing::warn!(reason, "request shed");
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "detail": detail })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// Header limits, enforced here rather than in the HTTP parser so the answer is a JSON 431 like
/// every other refusal. The parser's own, higher cap (see `serve.rs`) still protects memory.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimits {
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

pub async fn header_guard(
    State(limits): State<HeaderLimits>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > limits.max_headers || bytes > limits.max_header_bytes {
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Json(json!({
                "detail": format!(
                    "request headers exceed {} fields or {} bytes",
                    limits.max_headers, limits.max_header_bytes
                )
            })),
        )
            .into_response();
    }
    next.run(request).await
}
