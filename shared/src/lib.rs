//! What the gateway and the worker share: configuration helpers and the command line, the ops
//! routes (health, metrics, build info), the message model and its validation, the signature
//! check, the database schema, the JetStream topology and telemetry.

#[cfg(feature = "runtime")]
pub mod build_info;
#[cfg(feature = "runtime")]
pub mod cli;
#[cfg(feature = "runtime")]
pub mod config;
#[cfg(feature = "runtime")]
pub mod db;
#[cfg(feature = "runtime")]
pub mod health;
pub mod message;
#[cfg(feature = "runtime")]
pub mod metric;
#[cfg(feature = "runtime")]
pub mod nats;
#[cfg(feature = "runtime")]
pub mod ops;
pub mod raw;
#[cfg(feature = "runtime")]
pub mod read_model;
#[cfg(feature = "runtime")]
pub mod retry;
#[cfg(feature = "runtime")]
pub mod search_index;
#[cfg(feature = "runtime")]
pub mod service;
#[cfg(feature = "runtime")]
pub mod shutdown;
pub mod signature;
#[cfg(feature = "runtime")]
pub mod telemetry;
pub mod whatsapp;

/// Header that carries the gateway's request id to the worker.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";
/// Header that carries the gateway's receive time (unix microseconds) to the worker, for the
/// end-to-end latency metric.
pub const RECEIVED_AT_HEADER: &str = "X-Received-At";
/// Header that carries the id of the source a message came in through (`default` for
/// `/webhook`, `whatsapp` for `/webhook/whatsapp`) to the worker, which stores it.
pub const SOURCE_HEADER: &str = "X-Source";
