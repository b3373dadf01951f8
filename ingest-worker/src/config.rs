use std::net::SocketAddr;
use std::time::Duration;

use ingest_shared::config::{
    ConfigError, Env, SecretUrl, millis_or, one_of, parse_in_range, parse_opt_in_range, parse_or,
    secs_or, string_or,
};
use ingest_shared::nats::{ConsumerSettings, StreamSettings};
use ingest_shared::search_index::SearchIndex;

use crate::partitions::PartitionSettings;
use crate::retention::RetentionSettings;

/// Everything the worker reads from the environment, parsed once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub database_url: SecretUrl,
    pub db_max_connections: u32,
    /// Whether `messages` keeps the trigram index for `q=` (`SEARCH_INDEX`, same on every binary).
    pub search_index: SearchIndex,
    pub nats: StreamSettings,
    pub consumer: ConsumerSettings,
    /// Most messages written in one statement.
    pub batch_size: usize,
    /// How long a partial batch waits for more messages before it is written.
    pub batch_wait: Duration,
    /// Batches stored at once by this worker (`BATCHES_IN_FLIGHT`).
    pub batches_in_flight: usize,
    /// How often consumer lag is read from the server for the metrics.
    pub lag_poll: Duration,
    /// `None` (RETENTION_DAYS unset): messages are kept for ever.
    pub retention: Option<RetentionSettings>,
    /// `None` (DEAD_LETTER_RETENTION_DAYS unset): dead letters are kept for ever.
    pub dead_letter_retention: Option<RetentionSettings>,
    /// The partitions of `messages` the worker keeps ahead of time.
    pub partitions: PartitionSettings,
    /// Whether each row keeps the body it came from in `messages.raw` (`RAW_PAYLOAD`).
    pub raw_payload: RawPayload,
    pub log_level: String,
    /// Fault injection for tests; always off in the binary.
    #[doc(hidden)]
    pub faults: Faults,
}

#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Commit the first batch, then stop consuming without acking it: a crash between the
    /// commit and the acks.
    pub stop_after_commit_before_ack: bool,
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let batch_size: usize = parse_in_range(env, "BATCH_SIZE", 500, 1..=10_000)?;
        let consumer = ConsumerSettings::from_env(env)?;
        if (consumer.max_ack_pending as usize) < batch_size {
            return Err(ConfigError::Invalid {
                name: "MAX_ACK_PENDING",
                reason: format!(
                    "{} is below BATCH_SIZE {batch_size}: batches could never fill",
                    consumer.max_ack_pending
                ),
            });
        }
        Ok(Self {
            addr: parse_or(env, "WORKER_ADDR", SocketAddr::from(([0, 0, 0, 0], 8001)))?,
            database_url: ingest_shared::db::url_from_env(env)?,
            db_max_connections: parse_in_range(env, "WORKER_DB_MAX_CONNECTIONS", 4, 1..=1000)?,
            search_index: SearchIndex::from_env(env)?,
            nats: StreamSettings::from_env(env)?,
            consumer,
            batch_size,
            batch_wait: millis_or(env, "BATCH_WAIT_MS", 20, 1..=60_000)?,
            batches_in_flight: parse_in_range(env, "BATCHES_IN_FLIGHT", 2, 1..=16)?,
            lag_poll: secs_or(env, "LAG_POLL_SECS", 5, 1..=3600)?,
            retention: retention_from_env(env, "RETENTION_DAYS")?,
            dead_letter_retention: retention_from_env(env, "DEAD_LETTER_RETENTION_DAYS")?,
            partitions: PartitionSettings::from_env(env)?,
            raw_payload: RawPayload::from_env(env)?,
            log_level: string_or(env, "LOG_LEVEL", "info"),
            faults: Faults::default(),
        })
    }
}

/// What `RAW_PAYLOAD` asks for: whether a stored message keeps the body the gateway published
/// (for WhatsApp, with Meta's message object, metadata and contacts) as `messages.raw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RawPayload {
    /// `raw` holds the body (the default): nothing a sender sent is lost to the fixed columns.
    #[default]
    Keep,
    /// `raw` is NULL, for deployments that must not store more than the fixed columns.
    Drop,
}

impl RawPayload {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(
            match one_of(env, "RAW_PAYLOAD", "keep", &["keep", "drop"])? {
                "drop" => Self::Drop,
                _ => Self::Keep,
            },
        )
    }
}

/// Unset or empty keeps messages for ever; 0 is refused rather than read as "delete everything"
/// or "off", since either reading would surprise someone. The other knobs are checked even when
/// retention is off, so a typo shows at start rather than on the day retention is switched on.
/// `days` names the variable: `RETENTION_DAYS` (messages) or `DEAD_LETTER_RETENTION_DAYS`, which
/// share the other knobs.
fn retention_from_env(
    env: &dyn Env,
    days: &'static str,
) -> Result<Option<RetentionSettings>, ConfigError> {
    let batch_size = parse_in_range(env, "RETENTION_BATCH_SIZE", 5000, 1..=1_000_000)?;
    let batch_pause = millis_or(env, "RETENTION_BATCH_PAUSE_MS", 100, 0..=60_000)?;
    let interval = secs_or(env, "RETENTION_INTERVAL_SECS", 3600, 1..=7 * 86_400)?;
    let days = parse_opt_in_range(env, days, 1..=36_500)?;
    Ok(days.map(|days| RetentionSettings {
        days,
        batch_size,
        batch_pause,
        interval,
    }))
}
