//! Environment parsing shared by both binaries' `Config`s: one clear line naming the variable
//! when a value is bad, and secrets that never print.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value for {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Loads `.env` if present. Variables already in the environment win, as dotenvy never
/// overrides them.
pub fn load_dotenv() {
    let _ = dotenvy::dotenv();
}

/// Any source of variables: the process environment in production, a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// Reads `name`, treating unset and empty alike, and parses it, or returns `default`.
pub fn parse_or<T>(env: &dyn Env, name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match env.get(name).map(|v| v.trim().to_owned()) {
        None => Ok(default),
        Some(v) if v.is_empty() => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: format!("{v:?}: {e}"),
        }),
    }
}

/// Like [`parse_or`], and also checks the value lies in `range`.
pub fn parse_in_range<T>(
    env: &dyn Env,
    name: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
    T::Err: fmt::Display,
{
    let value = parse_or(env, name, default)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: format!("{value} is outside {}..={}", range.start(), range.end()),
        })
    }
}

pub fn string_or(env: &dyn Env, name: &str, default: &str) -> String {
    env.get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

pub fn millis_or(
    env: &dyn Env,
    name: &'static str,
    default_ms: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    parse_in_range(env, name, default_ms, range).map(Duration::from_millis)
}

pub fn secs_or(
    env: &dyn Env,
    name: &'static str,
    default_s: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    parse_in_range(env, name, default_s, range).map(Duration::from_secs)
}

/// A connection URL that may carry a password: printed without it.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::from(url.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.expose();
        // scheme://user:password@host -> scheme://user:***@host
        match (url.find("://"), url.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let userinfo = &url[scheme_end + 3..at];
                let user = userinfo.split(':').next().unwrap_or("");
                let masked = if userinfo.contains(':') { ":***" } else { "" };
                write!(f, "{}{user}{masked}{}", &url[..scheme_end + 3], &url[at..])
            }
            _ => f.write_str(url),
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

    #[test]
    fn bad_value_names_the_variable() {
        let err = parse_or::<u32>(&env(&[("BATCH_SIZE", "lots")]), "BATCH_SIZE", 5).unwrap_err();
        assert!(err.to_string().contains("BATCH_SIZE"), "{err}");
    }

    #[test]
    fn empty_means_default_and_range_is_checked() {
        assert_eq!(parse_or(&env(&[("X", " ")]), "X", 7u32).unwrap(), 7);
        assert!(parse_in_range(&env(&[("X", "0")]), "X", 7u32, 1..=10).is_err());
        assert_eq!(
            parse_in_range(&env(&[("X", "10")]), "X", 7u32, 1..=10).unwrap(),
            10
        );
    }

    #[test]
    fn secret_url_hides_the_password() {
        let shown = format!("{:?}", SecretUrl::new("postgres://app:hunter2@db:5432/x"));
        assert_eq!(shown, "postgres://app:***@db:5432/x");
        assert!(!shown.contains("hunter2"));
    }
}
