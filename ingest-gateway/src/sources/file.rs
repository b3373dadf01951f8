//! `SOURCES_FILE`: the TOML file of `[[source]]` entries, read and checked as a whole. Any
//! error names the source and the field, and refuses the whole file (at start: the gateway does
//! not start; on reload: the set in use is kept).

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ingest_shared::config::ConfigError;
use ingest_shared::signature::WebhookSecrets;
use ipnet::IpNet;
use secrecy::SecretString;
use serde::Deserialize;

use super::{Kind, Limit, Source};
use crate::Config;
use crate::config::Schemes;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    source: Vec<Entry>,
}

// Not `Debug`: it holds keys in the clear until they are turned into HMAC states.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    kind: String,
    #[serde(default)]
    secrets: Vec<String>,
    /// Files of keys, one a line, relative to the sources file's folder.
    #[serde(default)]
    secrets_file: Vec<PathBuf>,
    verify_token: Option<String>,
    rate_per_sec: Option<u32>,
    burst: Option<u32>,
    #[serde(default)]
    allow_cidrs: Vec<String>,
    max_body_bytes: Option<usize>,
}

fn invalid(reason: String) -> ConfigError {
    ConfigError::Invalid {
        name: "SOURCES_FILE",
        reason,
    }
}

/// The sources of the file at `path`, or the first thing wrong with it.
pub(super) fn read(path: &Path, config: &Config) -> Result<Vec<Source>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let file: File =
        toml::from_str(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if file.source.is_empty() {
        return Err(invalid(format!("{}: no [[source]] entry", path.display())));
    }
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut seen = HashSet::new();
    let mut sources = Vec::with_capacity(file.source.len());
    for (index, entry) in file.source.into_iter().enumerate() {
        let source = check(entry, index, folder, config).map_err(invalid)?;
        if !seen.insert(source.id.clone()) {
            return Err(invalid(format!(
                "source {:?}: field \"id\": duplicate id",
                source.id
            )));
        }
        sources.push(source);
    }
    Ok(sources)
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check(entry: Entry, index: usize, folder: &Path, config: &Config) -> Result<Source, String> {
    if !valid_id(&entry.id) {
        return Err(format!(
            "source #{}: field \"id\": {:?} is not 1 to 64 of [a-z0-9-]",
            index + 1,
            entry.id
        ));
    }
    let id = entry.id;
    let field = |name: &str, what: String| format!("source {id:?}: field {name:?}: {what}");
    let kind = Kind::parse(&entry.kind).ok_or_else(|| {
        field(
            "kind",
            format!("unknown kind {:?} ({})", entry.kind, Kind::NAMES.join(", ")),
        )
    })?;

    let mut keys = entry.secrets;
    for file in &entry.secrets_file {
        let path = folder.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            field(
                "secrets_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        keys.extend(text.lines().map(str::to_owned));
    }
    let keys: Vec<String> = keys
        .into_iter()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    if keys.is_empty() {
        return Err(field(
            "secrets",
            "no key (give `secrets` or `secrets_file`)".into(),
        ));
    }
    let secrets = WebhookSecrets::from_keys(keys.iter().map(|k| k.as_bytes()));
    let standard: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| match k.strip_prefix("whsec_") {
            Some(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_else(|_| k.as_bytes().to_vec()),
            None => k.as_bytes().to_vec(),
        })
        .collect();
    let standard = WebhookSecrets::from_keys(standard.iter().map(Vec::as_slice));

    if entry.verify_token.is_some() && kind != Kind::WhatsApp {
        return Err(field("verify_token", "only for kind \"whatsapp\"".into()));
    }
    let limit = match (entry.rate_per_sec, entry.burst) {
        (None, None) => None,
        (None, Some(_)) => return Err(field("burst", "needs rate_per_sec".into())),
        (Some(rate), burst) => {
            let rate = NonZeroU32::new(rate)
                .ok_or_else(|| field("rate_per_sec", "must be at least 1".into()))?;
            let burst = match burst {
                None => rate,
                Some(b) => {
                    NonZeroU32::new(b).ok_or_else(|| field("burst", "must be at least 1".into()))?
                }
            };
            Some(Limit {
                rate_per_sec: rate,
                burst,
            })
        }
    };
    let allow_cidrs = entry
        .allow_cidrs
        .iter()
        .map(|c| parse_cidr(c).ok_or_else(|| field("allow_cidrs", format!("{c:?} is not a CIDR"))))
        .collect::<Result<Vec<_>, _>>()?;
    let max_body_bytes = entry.max_body_bytes.unwrap_or(config.max_body_bytes);
    if !(64..=64 << 20).contains(&max_body_bytes) {
        return Err(field(
            "max_body_bytes",
            format!("{max_body_bytes} is outside 64..=67108864"),
        ));
    }

    let schemes = Schemes {
        x_signature: kind != Kind::StandardWebhooks,
        standard_webhooks: kind == Kind::StandardWebhooks,
    };
    let mut source = Source::new(id, kind, schemes, secrets, standard).with_limit(limit);
    source.verify_token = entry
        .verify_token
        .filter(|t| !t.trim().is_empty())
        .map(SecretString::from);
    source.tolerance_secs = config.tolerance_secs;
    source.max_body_bytes = max_body_bytes;
    source.allow_cidrs = allow_cidrs;
    Ok(source)
}

/// A CIDR, or a bare address (one host).
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}
