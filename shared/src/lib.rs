//! What the gateway and the worker share: configuration helpers, the message model and its
//! validation, the signature check, the database schema, the JetStream topology and telemetry.

pub mod config;
pub mod db;
pub mod message;
pub mod nats;
pub mod shutdown;
pub mod signature;
pub mod telemetry;
pub mod whatsapp;

/// Header that carries the gateway's request id to the worker.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";
/// Header that carries the gateway's receive time (unix microseconds) to the worker, for the
/// end-to-end latency metric.
pub const RECEIVED_AT_HEADER: &str = "X-Received-At";
