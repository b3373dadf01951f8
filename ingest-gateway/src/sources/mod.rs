//! Sources: who may send, each with its own keys, signature scheme, rate limit, address allowlist
//! and body limit. Without `SOURCES_FILE` the set is the built-in `default` (`/webhook`) and
//! `whatsapp` (`/webhook/whatsapp`) made from the older variables; with it, exactly the file's
//! sources (file.rs). The set in use can be swapped while requests run (live.rs).

pub mod client;
mod file;
pub mod live;

pub use file::parse_cidr;

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ingest_shared::config::ConfigError;
use ingest_shared::signature::WebhookSecrets;
use ipnet::IpNet;
use secrecy::SecretString;

use crate::Config;
use crate::config::Schemes;
use crate::error::ApiError;

/// The built-in source of `POST /webhook`.
pub const DEFAULT_ID: &str = "default";
/// The built-in source of `/webhook/whatsapp`.
pub const WHATSAPP_ID: &str = "whatsapp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    XSignature,
    StandardWebhooks,
    WhatsApp,
}

impl Kind {
    pub const NAMES: [&str; 3] = ["x-signature", "standard-webhooks", "whatsapp"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "x-signature" => Some(Kind::XSignature),
            "standard-webhooks" => Some(Kind::StandardWebhooks),
            "whatsapp" => Some(Kind::WhatsApp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::XSignature => "x-signature",
            Kind::StandardWebhooks => "standard-webhooks",
            Kind::WhatsApp => "whatsapp",
        }
    }
}

/// A token bucket: `rate_per_sec` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub rate_per_sec: NonZeroU32,
    pub burst: NonZeroU32,
}

/// What a source counted since the gateway started; carried over when the set is reloaded.
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub rate_limited: AtomicU64,
    pub forbidden: AtomicU64,
    pub invalid_signature: AtomicU64,
}

impl Counters {
    pub fn count(&self, result: &str) {
        let counter = match result {
            "created" | "duplicate" => &self.accepted,
            "rate_limited" => &self.rate_limited,
            "forbidden" => &self.forbidden,
            "invalid_signature" | "stale_timestamp" => &self.invalid_signature,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One sender. Its keys are HMAC states that never print (`WebhookSecrets`).
pub struct Source {
    pub id: String,
    pub kind: Kind,
    /// The schemes a webhook kind accepts: one for a file's source, `WEBHOOK_SCHEMES` for
    /// the built-in `default`.
    pub schemes: Schemes,
    pub secrets: WebhookSecrets,
    /// The same keys read the Standard Webhooks way (`whsec_` base64).
    pub standard_secrets: WebhookSecrets,
    pub verify_token: Option<SecretString>,
    pub tolerance_secs: i64,
    pub max_body_bytes: usize,
    /// Empty: any address.
    pub allow_cidrs: Vec<IpNet>,
    pub limit: Option<Limit>,
    bucket: Option<DefaultDirectRateLimiter>,
    pub counters: Arc<Counters>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("keys", &self.secrets.len())
            .field("limit", &self.limit)
            .field("allow_cidrs", &self.allow_cidrs)
            .finish_non_exhaustive()
    }
}

impl Source {
    fn new(
        id: String,
        kind: Kind,
        schemes: Schemes,
        secrets: WebhookSecrets,
        standard_secrets: WebhookSecrets,
    ) -> Self {
        Self {
            id,
            kind,
            schemes,
            secrets,
            standard_secrets,
            verify_token: None,
            tolerance_secs: 300,
            max_body_bytes: 1 << 20,
            allow_cidrs: Vec::new(),
            limit: None,
            bucket: None,
            counters: Arc::default(),
        }
    }

    fn with_limit(mut self, limit: Option<Limit>) -> Self {
        self.limit = limit;
        self.bucket = limit
            .map(|l| RateLimiter::direct(Quota::per_second(l.rate_per_sec).allow_burst(l.burst)));
        self
    }

    /// 403 for an address outside `allow_cidrs`, before anything else is looked at.
    pub fn admit(&self, client: Option<std::net::IpAddr>) -> Result<(), ApiError> {
        if self.allow_cidrs.is_empty() {
            return Ok(());
        }
        match client {
            Some(ip) if self.allow_cidrs.iter().any(|net| net.contains(&ip)) => Ok(()),
            _ => Err(ApiError::AddressNotAllowed),
        }
    }

    /// Takes a token from the bucket, or says (in whole seconds, at least one) when one is due.
    pub fn take_token(&self) -> Result<(), ApiError> {
        let Some(bucket) = &self.bucket else {
            return Ok(());
        };
        bucket.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited {
                retry_after_secs: (wait.as_secs_f64().ceil() as u64).max(1),
            }
        })
    }
}

/// A whole set, looked up by id.
#[derive(Default)]
pub struct Sources {
    by_id: HashMap<String, Arc<Source>>,
    /// The ids in the file's order (built-ins: `default`, `whatsapp`).
    order: Vec<String>,
    /// Whether they came from `SOURCES_FILE`.
    pub from_file: bool,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Sources {
    pub fn get(&self, id: &str) -> Option<&Arc<Source>> {
        self.by_id.get(id)
    }

    /// The most keys any source of the kinds `of` selects holds: how many key slots its
    /// endpoint's counter has from start-up.
    pub fn most_keys(&self, of: impl Fn(Kind) -> bool) -> usize {
        self.iter()
            .filter(|source| of(source.kind))
            .map(|source| source.secrets.len())
            .max()
            .unwrap_or(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Source>> {
        self.order.iter().filter_map(|id| self.by_id.get(id))
    }

    fn from_list(list: Vec<Source>, from_file: bool, previous: Option<&Sources>) -> Self {
        let mut sources = Sources {
            from_file,
            ..Sources::default()
        };
        for mut source in list {
            if let Some(old) = previous.and_then(|p| p.get(&source.id)) {
                source.counters = old.counters.clone();
            }
            sources.order.push(source.id.clone());
            sources.by_id.insert(source.id.clone(), Arc::new(source));
        }
        sources
    }

    /// The set the configuration names: `SOURCES_FILE`'s, or the built-in two.
    pub fn load(config: &Config, previous: Option<&Sources>) -> Result<Self, ConfigError> {
        match &config.sources_file {
            Some(path) => {
                file::read(path, config).map(|list| Self::from_list(list, true, previous))
            }
            None => Ok(Self::from_list(builtins(config), false, previous)),
        }
    }
}

/// `default` and `whatsapp` from the older variables, as the gateway behaved before sources.
fn builtins(config: &Config) -> Vec<Source> {
    let mut default = Source::new(
        DEFAULT_ID.to_owned(),
        Kind::XSignature,
        config.schemes,
        config.secrets.clone(),
        config.standard_secrets.clone(),
    );
    default.tolerance_secs = config.tolerance_secs;
    default.max_body_bytes = config.max_body_bytes;
    let mut whatsapp = Source::new(
        WHATSAPP_ID.to_owned(),
        Kind::WhatsApp,
        config.schemes,
        config.whatsapp_secrets.clone(),
        WebhookSecrets::default(),
    );
    whatsapp.verify_token = config.whatsapp_verify_token.clone();
    whatsapp.max_body_bytes = config.max_body_bytes;
    vec![default, whatsapp]
}
