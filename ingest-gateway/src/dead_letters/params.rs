//! The query and path parameters of `/admin/dead-letters`: each query parameter declared once
//! (name, description, what it accepts), and what a valid request means (the `*Params` structs,
//! whose OpenAPI descriptions are made from the same declarations). The reader is the read API's
//! (`crate::query`), so both APIs accept the same formats and answer the same 422s.

use chrono::{DateTime, Utc};
use ingest_shared::message::{FieldError, Loc, ValidationErrors};
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterIn};

use crate::query::{Kind, Param, Query};

pub const MAX_PAGE: i64 = 100;
pub const DEFAULT_PAGE: i64 = 50;
pub const DEFAULT_REDRIVE: i64 = 1000;
pub const MAX_REDRIVE: i64 = 10_000;

const PAGE_LIMIT: Param = Param::new(
    "limit",
    Kind::Int {
        min: 1,
        max: Some(MAX_PAGE),
        default: DEFAULT_PAGE,
    },
    "Page size.",
);
const REDRIVE_LIMIT: Param = Param::new(
    "limit",
    Kind::Int {
        min: 1,
        max: Some(MAX_REDRIVE),
        default: DEFAULT_REDRIVE,
    },
    "The most dead letters this call redrives; call again while `remaining` is above 0.",
);
const CURSOR: Param = Param::new(
    "cursor",
    Kind::Text { pattern: None },
    "`next_cursor` of the previous page.",
);
const REASON: Param = Param::new(
    "reason",
    Kind::Text { pattern: None },
    "Case-insensitive substring of the reason; `%`, `_` and `\\` match literally.",
);
const SINCE: Param = Param::new(
    "since",
    Kind::Time,
    "Only dead letters last seen at or after this time (formats as in the list).",
);
const UNTIL: Param = Param::new(
    "until",
    Kind::Time,
    "Only dead letters last seen before this time.",
);
const ALL: Param = Param::new(
    "all",
    Kind::Bool,
    "`true` deletes every dead letter; required when no filter is given.",
);

/// The filters as `GET /admin/dead-letters` describes them.
const LIST_FILTERS: [Param; 3] = [
    REASON
        .described(
            "Case-insensitive substring of the reason; `%`, `_` and `\\` match literally. Empty: no\n\
            filter. A NUL character is refused (422).",
        )
        .example("refused by postgres"),
    SINCE
        .described(
            "Only dead letters last seen at or after this time: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, a\n\
            date `YYYY-MM-DD` (midnight UTC), or an RFC 3339 time with an offset.",
        )
        .example("2025-01-15T10:00:00Z"),
    UNTIL.described("Only dead letters last seen before this time; same formats as `since`."),
];
/// The filters as `POST /admin/dead-letters/redrive` describes them.
const REDRIVE_FILTERS: [Param; 3] = [
    REASON.described(
        "Case-insensitive substring of the reason; `%`, `_` and `\\` match literally. Empty: no filter.",
    ),
    SINCE,
    UNTIL.described(
        "Only dead letters last seen before this time. A loop that passes the time it started\n\
        ends even if some payloads fail again, since those come back with a newer `last_seen`.",
    ),
];
/// The filters as `DELETE /admin/dead-letters` describes them.
const DELETE_FILTERS: [Param; 3] = [REASON, SINCE, UNTIL];

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
    /// `[reason, since, until]`, as one route describes them.
    fn read(q: &mut Query, [reason, since, until]: &[Param; 3]) -> Self {
        Self {
            pattern: q.contains(reason),
            since: q.time(since),
            until: q.time(until),
        }
    }

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

/// The filters of a bulk delete: at least one, or `all=true`, so that a bare `DELETE` never
/// empties the table by accident.
#[derive(Debug, PartialEq)]
pub struct DeleteParams {
    pub filters: Filters,
}

impl IntoParams for ListParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let [reason, since, until] = &LIST_FILTERS;
        crate::query::document(&[&PAGE_LIMIT, &CURSOR, reason, since, until])
    }
}

impl IntoParams for RedriveParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let [reason, since, until] = &REDRIVE_FILTERS;
        crate::query::document(&[&REDRIVE_LIMIT, reason, since, until])
    }
}

impl IntoParams for DeleteParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let [reason, since, until] = &DELETE_FILTERS;
        crate::query::document(&[reason, since, until, &ALL])
    }
}

impl ListParams {
    pub fn parse(raw: Option<&str>) -> Result<Self, ValidationErrors> {
        let mut q = Query::new(raw);
        let limit = q.int(&PAGE_LIMIT);
        let filters = Filters::read(&mut q, &LIST_FILTERS);
        // An empty cursor is a first page, as on /messages.
        let after = q.nonempty(&CURSOR).map(decode_cursor);
        if after == Some(None) {
            q.reject(
                CURSOR.name,
                "value_error",
                "Value error, cursor must be a next_cursor returned by this API",
            );
        }
        q.finish(Self {
            limit,
            after: after.flatten(),
            filters,
        })
    }
}

impl RedriveParams {
    pub fn parse(raw: Option<&str>) -> Result<Self, ValidationErrors> {
        let mut q = Query::new(raw);
        let limit = q.int(&REDRIVE_LIMIT);
        let filters = Filters::read(&mut q, &REDRIVE_FILTERS);
        q.finish(Self { limit, filters })
    }
}

impl DeleteParams {
    pub fn parse(raw: Option<&str>) -> Result<Self, ValidationErrors> {
        let mut q = Query::new(raw);
        let filters = Filters::read(&mut q, &DELETE_FILTERS);
        let all = q.bool(&ALL);
        if !q.has_errors() && filters.is_empty() && !all {
            q.reject(
                ALL.name,
                "missing",
                "Field required: give reason, since or until, or all=true to delete every dead letter",
            );
        }
        q.finish(Self { filters })
    }
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
            kinds(DeleteParams::parse(None).unwrap_err()),
            [("all".into(), "missing".into())]
        );
        assert_eq!(
            kinds(DeleteParams::parse(Some("all=false&reason=")).unwrap_err()),
            [("all".into(), "missing".into())]
        );
        assert!(
            DeleteParams::parse(Some("all=true"))
                .unwrap()
                .filters
                .is_empty()
        );
        assert!(DeleteParams::parse(Some("reason=refused")).is_ok());
        assert_eq!(
            kinds(DeleteParams::parse(Some("reason=a%00b")).unwrap_err()),
            [("reason".into(), "value_error".into())]
        );
        assert!(DeleteParams::parse(Some("until=2025-01-01")).is_ok());
        assert_eq!(
            kinds(DeleteParams::parse(Some("all=maybe")).unwrap_err()),
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
