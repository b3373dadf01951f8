//! Environment parsing shared by both binaries' `Config`s: one clear line naming the variable
//! when a value is bad, and secrets that never print.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

mod files;
pub use files::{read_file, readable_file, secret, secret_or};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value for {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    /// A variable whose name is built at run time (`NAME_FILE`), or two that conflict
    /// (`NAME and NAME_FILE`).
    #[error("{name}: {reason}")]
    Var { name: String, reason: String },
}

/// Loads `.env` if present. Variables already in the environment win, as dotenvy never
/// overrides them.
pub fn load_dotenv() {
    let _ = dotenvy::dotenv();
}

/// One variable as `--help` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarDoc {
    pub name: String,
    /// As an operator would write it; `None` when unset means off or empty.
    pub default: Option<String>,
    /// The values accepted, when bounded (`1..=1000`).
    pub range: Option<String>,
    /// Keys and tokens: better kept out of the command line, where other users can see them.
    pub secret: bool,
}

/// Any source of variables: the process environment in production, a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;

    /// Every helper below announces the variable it is about to read. `--help` is made from
    /// these announcements (cli.rs), so its defaults and ranges are the ones the code applies.
    fn describe(&self, _var: VarDoc) {}
}

fn describe(env: &dyn Env, name: &str, default: Option<String>, range: Option<String>) {
    env.describe(VarDoc {
        name: name.to_owned(),
        default,
        range,
        secret: false,
    });
}

fn range_text<T: fmt::Display>(range: &std::ops::RangeInclusive<T>) -> String {
    format!("{}..={}", range.start(), range.end())
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
    T: FromStr + fmt::Display,
    T::Err: fmt::Display,
{
    describe(env, name, Some(default.to_string()), None);
    Ok(parse_opt(env, name)?.unwrap_or(default))
}

/// `None` when unset or empty, else the parsed value.
fn parse_opt<T>(env: &dyn Env, name: &'static str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match env.get(name).map(|v| v.trim().to_owned()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: format!("{v:?}: {e}"),
            }),
    }
}

fn check_range<T>(
    name: &'static str,
    value: T,
    range: &std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: PartialOrd + fmt::Display,
{
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: format!("{value} is outside {}", range_text(range)),
        })
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
    describe(
        env,
        name,
        Some(default.to_string()),
        Some(range_text(&range)),
    );
    let value = parse_opt(env, name)?.unwrap_or(default);
    check_range(name, value, &range)
}

/// Like [`parse_in_range`] for a variable with no default: unset or empty is `None`.
pub fn parse_opt_in_range<T>(
    env: &dyn Env,
    name: &'static str,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>, ConfigError>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
    T::Err: fmt::Display,
{
    describe(env, name, None, Some(range_text(&range)));
    parse_opt(env, name)?
        .map(|value| check_range(name, value, &range))
        .transpose()
}

pub fn string_or(env: &dyn Env, name: &str, default: &str) -> String {
    describe(env, name, Some(default.to_owned()), None);
    env.get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Like [`string_or`] for a comma-separated list of names from `allowed`, which `--help` shows;
/// the caller checks the names.
pub fn list_or(env: &dyn Env, name: &str, default: &str, allowed: &[&str]) -> String {
    describe(
        env,
        name,
        Some(default.to_owned()),
        Some(format!(
            "{} (one or more, comma-separated)",
            allowed.join(", ")
        )),
    );
    env.get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// One name from `allowed` (which `--help` shows), or `default` when unset or empty; any other
/// value is an error naming the variable.
pub fn one_of(
    env: &dyn Env,
    name: &'static str,
    default: &'static str,
    allowed: &[&'static str],
) -> Result<&'static str, ConfigError> {
    describe(
        env,
        name,
        Some(default.to_owned()),
        Some(format!("{} (one of)", allowed.join(", "))),
    );
    let Some(value) = env
        .get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    else {
        return Ok(default);
    };
    allowed
        .iter()
        .find(|known| known.eq_ignore_ascii_case(&value))
        .copied()
        .ok_or_else(|| ConfigError::Invalid {
            name,
            reason: format!("{value:?}: expected one of {}", allowed.join(", ")),
        })
}

/// Like [`string_or`], defaulting to another variable's value (`DATABASE_READ_URL` falls back
/// to `DATABASE_URL`); `--help` names that variable rather than its default.
pub fn string_or_var(env: &dyn Env, name: &str, fallback_name: &str, fallback: &str) -> String {
    describe(env, name, Some(fallback_name.to_owned()), None);
    env.get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| fallback.to_owned())
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

/// A connection URL that may carry a password, and the password to use when it carries none
/// (`DATABASE_PASSWORD`): printed without either.
#[derive(Clone)]
pub struct SecretUrl {
    url: SecretString,
    password: Option<SecretString>,
}

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            password: None,
        }
    }

    /// The password given apart from the URL, which db.rs sets on the connection options.
    pub fn with_password(mut self, password: Option<SecretString>) -> Self {
        self.password = password;
        self
    }

    pub fn expose(&self) -> &str {
        self.url.expose_secret()
    }

    pub fn expose_password(&self) -> Option<&str> {
        self.password.as_ref().map(|p| p.expose_secret())
    }
}

impl PartialEq for SecretUrl {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose() && self.expose_password() == other.expose_password()
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
                write!(f, "{}{user}{masked}{}", &url[..scheme_end + 3], &url[at..])?;
            }
            _ => f.write_str(url)?,
        }
        if self.password.is_some() {
            f.write_str(" (password: ***)")?;
        }
        Ok(())
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
    fn one_of_takes_a_listed_name_only() {
        let allowed = ["trigram", "none"];
        assert_eq!(
            one_of(&env(&[]), "X", "trigram", &allowed).unwrap(),
            "trigram"
        );
        assert_eq!(
            one_of(&env(&[("X", " None ")]), "X", "trigram", &allowed).unwrap(),
            "none"
        );
        let err = one_of(&env(&[("X", "btree")]), "X", "trigram", &allowed).unwrap_err();
        assert!(err.to_string().contains("X") && err.to_string().contains("trigram, none"));
    }

    #[test]
    fn secret_url_hides_a_separate_password() {
        let url = SecretUrl::new("postgres://app@db:5432/x")
            .with_password(Some(SecretString::from("hunter2")));
        let shown = format!("{url:?}");
        assert_eq!(shown, "postgres://app@db:5432/x (password: ***)");
    }

    #[test]
    fn secret_url_hides_the_password() {
        let shown = format!("{:?}", SecretUrl::new("postgres://app:hunter2@db:5432/x"));
        assert_eq!(shown, "postgres://app:***@db:5432/x");
        assert!(!shown.contains("hunter2"));
    }
}
