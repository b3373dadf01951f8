//! The JetStream topology: one WorkQueue stream and one durable pull consumer that every worker
//! shares. Whichever binary starts first creates them; both reconcile idempotently.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{
    ConfigError, Env, parse_in_range, read_file, readable_file, secret, secs_or, string_or,
};

#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub url: String,
    /// How the connection proves who it is and checks the server (credentials, nkey, TLS).
    pub auth: NatsAuth,
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
            auth: NatsAuth::from_env(env)?,
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

/// The connection's credentials and TLS files, read and checked once at start: a file that
/// cannot be read stops the binary naming its variable, while credentials the server refuses
/// leave it running, not ready, logging the server's answer.
#[derive(Clone, Default)]
pub struct NatsAuth {
    /// `NATS_CREDS_FILE`: a user JWT and its nkey seed, as `nsc` writes them.
    creds: Option<(PathBuf, SecretString)>,
    /// `NATS_NKEY` / `NATS_NKEY_FILE`: a user nkey seed (`SU...`).
    nkey_seed: Option<SecretString>,
    /// `NATS_TLS_CA_FILE`: the CAs the server's certificate must chain to, instead of the
    /// system's.
    tls_ca: Option<PathBuf>,
    /// `NATS_TLS_CERT_FILE` and `NATS_TLS_KEY_FILE`: a client certificate for servers that
    /// verify clients.
    client_cert: Option<(PathBuf, PathBuf)>,
}

impl NatsAuth {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let creds = match readable_file(env, "NATS_CREDS_FILE")? {
            Some(path) => {
                let text = read_file("NATS_CREDS_FILE", &path.to_string_lossy())?;
                // Parsed now, so that a malformed file stops the binary at start.
                async_nats::ConnectOptions::new()
                    .credentials(&text)
                    .map_err(|e| invalid("NATS_CREDS_FILE", format!("{}: {e}", path.display())))?;
                Some((path, SecretString::from(text)))
            }
            None => None,
        };
        let nkey_seed = secret(env, "NATS_NKEY")?
            .map(|seed| SecretString::from(seed.expose_secret().trim().to_owned()));
        if let Some(seed) = &nkey_seed {
            nkeys::KeyPair::from_seed(seed.expose_secret()).map_err(|e| {
                invalid(
                    "NATS_NKEY or NATS_NKEY_FILE",
                    format!("not a user nkey seed: {e}"),
                )
            })?;
        }
        if creds.is_some() && nkey_seed.is_some() {
            return Err(invalid(
                "NATS_CREDS_FILE and NATS_NKEY",
                "both are set; a connection authenticates one way".into(),
            ));
        }
        let tls_ca = readable_file(env, "NATS_TLS_CA_FILE")?;
        let cert = readable_file(env, "NATS_TLS_CERT_FILE")?;
        let key = readable_file(env, "NATS_TLS_KEY_FILE")?;
        let client_cert = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE",
                    "a client certificate needs both".into(),
                ));
            }
        };
        Ok(Self {
            creds,
            nkey_seed,
            tls_ca,
            client_cert,
        })
    }

    /// Whether a TLS file is given: the connection then refuses to go on without TLS rather
    /// than leave the file unused.
    fn wants_tls(&self) -> bool {
        self.tls_ca.is_some() || self.client_cert.is_some()
    }

    fn apply(
        &self,
        mut options: async_nats::ConnectOptions,
    ) -> std::io::Result<async_nats::ConnectOptions> {
        if let Some((_, creds)) = &self.creds {
            options = options.credentials(creds.expose_secret())?;
        }
        if let Some(seed) = &self.nkey_seed {
            options = options.nkey(seed.expose_secret().to_owned());
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.wants_tls() {
            options = options.require_tls(true);
        }
        Ok(options)
    }
}

fn invalid(name: &str, reason: String) -> ConfigError {
    ConfigError::Var {
        name: name.to_owned(),
        reason,
    }
}

/// Says which credentials are set and where files are; never what they hold.
impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsAuth")
            .field("creds_file", &self.creds.as_ref().map(|(path, _)| path))
            .field("nkey", &self.nkey_seed.as_ref().map(|_| "***"))
            .field("tls_ca", &self.tls_ca)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

/// Connects in the background: the call returns at once and the client keeps reconnecting for
/// ever, so a binary starts (not ready) while NATS is down, or refuses its credentials, and
/// recovers by itself. With several servers in `url`, it fails over between them.
pub async fn connect(
    url: &str,
    auth: &NatsAuth,
    name: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let name_owned = name.to_owned();
    let options = async_nats::ConnectOptions::new()
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
                    // A refused login or a failed TLS handshake shows here, on every attempt.
                    async_nats::Event::ClientError(error) => {
                        tracing::warn!(client = %name, %error, "nats connection failed")
                    }
                    async_nats::Event::ServerError(error) => {
                        tracing::warn!(client = %name, %error, "nats server error")
                    }
                    other => tracing::info!(client = %name, event = %other, "nats event"),
                }
            }
        });
    auth.apply(options)
        .map_err(|e| {
            async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::Authentication, e)
        })?
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
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn settings(vars: &[(&str, &str)]) -> Result<StreamSettings, ConfigError> {
        StreamSettings::from_env(&env(vars))
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
    fn a_missing_file_is_an_error_naming_its_variable() {
        for name in [
            "NATS_CREDS_FILE",
            "NATS_NKEY_FILE",
            "NATS_TLS_CA_FILE",
            "NATS_TLS_CERT_FILE",
        ] {
            let vars = env(&[(name, "/nonexistent/nats/file")]);
            let err = NatsAuth::from_env(&vars).unwrap_err().to_string();
            assert!(
                err.contains(name) && err.contains("/nonexistent/nats/file"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_certificate_without_its_key_is_an_error_naming_both() {
        let cert = std::env::temp_dir().join(format!("ingest-nats-cert-{}", std::process::id()));
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let vars = env(&[("NATS_TLS_CERT_FILE", cert.to_str().unwrap())]);
        let err = NatsAuth::from_env(&vars).unwrap_err().to_string();
        std::fs::remove_file(&cert).unwrap();
        assert!(
            err.contains("NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE"),
            "{err}"
        );
    }

    #[test]
    fn the_nkey_seed_is_checked_and_never_printed() {
        let pair = nkeys::KeyPair::new_user();
        let seed = pair.seed().unwrap();
        let auth = NatsAuth::from_env(&env(&[("NATS_NKEY", &seed)])).unwrap();
        let settings = format!("{auth:?}");
        assert!(
            !settings.contains(&seed) && settings.contains("***"),
            "{settings}"
        );
        let err = NatsAuth::from_env(&env(&[("NATS_NKEY", "SUNOTASEED")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("NATS_NKEY") && !err.contains("SUNOTASEED"),
            "{err}"
        );
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
