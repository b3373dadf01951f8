//! Ready means this worker can take messages off the consumer and commit them.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use ingest_shared::db;
use serde_json::json;

use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

async fn live() -> impl IntoResponse {
    Json(json!({"status": "alive"}))
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let (status, body) = check(&state).await;
    (status, Json(body))
}

/// Runs the readiness checks and records the outcome in the `worker_ready` gauge.
pub async fn check(state: &AppState) -> (StatusCode, serde_json::Value) {
    let (database, consumer) = tokio::join!(check_database(state), check_consumer(state));
    let checks = [("database", database), ("consumer", consumer)];
    let missing: Vec<&str> = checks
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| *name)
        .collect();
    let details: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|(name, r)| ((*name).to_owned(), json!(r.err().unwrap_or("ok"))))
        .collect();
    let status = if missing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if missing.is_empty() { "ready" } else { "not_ready" },
        "missing": missing,
        "checks": details,
    });
    metrics::gauge!("worker_ready").set(if missing.is_empty() { 1.0 } else { 0.0 });
    (status, body)
}

async fn check_database(state: &AppState) -> Result<(), &'static str> {
    match tokio::time::timeout(CHECK_TIMEOUT, db::schema_ready(&state.db)).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err("schema not applied"),
        Ok(Err(_)) | Err(_) => Err("postgres unreachable"),
    }
}

async fn check_consumer(state: &AppState) -> Result<(), &'static str> {
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        return Err("nats disconnected");
    }
    let info = async {
        let stream = state
            .jetstream
            .get_stream(&state.config.nats.stream)
            .await
            .map_err(|_| "stream missing")?;
        stream
            .consumer_info(&state.config.consumer.durable)
            .await
            .map_err(|_| "consumer missing")
    };
    match tokio::time::timeout(CHECK_TIMEOUT, info).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err("jetstream timed out"),
    }
}
