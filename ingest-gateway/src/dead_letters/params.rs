//! The query and path parameters of `/admin/dead-letters`: what a client may send (the
//! `*Query` structs, which are only their OpenAPI description) and what a valid request means.
//! The parsers of `since`, `until`, `limit` and the literal substring match are the read API's
//! (crate::read::params), so both APIs accept the same formats and answer the same 422s.

use chrono::{DateTime, Utc};
use ingest_shared::message::{FieldError, Loc, ValidationErrors};
use utoipa::IntoParams;

use crate::read::params::{contains_pattern, int_param, query_error, time_param};

pub const MAX_PAGE: i64 = 100;
pub const DEFAULT_PAGE: i64 = 50;
pub const DEFAULT_REDRIVE: i64 = 1000;
pub const MAX_REDRIVE: i64 = 10_000;

// Documentation only (`#[allow(dead_code)]`): [`Raw`] reads the query string.

/// `GET /admin/dead-letters`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListQuery {
    /// Page size.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100, default = 50)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Case-insensitive substring of the reason; `%`, `_` and `\` match literally. Empty: no
    /// filter. A NUL character is refused (422).
    #[param(example = "refused by postgres")]
    reason: Option<String>,
    /// Only dead letters last seen at or after this time: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, a
    /// date `YYYY-MM-DD` (midnight UTC), or an RFC 3339 time with an offset.
    #[param(example = "2025-01-15T10:00:00Z")]
    since: Option<String>,
    /// Only dead letters last seen before this time; same formats as `since`.
    until: Option<String>,
}

/// `POST /admin/dead-letters/redrive`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RedriveQuery {
    /// The most dead letters this call redrives; call again while `remaining` is above 0.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 10000, default = 1000)]
    limit: Option<String>,
    /// Case-insensitive substring of the reason; `%`, `_` and `\` match literally. Empty: no filter.
    reason: Option<String>,
    /// Only dead letters last seen at or after this time (formats as in the list).
    since: Option<String>,
    /// Only dead letters last seen before this time. A loop that passes the time it started
    /// ends even if some payloads fail again, since those come back with a newer `last_seen`.
    until: Option<String>,
}

/// `DELETE /admin/dead-letters`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DeleteQuery {
    /// Case-insensitive substring of the reason; `%`, `_` and `\` match literally.
    reason: Option<String>,
    /// Only dead letters last seen at or after this time (formats as in the list).
    since: Option<String>,
    /// Only dead letters last seen before this time.
    until: Option<String>,
    /// `true` deletes every dead letter; required when no filter is given.
    #[param(value_type = Option<bool>)]
    all: Option<String>,
}

/// The query as sent: the last of a repeated key wins, unknown keys are ignored.
#[derive(Default)]
struct Raw {
    limit: Option<String>,
    cursor: Option<String>,
    reason: Option<String>,
    since: Option<String>,
    until: Option<String>,
    all: Option<String>,
}

impl Raw {
    fn of(raw: Option<&str>) -> Self {
        let mut query = Self::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let slot = match &*key {
                "limit" => &mut query.limit,
                "cursor" => &mut query.cursor,
                "reason" => &mut query.reason,
                "since" => &mut query.since,
                "until" => &mut query.until,
                "all" => &mut query.all,
                _ => continue,
            };
            *slot = Some(value.into_owned());
        }
        query
    }

    /// `limit`, between 1 and `max`.
    fn limit(&mut self, default: i64, max: i64, errors: &mut Vec<FieldError>) -> i64 {
        int_param("limit", self.limit.take(), default, 1, Some(max), errors)
    }

    fn filters(&mut self, errors: &mut Vec<FieldError>) -> Filters {
        // Postgres text cannot hold NUL, so no reason contains one, and it cannot be sent as a
        // parameter either (found by schemathesis: it was a 500).
        let reason = self.reason.take().filter(|r| !r.is_empty());
        if reason.as_ref().is_some_and(|r| r.contains('\0')) {
            errors.push(query_error(
                "reason",
                "value_error",
                "Value error, reason must not contain a NUL character",
            ));
        }
        Filters {
            pattern: reason
                .filter(|r| !r.contains('\0'))
                .map(|r| contains_pattern(&r)),
            since: self
                .since
                .take()
                .and_then(|v| time_param("since", &v, errors)),
            until: self
                .until
                .take()
                .and_then(|v| time_param("until", &v, errors)),
        }
    }
}

/// Which dead letters an operation applies to; every filter combines with AND.
#[derive(Debug, Default, PartialEq)]
pub struct Filters {
    /// The ILIKE pattern of `reason`, escaped and wrapped in `%`.
    pub pattern: Option<String>,
    /// `last_seen >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `last_seen < until`.
    pub until: Option<DateTime<Utc>>,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        self.pattern.is_none() && self.since.is_none() && self.until.is_none()
    }
}

#[derive(Debug, PartialEq)]
pub struct ListParams {
    pub limit: i64,
    /// The id the previous page ended at.
    pub after: Option<i64>,
    pub filters: Filters,
}

#[derive(Debug, PartialEq)]
pub struct RedriveParams {
    pub limit: i64,
    pub filters: Filters,
}

fn done<T>(value: T, errors: Vec<FieldError>) -> Result<T, ValidationErrors> {
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(ValidationErrors(errors))
    }
}

impl ListParams {
    pub fn parse(raw: Option<&str>) -> Result<Self, ValidationErrors> {
        let mut raw = Raw::of(raw);
        let mut errors = Vec::new();
        let limit = raw.limit(DEFAULT_PAGE, MAX_PAGE, &mut errors);
        let filters = raw.filters(&mut errors);
        // An empty cursor is a first page, as on /messages.
        let after = match raw.cursor.take().filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => {
                let decoded = decode_cursor(&c);
                if decoded.is_none() {
                    errors.push(query_error(
                        "cursor",
                        "value_error",
                        "Value error, cursor must be a next_cursor returned by this API",
                    ));
                }
                decoded
            }
        };
        done(
            Self {
                limit,
                after,
                filters,
            },
            errors,
        )
    }
}

impl RedriveParams {
    pub fn parse(raw: Option<&str>) -> Result<Self, ValidationErrors> {
        let mut raw = Raw::of(raw);
        let mut errors = Vec::new();
        let limit = raw.limit(DEFAULT_REDRIVE, MAX_REDRIVE, &mut errors);
        let filters = raw.filters(&mut errors);
        done(Self { limit, filters }, errors)
    }
}

/// The filters of a bulk delete: at least one, or `all=true`, so that a bare `DELETE` never
/// empties the table by accident.
pub fn parse_delete(raw: Option<&str>) -> Result<Filters, ValidationErrors> {
    let mut raw = Raw::of(raw);
    let mut errors = Vec::new();
    let filters = raw.filters(&mut errors);
    let all = match raw.all.as_deref().map(str::trim) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => false,
        Some(_) => {
            errors.push(query_error(
                "all",
                "bool_parsing",
                "Input should be a valid boolean, unable to interpret input",
            ));
            false
        }
    };
    if errors.is_empty() && filters.is_empty() && !all {
        errors.push(query_error(
            "all",
            "missing",
            "Field required: give reason, since or until, or all=true to delete every dead letter",
        ));
    }
    done(filters, errors)
}

/// The `{id}` of a path: a positive integer, else a 422 like any invalid parameter.
pub fn parse_id(raw: &str) -> Result<i64, ValidationErrors> {
    let error = |kind: &str, msg: &str| {
        ValidationErrors(vec![FieldError {
            loc: vec![Loc::Key("path".into()), Loc::Key("id".into())],
            msg: msg.into(),
            kind: kind.into(),
        }])
    };
    match raw.trim().parse::<i64>() {
        Ok(id) if id >= 1 => Ok(id),
        Ok(_) => Err(error(
            "greater_than_equal",
            "Input should be greater than or equal to 1",
        )),
        Err(_) => Err(error(
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
        )),
    }
}

const CURSOR_VERSION: &str = "dl1";

/// The id a page ended at, opaque to clients (hex, like the `/messages` cursor).
pub fn encode_cursor(id: i64) -> String {
    hex::encode(format!("{CURSOR_VERSION}|{id}"))
}

fn decode_cursor(s: &str) -> Option<i64> {
    let text = String::from_utf8(hex::decode(s).ok()?).ok()?;
    let id = text.strip_prefix(CURSOR_VERSION)?.strip_prefix('|')?;
    id.parse().ok().filter(|id| *id >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(e: ValidationErrors) -> Vec<(String, String)> {
        e.0.into_iter()
            .map(|e| match &e.loc[1] {
                Loc::Key(k) => (k.clone(), e.kind),
                Loc::Index(_) => panic!("bad loc"),
            })
            .collect()
    }

    #[test]
    fn list_defaults_and_errors() {
        let p = ListParams::parse(None).unwrap();
        assert_eq!((p.limit, p.after), (50, None));
        assert!(p.filters.is_empty());
        assert_eq!(p, ListParams::parse(Some("reason=&cursor=&x=1")).unwrap());
        let e = ListParams::parse(Some("limit=101&since=yesterday&cursor=zz")).unwrap_err();
        assert_eq!(
            kinds(e),
            [
                ("limit".into(), "less_than_equal".into()),
                ("since".into(), "datetime_parsing".into()),
                ("cursor".into(), "value_error".into()),
            ]
        );
    }

    #[test]
    fn cursor_round_trips_and_reason_is_literal() {
        let p = ListParams::parse(Some(&format!(
            "cursor={}&reason=50%25_x",
            encode_cursor(42)
        )))
        .unwrap();
        assert_eq!(p.after, Some(42));
        assert_eq!(p.filters.pattern.as_deref(), Some(r"%50\%\_x%"));
    }

    #[test]
    fn redrive_limit_range() {
        assert_eq!(RedriveParams::parse(None).unwrap().limit, 1000);
        assert_eq!(
            RedriveParams::parse(Some("limit=10000")).unwrap().limit,
            10_000
        );
        assert!(RedriveParams::parse(Some("limit=10001")).is_err());
        assert!(RedriveParams::parse(Some("limit=0")).is_err());
    }

    #[test]
    fn bulk_delete_needs_a_filter_or_all() {
        assert_eq!(
            kinds(parse_delete(None).unwrap_err()),
            [("all".into(), "missing".into())]
        );
        assert_eq!(
            kinds(parse_delete(Some("all=false&reason=")).unwrap_err()),
            [("all".into(), "missing".into())]
        );
        assert!(parse_delete(Some("all=true")).unwrap().is_empty());
        assert!(parse_delete(Some("reason=refused")).is_ok());
        assert_eq!(
            kinds(parse_delete(Some("reason=a%00b")).unwrap_err()),
            [("reason".into(), "value_error".into())]
        );
        assert!(parse_delete(Some("until=2025-01-01")).is_ok());
        assert_eq!(
            kinds(parse_delete(Some("all=maybe")).unwrap_err()),
            [("all".into(), "bool_parsing".into())]
        );
    }

    #[test]
    fn ids_are_positive_integers() {
        assert_eq!(parse_id("7").unwrap(), 7);
        for bad in ["0", "-1", "x", "", "99999999999999999999", "1.5"] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
    }
}
