use std::net::SocketAddr;
use std::time::Duration;

use ingest_shared::config::{
    ConfigError, Env, SecretUrl, VarDoc, list_or, millis_or, parse_in_range, parse_or, secret,
    string_or,
};
use ingest_shared::db;
use ingest_shared::nats::StreamSettings;
use ingest_shared::search_index::SearchIndex;
use ingest_shared::signature::WebhookSecrets;
use secrecy::{ExposeSecret, SecretString};

use crate::access::Tokens;

/// Everything the gateway reads from the environment, parsed once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub secrets: WebhookSecrets,
    /// The same `WEBHOOK_SECRET` list keyed the Standard Webhooks way (`whsec_` base64 keys).
    pub standard_secrets: WebhookSecrets,
    pub schemes: Schemes,
    /// Standard Webhooks: how far `webhook-timestamp` may be from now, either way.
    pub tolerance_secs: i64,
    /// Meta's subscription handshake token; unset, every handshake is refused.
    pub whatsapp_verify_token: Option<SecretString>,
    /// Meta app secret(s) for `X-Hub-Signature-256`; unset, every WhatsApp POST is 401.
    pub whatsapp_secrets: WebhookSecrets,
    /// Bearer tokens for the read API; empty, it is open.
    pub read_tokens: Tokens,
    /// Bearer tokens for `/admin/*`; empty, those routes do not exist (404).
    pub admin_tokens: Tokens,
    pub database_url: SecretUrl,
    pub db_max_connections: u32,
    /// Where the read API queries: a replica, or (by default) the same database.
    pub database_read_url: SecretUrl,
    /// A pool of its own, so analysts' queries never take the connections /health/ready needs.
    pub read_db_max_connections: u32,
    /// Bound on one read query, so an expensive search cannot hold a connection for long.
    pub read_statement_timeout: Duration,
    /// Streamed exports (`GET /messages?format=ndjson|csv`) at once; past it 503. Each holds at
    /// most one read pool connection, and only during a round trip.
    pub max_concurrent_exports: usize,
    /// Rows an export reads per round trip: the memory one export holds, and how often it asks.
    pub export_batch_rows: i64,
    /// Rows per second one export is paced to (0: unpaced), so that exports leave the database
    /// and the gateway's threads to the ingest path.
    pub export_rows_per_sec: u32,
    /// Whether `messages` keeps the trigram index for `q=` (`SEARCH_INDEX`, same on every binary).
    pub search_index: SearchIndex,
    /// Read-your-writes: how long a read may wait for the messages acknowledged before it to be
    /// stored. Past it the read is served as it is, marked `Consistency: stale`. Zero: no wait.
    pub read_consistency_timeout: Duration,
    pub nats: StreamSettings,
    pub max_body_bytes: usize,
    /// Bound on the wait for JetStream's PubAck; past it the sender gets 503 and retries.
    pub publish_timeout: Duration,
    /// Bound on reading a request body, so a sender that never finishes cannot hold a slot.
    pub body_timeout: Duration,
    pub retry_after_secs: u64,
    /// Publishes awaiting their PubAck at once, across all requests.
    pub max_inflight_publishes: usize,
    /// API requests served at once; the rest get an immediate 503 (load shedding). Memory in
    /// flight is bounded by this times `max_body_bytes`.
    pub max_concurrent_requests: usize,
    /// Whole-request deadline for API routes (503 after); above body + publish timeouts so those
    /// keep their own, more precise answers.
    pub request_timeout: Duration,
    /// A client that has not sent its full request head by then is disconnected (slowloris).
    pub header_read_timeout: Duration,
    /// Most header fields in one request (431 above).
    pub max_headers: usize,
    /// Most bytes of header names and values in one request (431 above).
    pub max_header_bytes: usize,
    pub log_level: String,
    /// `SOURCES_FILE`: the senders' file; unset, the built-in `default` and `whatsapp`. Set, the
    /// read API also names each message's source (`source` in `/messages` items, the export's
    /// lines and a CSV column); unset, its answers keep the shape they had before sources.
    pub sources_file: Option<std::path::PathBuf>,
    /// The sources read at start-up (sources/); reloads replace the gateway's own copy.
    pub sources: std::sync::Arc<crate::sources::Sources>,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// `SOURCES_FILE`, when it names a file (unset or empty: none); `--help` shows it unset.
fn sources_file(env: &dyn Env) -> Option<std::path::PathBuf> {
    env.describe(VarDoc {
        name: "SOURCES_FILE".to_owned(),
        default: None,
        range: None,
        secret: false,
    });
    env.get("SOURCES_FILE")
        .filter(|path| !path.trim().is_empty())
        .map(std::path::PathBuf::from)
}

impl Config {
    /// Whether senders come from `SOURCES_FILE`, so that reads name each message's source.
    pub fn sources_configured(&self) -> bool {
        self.sources_file.is_some()
    }

    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let webhook_secret = secret(env, "WEBHOOK_SECRET")?;
        let webhook_secret = webhook_secret.as_ref().map_or("", |s| s.expose_secret());
        let database_url = db::url_from_env(env)?;
        let mut config = Self {
            addr: parse_or(env, "GATEWAY_ADDR", SocketAddr::from(([0, 0, 0, 0], 8000)))?,
            secrets: WebhookSecrets::from_list(webhook_secret),
            standard_secrets: WebhookSecrets::from_standard_list(webhook_secret),
            schemes: Schemes::parse(&list_or(
                env,
                "WEBHOOK_SCHEMES",
                "x-signature",
                &Schemes::NAMES,
            ))?,
            tolerance_secs: parse_in_range(env, "WEBHOOK_TOLERANCE_SECS", 300, 1..=86_400)?,
            whatsapp_verify_token: secret(env, "WHATSAPP_VERIFY_TOKEN")?
                .filter(|t| !t.expose_secret().trim().is_empty()),
            whatsapp_secrets: WebhookSecrets::from_list(
                secret(env, "WHATSAPP_APP_SECRET")?
                    .as_ref()
                    .map_or("", |s| s.expose_secret()),
            ),
            read_tokens: tokens(env, "READ_TOKENS")?,
            admin_tokens: tokens(env, "ADMIN_TOKENS")?,
            database_read_url: db::read_url_from_env(env, &database_url)?,
            database_url,
            db_max_connections: parse_in_range(env, "GATEWAY_DB_MAX_CONNECTIONS", 8, 1..=1000)?,
            read_db_max_connections: parse_in_range(
                env,
                "GATEWAY_READ_DB_MAX_CONNECTIONS",
                8,
                1..=1000,
            )?,
            read_statement_timeout: millis_or(
                env,
                "READ_STATEMENT_TIMEOUT_MS",
                5000,
                10..=600_000,
            )?,
            max_concurrent_exports: parse_in_range(env, "MAX_CONCURRENT_EXPORTS", 2, 1..=1000)?,
            export_batch_rows: parse_in_range(env, "EXPORT_BATCH_ROWS", 1000, 1..=100_000)?,
            export_rows_per_sec: parse_in_range(
                env,
                "EXPORT_ROWS_PER_SEC",
                120_000,
                0..=100_000_000,
            )?,
            search_index: SearchIndex::from_env(env)?,
            read_consistency_timeout: millis_or(
                env,
                "READ_CONSISTENCY_TIMEOUT_MS",
                1000,
                0..=60_000,
            )?,
            nats: StreamSettings::from_env(env)?,
            max_body_bytes: parse_in_range(env, "MAX_BODY_BYTES", 1 << 20, 64..=64 << 20)?,
            publish_timeout: millis_or(env, "PUBLISH_TIMEOUT_MS", 2000, 10..=60_000)?,
            body_timeout: millis_or(env, "BODY_TIMEOUT_MS", 10_000, 100..=600_000)?,
            retry_after_secs: parse_in_range(env, "RETRY_AFTER_SECS", 1, 1..=3600)?,
            max_inflight_publishes: parse_in_range(
                env,
                "MAX_INFLIGHT_PUBLISHES",
                8192,
                1..=1_000_000,
            )?,
            max_concurrent_requests: parse_in_range(
                env,
                "MAX_CONCURRENT_REQUESTS",
                1024,
                1..=1_000_000,
            )?,
            request_timeout: millis_or(env, "REQUEST_TIMEOUT_MS", 15_000, 100..=600_000)?,
            header_read_timeout: millis_or(env, "HEADER_READ_TIMEOUT_MS", 10_000, 100..=600_000)?,
            max_headers: parse_in_range(env, "MAX_HEADERS", 100, 8..=1000)?,
            max_header_bytes: parse_in_range(env, "MAX_HEADER_BYTES", 16 << 10, 1024..=256 << 10)?,
            log_level: string_or(env, "LOG_LEVEL", "info"),
            sources_file: sources_file(env),
            sources: Default::default(),
            trusted_proxies: trusted_proxies(&string_or(env, "TRUSTED_PROXIES", ""))?,
        };
        config.sources = std::sync::Arc::new(crate::sources::Sources::load(&config, None)?);
        Ok(config)
    }
}

/// Which signature schemes `/webhook` accepts (`WEBHOOK_SCHEMES`, comma-separated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schemes {
    /// `X-Signature: <hex HMAC of the body>`, the older API's scheme.
    pub x_signature: bool,
    /// `webhook-id` / `webhook-timestamp` / `webhook-signature`, with replay protection.
    pub standard_webhooks: bool,
}

impl Schemes {
    const NAMES: [&str; 2] = ["x-signature", "standard-webhooks"];

    fn parse(list: &str) -> Result<Self, ConfigError> {
        let mut schemes = Schemes {
            x_signature: false,
            standard_webhooks: false,
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "x-signature" => schemes.x_signature = true,
                "standard-webhooks" => schemes.standard_webhooks = true,
                other => {
                    return Err(ConfigError::Invalid {
                        name: "WEBHOOK_SCHEMES",
                        reason: format!("unknown scheme {other:?} ({})", Self::NAMES.join(", ")),
                    });
                }
            }
        }
        if !schemes.x_signature && !schemes.standard_webhooks {
            return Err(ConfigError::Invalid {
                name: "WEBHOOK_SCHEMES",
                reason: "names no scheme".into(),
            });
        }
        Ok(schemes)
    }
}

/// Comma-separated CIDRs (or bare addresses).
fn trusted_proxies(list: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            crate::sources::parse_cidr(c).ok_or_else(|| ConfigError::Invalid {
                name: "TRUSTED_PROXIES",
                reason: format!("{c:?} is not a CIDR"),
            })
        })
        .collect()
}

/// A bearer token list (`READ_TOKENS`, `ADMIN_TOKENS`), read as a secret.
fn tokens(env: &dyn Env, name: &str) -> Result<Tokens, ConfigError> {
    Ok(Tokens::from_list(
        secret(env, name)?
            .as_ref()
            .map_or("", |s| s.expose_secret()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// (The NATS nkey's settings have their own test in shared/src/nats.rs.)
    #[test]
    fn debug_shows_no_secret_read_from_a_file() {
        let dir =
            std::env::temp_dir().join(format!("ingest-gateway-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secrets = [
            ("WEBHOOK_SECRET_FILE", "webhook-key-from-file"),
            ("WHATSAPP_APP_SECRET_FILE", "app-secret-from-file"),
            ("WHATSAPP_VERIFY_TOKEN_FILE", "verify-token-from-file"),
            ("READ_TOKENS_FILE", "read-token-from-file"),
            ("ADMIN_TOKENS_FILE", "admin-token-from-file"),
            ("DATABASE_PASSWORD_FILE", "db-password-from-file"),
        ];
        let mut vars: HashMap<String, String> = secrets
            .iter()
            .map(|(name, value)| {
                let path = dir.join(name);
                std::fs::write(&path, format!("{value}\n")).unwrap();
                (name.to_string(), path.to_string_lossy().into_owned())
            })
            .collect();
        vars.insert("DATABASE_URL".into(), "postgres://app@db/ingest".into());
        let config = Config::from_env(&vars);
        std::fs::remove_dir_all(&dir).unwrap();
        let shown = format!("{:?}", config.unwrap());
        for (name, value) in secrets {
            assert!(!shown.contains(value), "{name}'s contents in {shown}");
        }
    }
}
