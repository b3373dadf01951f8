//! The query parameters of `GET /messages`: what a client may send ([`MessagesQuery`], which is
//! also their OpenAPI description) and what a valid request means ([`Params`]).
//!
//! To add a filter: a field here (documented, parsed and validated in [`Params::parse`]), then
//! its condition in each statement beside `page.rs` that filters `messages`.

use chrono::{DateTime, NaiveDate, Utc};
use ingest_shared::message::{FieldError, Loc, ValidationErrors, is_msisdn, parse_ts};
use utoipa::IntoParams;

use super::cursor::Cursor;
use super::format::{self, Format, PAGE_PARAMS};

pub const MAX_LIMIT: i64 = 100;
pub const DEFAULT_LIMIT: i64 = 50;

/// The parameters as sent (the last of a repeated key wins, unknown keys are ignored), before
/// any is checked; the documented types are what [`Params::parse`] accepts.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Page size.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100, default = 50)]
    limit: Option<String>,
    /// Rows to skip (cannot be combined with `cursor`). Prefer `cursor` for deep pages.
    #[param(value_type = Option<i64>, minimum = 0, default = 0)]
    offset: Option<String>,
    /// Exact sender, `+` then digits. A raw `+` that arrived as a space is taken as `+`.
    #[param(pattern = r"^[+ ][0-9]{1,20}$", example = "+919876543210")]
    from: Option<String>,
    /// Alias of `from` (used when `from` is absent).
    #[param(pattern = r"^[+ ][0-9]{1,20}$")]
    from_msisdn: Option<String>,
    /// Exact recipient, `+` then digits.
    #[param(pattern = r"^[+ ][0-9]{1,20}$", example = "+14155550100")]
    to: Option<String>,
    /// Only messages with `ts >= since`. `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, a date
    /// `YYYY-MM-DD` (midnight UTC), or an RFC 3339 time with an offset (`+05:30`).
    #[param(example = "2025-01-15T10:00:00Z")]
    since: Option<String>,
    /// Only messages with `ts < until`; same formats as `since`.
    until: Option<String>,
    /// Case-insensitive substring of `text`; `%`, `_` and `\` match literally. Empty: no filter.
    q: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `json` (default; also when empty): a page. `ndjson` or `csv`: every match of the filters, streamed in
    /// `ts, message_id` order as a download; `limit`, `offset` and `cursor` are refused with it.
    #[param(value_type = Option<String>, pattern = "^(json|ndjson|csv)?$", example = "ndjson")]
    format: Option<String>,
    /// `raw`: each NDJSON line also carries the payload the message came from (`format=ndjson`
    /// only).
    #[param(value_type = Option<String>, pattern = "^(raw)?$")]
    include: Option<String>,
}

impl MessagesQuery {
    /// Reads the raw query string the way the older (FastAPI) API did.
    fn from_raw(raw: &str) -> Self {
        let mut query = Self::default();
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            let slot = match &*key {
                "limit" => &mut query.limit,
                "offset" => &mut query.offset,
                "from" => &mut query.from,
                "from_msisdn" => &mut query.from_msisdn,
                "to" => &mut query.to,
                "since" => &mut query.since,
                "until" => &mut query.until,
                "q" => &mut query.q,
                "cursor" => &mut query.cursor,
                "format" => &mut query.format,
                "include" => &mut query.include,
                _ => continue,
            };
            *slot = Some(value.into_owned());
        }
        query
    }
}

/// A validated request.
#[derive(Debug, Default, PartialEq)]
pub struct Params {
    pub limit: i64,
    pub offset: i64,
    pub from: Option<String>,
    pub to: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The ILIKE pattern, already escaped and wrapped in `%`.
    pub pattern: Option<String>,
    pub cursor: Option<Cursor>,
    pub format: Format,
    /// NDJSON lines carry `raw` (`include=raw`).
    pub include_raw: bool,
}

pub(crate) fn query_error(name: &str, kind: &str, msg: impl Into<String>) -> FieldError {
    FieldError {
        loc: vec![Loc::Key("query".into()), Loc::Key(name.into())],
        msg: msg.into(),
        kind: kind.into(),
    }
}

impl Params {
    /// Every bad value is reported, not just the first.
    pub fn parse(raw: Option<&str>) -> Result<Self, ValidationErrors> {
        let query = MessagesQuery::from_raw(raw.unwrap_or(""));
        let mut errors = Vec::new();
        let sent = [
            query.limit.is_some(),
            query.offset.is_some(),
            query.cursor.as_ref().is_some_and(|c| !c.is_empty()),
        ];
        let page_params_sent: Vec<&'static str> = PAGE_PARAMS
            .into_iter()
            .zip(sent)
            .filter_map(|(name, sent)| sent.then_some(name))
            .collect();
        let (format, include_raw) = format::parse(
            query.format.as_deref(),
            &page_params_sent,
            query.include.as_deref(),
            &mut errors,
        );
        let mut params = Params {
            limit: int_param(
                "limit",
                query.limit,
                DEFAULT_LIMIT,
                1,
                Some(MAX_LIMIT),
                &mut errors,
            ),
            format,
            include_raw,
            ..Params::default()
        };
        let offset_given = query.offset.is_some();
        params.offset = int_param("offset", query.offset, 0, 0, None, &mut errors);
        // `from` wins over its alias, but a bad alias is still an error: a client sending both
        // should learn that one of them is malformed rather than have it silently ignored.
        let alias = query
            .from_msisdn
            .and_then(|v| msisdn_param("from_msisdn", v, &mut errors));
        params.from = query
            .from
            .and_then(|v| msisdn_param("from", v, &mut errors))
            .or(alias);
        params.to = query.to.and_then(|v| msisdn_param("to", v, &mut errors));
        params.since = query
            .since
            .and_then(|v| time_param("since", &v, &mut errors));
        params.until = query
            .until
            .and_then(|v| time_param("until", &v, &mut errors));
        // Postgres text cannot hold NUL: no message contains one, and it cannot be sent as a
        // parameter, so it is refused here rather than failing in the database.
        if query.q.as_ref().is_some_and(|q| q.contains('\0')) {
            errors.push(query_error(
                "q",
                "value_error",
                "Value error, q must not contain a NUL character",
            ));
        }
        params.pattern = query
            .q
            .filter(|q| !q.is_empty() && !q.contains('\0'))
            .map(|q| contains_pattern(&q));
        // An empty cursor is no cursor, as an empty `q` is no search (clients that always send
        // every parameter send `cursor=` on the first page).
        // With a streamed format the cursor is already refused, whatever it holds.
        let cursor = query
            .cursor
            .filter(|c| !c.is_empty() && !format.is_streamed());
        if let Some(raw) = cursor {
            if offset_given {
                errors.push(query_error(
                    "cursor",
                    "value_error",
                    "Value error, cursor and offset cannot be used together",
                ));
            } else {
                match Cursor::decode(&raw) {
                    Some(c) => params.cursor = Some(c),
                    None => errors.push(query_error(
                        "cursor",
                        "value_error",
                        "Value error, cursor must be a next_cursor returned by this API",
                    )),
                }
            }
        }
        if errors.is_empty() {
            Ok(params)
        } else {
            Err(ValidationErrors(errors))
        }
    }

    /// Whether the read model's aggregates count the total: no filter, or only a sender, only a
    /// recipient, or only a time range.
    pub fn total_from_aggregates(&self) -> bool {
        let time = self.since.is_some() || self.until.is_some();
        let given = [self.from.is_some(), self.to.is_some(), time];
        self.pattern.is_none() && given.iter().filter(|g| **g).count() <= 1
    }
}

pub(crate) fn int_param(
    name: &str,
    raw: Option<String>,
    default: i64,
    min: i64,
    max: Option<i64>,
    errors: &mut Vec<FieldError>,
) -> i64 {
    let Some(raw) = raw else {
        return default;
    };
    match raw.trim().parse::<i64>() {
        Err(_) => errors.push(query_error(
            name,
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
        )),
        Ok(v) if v < min => errors.push(query_error(
            name,
            "greater_than_equal",
            format!("Input should be greater than or equal to {min}"),
        )),
        Ok(v) if max.is_some_and(|max| v > max) => errors.push(query_error(
            name,
            "less_than_equal",
            format!(
                "Input should be less than or equal to {}",
                max.unwrap_or_default()
            ),
        )),
        Ok(v) => return v,
    }
    default
}

/// curl sends `?from=+9198...` unencoded and form decoding turns that `+` into a space.
pub(crate) fn msisdn_param(
    name: &str,
    raw: String,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let value = match raw.strip_prefix(' ') {
        Some(rest) => format!("+{rest}"),
        None => raw,
    };
    if is_msisdn(&value) {
        Some(value)
    } else {
        errors.push(query_error(
            name,
            "string_pattern_mismatch",
            "String should match pattern '^\\+[0-9]{1,20}$' (E.164: '+' then digits)",
        ));
        None
    }
}

pub(crate) fn time_param(
    name: &str,
    raw: &str,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let parsed = parse_instant(raw);
    if parsed.is_none() {
        errors.push(query_error(
            name,
            "datetime_parsing",
            "Input should be a valid datetime: YYYY-MM-DDTHH:MM:SS[.fraction]Z, YYYY-MM-DD, or with an offset like +05:30",
        ));
    }
    parsed
}

/// The webhook's strict format first; then a bare date (midnight UTC), and an RFC 3339 time
/// with an offset, whose `+` may have arrived as a space (curl again).
fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
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

/// `%q%` with the LIKE wildcards and the escape character of `q` escaped, so they match literally.
pub(crate) fn contains_pattern(q: &str) -> String {
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

    fn kinds(raw: &str) -> Vec<(String, String)> {
        Params::parse(Some(raw))
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| match (&e.loc[0], &e.loc[1]) {
                (Loc::Key(a), Loc::Key(b)) => {
                    assert_eq!(a, "query");
                    (b.clone(), e.kind)
                }
                _ => panic!("bad loc {:?}", e.loc),
            })
            .collect()
    }

    #[test]
    fn defaults() {
        let p = Params::parse(None).unwrap();
        assert_eq!((p.limit, p.offset), (50, 0));
        assert_eq!(p, Params::parse(Some("unknown=1&q=")).unwrap());
    }

    #[test]
    fn every_bad_value_is_reported() {
        assert_eq!(
            kinds("limit=0&offset=-1&since=yesterday&until=2025-13-01&to=x&from=+1a"),
            [
                ("limit".into(), "greater_than_equal".into()),
                ("offset".into(), "greater_than_equal".into()),
                ("from".into(), "string_pattern_mismatch".into()),
                ("to".into(), "string_pattern_mismatch".into()),
                ("since".into(), "datetime_parsing".into()),
                ("until".into(), "datetime_parsing".into()),
            ]
        );
        assert_eq!(kinds("limit=101")[0].1, "less_than_equal");
        assert_eq!(kinds("limit=abc")[0].1, "int_parsing");
        assert_eq!(kinds("limit=")[0].1, "int_parsing");
        assert_eq!(kinds("offset=1.5")[0].1, "int_parsing");
        assert_eq!(kinds("from_msisdn=abc")[0].0, "from_msisdn");
        assert_eq!(kinds("cursor=zz")[0].0, "cursor");
        assert_eq!(kinds("q=a%00b")[0], ("q".into(), "value_error".into()));
        let nul_id = super::Cursor {
            ts: parse_ts("2025-01-15T10:00:00Z").unwrap(),
            message_id: "a\0b".into(),
        };
        assert_eq!(kinds(&format!("cursor={}", nul_id.encode()))[0].0, "cursor");
        assert_eq!(
            kinds("cursor=00&offset=0")[0],
            ("cursor".into(), "value_error".into())
        );
        // Found by schemathesis: an empty cursor next to an offset is a first page, not an error.
        let first_page = Params::parse(Some("offset=0&cursor=")).expect("empty cursor is none");
        assert!(first_page.cursor.is_none());
    }

    #[test]
    fn a_raw_plus_that_decoded_as_a_space_is_a_plus() {
        let p = Params::parse(Some("from=+919876543210&to=%2B14155550100")).unwrap();
        assert_eq!(p.from.as_deref(), Some("+919876543210"));
        assert_eq!(p.to.as_deref(), Some("+14155550100"));
        let p = Params::parse(Some("from_msisdn=+1")).unwrap();
        assert_eq!(p.from.as_deref(), Some("+1"));
        let p = Params::parse(Some("from=+1&from_msisdn=+2")).unwrap();
        assert_eq!(p.from.as_deref(), Some("+1"));
        // Found by schemathesis: a malformed alias next to a valid `from` is still a 422.
        assert!(Params::parse(Some("from=+1&from_msisdn=abc")).is_err());
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
