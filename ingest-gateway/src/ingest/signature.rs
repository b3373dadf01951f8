//! The signature schemes a sender can use, each checked over the raw body. A sender's
//! [`Sender::verify`](super::Sender::verify) picks its scheme from here.

use axum::http::HeaderMap;
use ingest_shared::signature::{StandardWebhookError, StandardWebhookHeaders};

use super::publish::unix_micros;
use crate::error::ApiError;
use crate::sources::Source;

/// Every scheme the source accepts (`WEBHOOK_SCHEMES` for the built-in `default`, its kind for
/// a file's source): Standard Webhooks when its headers are present and the scheme is on, else
/// `X-Signature`.
pub fn webhook_signature(
    config: &Source,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<usize, ApiError> {
    let standard = StandardWebhookHeaders {
        id: headers.get("webhook-id").map(|v| v.as_bytes()),
        timestamp: headers.get("webhook-timestamp").map(|v| v.as_bytes()),
        signature: headers.get("webhook-signature").map(|v| v.as_bytes()),
    };
    if config.schemes.standard_webhooks && standard.signature.is_some() {
        let now = (unix_micros() / 1_000_000) as i64;
        config
            .standard_secrets
            .verify_standard(&standard, body, now, config.tolerance_secs)
            .map_err(|e| match e {
                StandardWebhookError::InvalidSignature => ApiError::InvalidSignature,
                StandardWebhookError::OutsideTolerance => ApiError::StaleTimestamp,
            })
    } else if config.schemes.x_signature {
        config
            .secrets
            .verify(body, headers.get("x-signature").map(|v| v.as_bytes()))
            .ok_or(ApiError::InvalidSignature)
    } else {
        Err(ApiError::InvalidSignature)
    }
}

/// Meta's `X-Hub-Signature-256` under the source's keys (`WHATSAPP_APP_SECRET` built in).
pub fn hub_signature(source: &Source, headers: &HeaderMap, body: &[u8]) -> Result<usize, ApiError> {
    source
        .secrets
        .verify(
            body,
            headers.get("x-hub-signature-256").map(|v| v.as_bytes()),
        )
        .ok_or(ApiError::InvalidSignature)
}
