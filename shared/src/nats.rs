//! The JetStream topology: one WorkQueue stream and one durable pull consumer that every worker
//! shares. Whichever binary starts first creates them; both reconcile idempotently.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use crate::config::{ConfigError, Env, parse_in_range, secs_or, string_or};

#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub url: String,
    pub stream: String,
    pub subject: String,
    pub duplicate_window: Duration,
    /// Size bound of the stream; when full, publishes are refused (503) rather than old
    /// messages dropped.
    pub max_bytes: i64,
    /// Message-count bound of the stream, refused the same way; -1 = unlimited.
    pub max_messages: i64,
    pub replicas: usize,
}

impl StreamSettings {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let max_messages = parse_in_range(env, "NATS_MAX_MSGS", -1, -1..=i64::MAX)?;
        if max_messages == 0 {
            return Err(ConfigError::Invalid {
                name: "NATS_MAX_MSGS",
                reason: "0 is not allowed; use -1 for unlimited".into(),
            });
        }
        Ok(Self {
            url: string_or(env, "NATS_URL", crate::config::DEFAULT_NATS_URL),
            stream: string_or(env, "NATS_STREAM", "MESSAGES"),
            subject: string_or(env, "NATS_SUBJECT", "ingest.messages"),
            duplicate_window: secs_or(env, "NATS_DUPLICATE_WINDOW_SECS", 120, 1..=86_400)?,
            max_bytes: parse_in_range(env, "NATS_MAX_BYTES", 1 << 30, 1024..=i64::MAX)?,
            max_messages,
            replicas: parse_in_range(env, "NATS_REPLICAS", 1, 1..=5)?,
        })
    }

    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            max_bytes: self.max_bytes,
            max_messages: self.max_messages,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            description: Some("signed webhook messages awaiting the ingest workers".into()),
            ..Default::default()
        }
    }
}

/// `NATS_URL` may list several servers separated by commas, the usual form for a cluster. The
/// client tries them in turn and, once connected, also learns the cluster's other members.
pub fn server_list(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Connects in the background: the call returns at once and the client keeps reconnecting for
/// ever, so a binary starts (not ready) while NATS is down and recovers by itself. With several
/// servers in `url`, it fails over between them.
pub async fn connect(
    url: &str,
    name: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let name_owned = name.to_owned();
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .event_callback(move |event| {
            let name = name_owned.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(client = %name, "nats connected")
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(client = %name, "nats disconnected")
                    }
                    other => tracing::info!(client = %name, event = %other, "nats event"),
                }
            }
        })
        .connect(server_list(url))
        .await
}

/// Creates the stream or reconciles its config.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Info, jetstream::context::CreateStreamError> {
    js.create_or_update_stream(settings.stream_config()).await
}

/// Retries [`ensure_stream`] on the shared schedule (crate::retry) until it succeeds or `cancel`
/// fires; `false` when cancelled.
pub async fn ensure_stream_with_retry(
    js: &jetstream::Context,
    settings: &StreamSettings,
    cancel: &tokio_util::sync::CancellationToken,
) -> bool {
    let ready = crate::retry::until_ok(
        crate::retry::Backoff::new(),
        cancel,
        || ensure_stream(js, settings),
        |error, delay| {
            tracing::warn!(%error, stream = %settings.stream, retry_in_ms = delay.as_millis() as u64, "stream setup failed");
        },
    )
    .await;
    match ready {
        Some(info) => {
            tracing::info!(stream = %info.config.name, "jetstream stream ready");
            true
        }
        None => false,
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub durable: String,
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
    /// -1 = unlimited. A last resort for a payload that crashes or hangs workers (invalid payloads
    /// are dead-lettered long before); the worker moves a message that reaches it to dead_letters
    /// and deletes it from the stream (ingest-worker/src/max_deliveries.rs).
    pub max_deliver: i64,
}

impl ConsumerSettings {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let max_deliver = parse_in_range(env, "MAX_DELIVER", 20, -1..=i64::from(i32::MAX))?;
        if max_deliver == 0 {
            return Err(ConfigError::Invalid {
                name: "MAX_DELIVER",
                reason: "0 is not allowed; use -1 for unlimited".into(),
            });
        }
        Ok(Self {
            durable: string_or(env, "NATS_CONSUMER", "ingest-worker"),
            ack_wait: secs_or(env, "ACK_WAIT_SECS", 30, 1..=3600)?,
            max_ack_pending: parse_in_range(env, "MAX_ACK_PENDING", 20_000, 1..=1_000_000)?,
            max_deliver,
        })
    }

    pub fn consumer_config(&self) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(self.durable.clone()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_ack_pending: self.max_ack_pending,
            max_deliver: self.max_deliver,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{StreamSettings, server_list};

    fn settings(vars: &[(&str, &str)]) -> Result<StreamSettings, crate::config::ConfigError> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        StreamSettings::from_env(&env)
    }

    #[test]
    fn the_message_bound_is_unlimited_unless_set_and_zero_is_refused() {
        assert_eq!(settings(&[]).unwrap().stream_config().max_messages, -1);
        let bounded = settings(&[("NATS_MAX_MSGS", "5000")]).unwrap();
        assert_eq!(bounded.stream_config().max_messages, 5000);
        let zero = settings(&[("NATS_MAX_MSGS", "0")]).unwrap_err().to_string();
        assert!(zero.contains("NATS_MAX_MSGS"), "{zero}");
        assert!(settings(&[("NATS_MAX_MSGS", "-2")]).is_err());
    }

    #[test]
    fn a_comma_separated_url_is_a_server_list() {
        assert_eq!(
            server_list("nats://a:4222, nats://b:4223,,nats://c:4224 "),
            ["nats://a:4222", "nats://b:4223", "nats://c:4224"]
        );
        assert_eq!(
            server_list("nats://127.0.0.1:4222"),
            ["nats://127.0.0.1:4222"]
        );
    }
}
