//! The query strings of the read and admin APIs: each parameter declared once as a [`Param`]
//! (its name, its OpenAPI description and what it accepts), read by one [`Query`] that collects
//! every bad value into the one 422, and documented from the same declaration ([`document`]).
//!
//! As in the older (FastAPI) API, the last of a repeated key wins and unknown keys are ignored.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use ingest_shared::message::{FieldError, Loc, ValidationErrors, is_msisdn, parse_ts};
use serde_json::json;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{Ref, RefOr, Required, Schema};

/// One query parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    /// Its OpenAPI description.
    pub doc: &'static str,
    pub kind: Kind,
    /// Its OpenAPI example.
    pub example: Option<&'static str>,
}

/// What a parameter accepts, and so how it is read and documented.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// An integer in `min..=max` (no upper bound when `max` is `None`), `default` when absent.
    Int {
        min: i64,
        max: Option<i64>,
        default: i64,
    },
    /// `+` then digits.
    Msisdn,
    /// A source id: `[a-z0-9-]{1,64}`.
    SourceId,
    /// An instant ([`parse_instant`]).
    Time,
    /// Any text; documented with `pattern` when it has one.
    Text { pattern: Option<&'static str> },
    /// `true`/`false` (`1`/`0`).
    Bool,
    /// A required value of the named schema component.
    Required { schema: &'static str },
}

/// The pattern `Kind::Msisdn` documents: the `+` may arrive as a space (see [`Query::msisdn`]).
const MSISDN_PATTERN: &str = r"^[+ ][0-9]{1,20}$";
/// The pattern of a source id, as `SOURCES_FILE` defines it.
const SOURCE_ID_PATTERN: &str = "^[a-z0-9-]{1,64}$";

impl Param {
    pub const fn new(name: &'static str, kind: Kind, doc: &'static str) -> Self {
        Self {
            name,
            doc,
            kind,
            example: None,
        }
    }

    pub const fn example(mut self, example: &'static str) -> Self {
        self.example = Some(example);
        self
    }

    /// The same parameter, described for another route.
    pub const fn described(mut self, doc: &'static str) -> Self {
        self.doc = doc;
        self
    }

    fn parameter(&self) -> Parameter {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let (schema, required): (RefOr<Schema>, bool) = match self.kind {
            Kind::Int { min, max, default } => (
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .default(Some(json!(default)))
                    .maximum(max)
                    .minimum(Some(min))
                    .into(),
                false,
            ),
            Kind::Msisdn => (string().pattern(Some(MSISDN_PATTERN)).into(), false),
            Kind::SourceId => (string().pattern(Some(SOURCE_ID_PATTERN)).into(), false),
            Kind::Time => (string().into(), false),
            Kind::Text { pattern } => (string().pattern(pattern).into(), false),
            Kind::Bool => (
                ObjectBuilder::new().schema_type(Type::Boolean).into(),
                false,
            ),
            Kind::Required { schema } => (Ref::from_schema_name(schema).into(), true),
        };
        ParameterBuilder::new()
            .name(self.name)
            .parameter_in(ParameterIn::Query)
            .description(Some(self.doc))
            .required(if required {
                Required::True
            } else {
                Required::False
            })
            .schema(Some(schema))
            .example(self.example.map(|e| json!(e)))
            .build()
    }
}

/// The OpenAPI description of a route's query parameters, in the order given.
pub fn document(params: &[&Param]) -> Vec<Parameter> {
    params.iter().map(|p| p.parameter()).collect()
}

/// The error of one bad query parameter, located as the API has always located them.
pub fn error(name: &str, kind: &str, msg: impl Into<String>) -> FieldError {
    FieldError {
        loc: vec![Loc::Key("query".into()), Loc::Key(name.into())],
        msg: msg.into(),
        kind: kind.into(),
    }
}

/// A raw query string being read: each reader returns the value (or the default) and keeps the
/// error of a bad one, and [`Query::finish`] answers them all at once, in the order read.
pub struct Query {
    values: HashMap<String, String>,
    errors: Vec<FieldError>,
}

impl Query {
    pub fn new(raw: Option<&str>) -> Self {
        let values = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self {
            values,
            errors: Vec::new(),
        }
    }

    /// The value as sent, if it was (an empty value was sent).
    pub fn raw(&self, param: &Param) -> Option<&str> {
        self.values.get(param.name).map(String::as_str)
    }

    /// The value as sent, empty counted as absent (a client that always sends every parameter
    /// sends `cursor=` on the first page).
    pub fn nonempty(&self, param: &Param) -> Option<&str> {
        self.raw(param).filter(|v| !v.is_empty())
    }

    /// Records a bad value that only the caller can judge.
    pub fn reject(&mut self, name: &str, kind: &str, msg: impl Into<String>) {
        self.errors.push(error(name, kind, msg));
    }

    /// Lets a parser that takes the error list (`read::format`) add to it.
    pub fn errors(&mut self) -> &mut Vec<FieldError> {
        &mut self.errors
    }

    /// A `Kind::Int` parameter: its default when absent or bad.
    pub fn int(&mut self, param: &Param) -> i64 {
        let Kind::Int { min, max, default } = param.kind else {
            unreachable!("{} is not an integer parameter", param.name)
        };
        let Some(raw) = self.raw(param) else {
            return default;
        };
        let (kind, msg) = match raw.trim().parse::<i64>() {
            Err(_) => (
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer".to_owned(),
            ),
            Ok(v) if v < min => (
                "greater_than_equal",
                format!("Input should be greater than or equal to {min}"),
            ),
            Ok(v) => match max {
                Some(max) if v > max => (
                    "less_than_equal",
                    format!("Input should be less than or equal to {max}"),
                ),
                _ => return v,
            },
        };
        self.reject(param.name, kind, msg);
        default
    }

    /// `+` then digits. curl sends `?from=+9198...` unencoded and form decoding turns that `+`
    /// into a space, so a leading space is taken as `+`.
    pub fn msisdn(&mut self, param: &Param) -> Option<String> {
        let raw = self.raw(param)?;
        let value = match raw.strip_prefix(' ') {
            Some(rest) => format!("+{rest}"),
            None => raw.to_owned(),
        };
        if is_msisdn(&value) {
            return Some(value);
        }
        self.reject(
            param.name,
            "string_pattern_mismatch",
            "String should match pattern '^\\+[0-9]{1,20}$' (E.164: '+' then digits)",
        );
        None
    }

    /// A source id, `[a-z0-9-]{1,64}`: anything else names no source, and is refused rather than
    /// matching nothing, so a typo is not taken for an idle source.
    pub fn source_id(&mut self, param: &Param) -> Option<String> {
        let raw = self.raw(param)?;
        if is_source_id(raw) {
            return Some(raw.to_owned());
        }
        self.reject(
            param.name,
            "string_pattern_mismatch",
            format!("String should match pattern '{SOURCE_ID_PATTERN}'"),
        );
        None
    }

    pub fn time(&mut self, param: &Param) -> Option<DateTime<Utc>> {
        let raw = self.raw(param)?;
        let parsed = parse_instant(raw);
        if parsed.is_none() {
            self.reject(
                param.name,
                "datetime_parsing",
                "Input should be a valid datetime: YYYY-MM-DDTHH:MM:SS[.fraction]Z, YYYY-MM-DD, or with an offset like +05:30",
            );
        }
        parsed
    }

    /// A case-insensitive substring to search for, as its ILIKE pattern; empty is no search.
    /// Postgres text cannot hold NUL: no stored text contains one and it cannot be sent as a
    /// parameter, so it is refused here rather than failing in the database.
    pub fn contains(&mut self, param: &Param) -> Option<String> {
        let text = self.nonempty(param)?;
        if text.contains('\0') {
            let msg = format!(
                "Value error, {} must not contain a NUL character",
                param.name
            );
            self.reject(param.name, "value_error", msg);
            return None;
        }
        Some(contains_pattern(text))
    }

    /// `false` when absent.
    pub fn bool(&mut self, param: &Param) -> bool {
        match self.raw(param).map(str::trim) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => false,
            Some(_) => {
                self.reject(
                    param.name,
                    "bool_parsing",
                    "Input should be a valid boolean, unable to interpret input",
                );
                false
            }
        }
    }

    /// Whether any value was refused so far.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// `value`, or every bad value read.
    pub fn finish<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ValidationErrors(self.errors))
        }
    }
}

/// The webhook's strict format first; then a bare date (midnight UTC), and an RFC 3339 time
/// with an offset, whose `+` may have arrived as a space (curl again).
pub fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    if let Some(ts) = parse_ts(s) {
        return Some(ts);
    }
    let b = s.as_bytes();
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        let digits = [0..4, 5..7, 8..10]
            .into_iter()
            .all(|r| b[r].iter().all(u8::is_ascii_digit));
        if !digits {
            return None;
        }
        let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc());
    }
    if b.len() < 25 || b[10] != b'T' {
        return None;
    }
    let offset_sign = b.len() - 6;
    let fixed;
    let s = if b[offset_sign] == b' ' {
        fixed = format!("{}+{}", &s[..offset_sign], &s[offset_sign + 1..]);
        fixed.as_str()
    } else {
        s
    };
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether `s` is a source id: 1 to 64 of `a-z`, `0-9` and `-`.
pub fn is_source_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `%q%` with the LIKE wildcards and the escape character of `q` escaped, so they match literally.
fn contains_pattern(q: &str) -> String {
    let mut pattern = String::with_capacity(q.len() + 2);
    pattern.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Param = Param::new(
        "limit",
        Kind::Int {
            min: 1,
            max: Some(100),
            default: 50,
        },
        "Page size.",
    );
    const SINCE: Param = Param::new("since", Kind::Time, "From.");

    #[test]
    fn the_last_of_a_repeated_key_wins_and_every_bad_value_is_kept() {
        let mut q = Query::new(Some("limit=0&limit=7&since=x&unknown=1"));
        assert_eq!(q.int(&LIMIT), 7);
        assert_eq!(q.time(&SINCE), None);
        let errors = q.finish(()).unwrap_err().0;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind, "datetime_parsing");
        let mut q = Query::new(Some("limit=101"));
        assert_eq!(q.int(&LIMIT), 50);
        assert_eq!(q.finish(()).unwrap_err().0[0].kind, "less_than_equal");
    }

    #[test]
    fn since_formats() {
        let at = |s: &str| parse_instant(s).map(|t| t.to_rfc3339());
        assert_eq!(
            at("2025-01-15T10:00:00Z").unwrap(),
            "2025-01-15T10:00:00+00:00"
        );
        assert_eq!(at("2025-01-15").unwrap(), "2025-01-15T00:00:00+00:00");
        assert_eq!(
            at("2025-01-15T10:00:00+05:30").unwrap(),
            "2025-01-15T04:30:00+00:00"
        );
        assert_eq!(
            at("2025-01-15T10:00:00.5 05:30").unwrap(),
            "2025-01-15T04:30:00.500+00:00"
        );
        assert_eq!(
            at("2025-01-15T10:00:00-01:00").unwrap(),
            "2025-01-15T11:00:00+00:00"
        );
        for bad in [
            "",
            "2025-1-15",
            "2025-02-30",
            "+2025-01-1",
            "2025-01-15 10:00:00Z",
            "1736935200",
        ] {
            assert!(at(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn q_wildcards_match_literally() {
        assert_eq!(contains_pattern(r"50%_a\b'"), r"%50\%\_a\\b'%");
    }
}
