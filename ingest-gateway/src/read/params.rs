//! The query parameters of `GET /messages`: each declared once (name, description, what it
//! accepts), and what a valid request means ([`Params`], whose OpenAPI description is made from
//! the same declarations).
//!
//! To add a filter: its [`Param`] here, read in [`Params::parse`] and listed in [`PARAMS`], then
//! its condition in each statement beside `page.rs` that filters `messages`.

use chrono::{DateTime, Utc};
use ingest_shared::message::ValidationErrors;
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterIn};

use super::cursor::Cursor;
use super::format::{self, Format};
use crate::query::{Kind, Param, Query};

pub const MAX_LIMIT: i64 = 100;
pub const DEFAULT_LIMIT: i64 = 50;

const LIMIT: Param = Param::new(
    "limit",
    Kind::Int {
        min: 1,
        max: Some(MAX_LIMIT),
        default: DEFAULT_LIMIT,
    },
    "Page size.",
);
const OFFSET: Param = Param::new(
    "offset",
    Kind::Int {
        min: 0,
        max: None,
        default: 0,
    },
    "Rows to skip (cannot be combined with `cursor`). Prefer `cursor` for deep pages.",
);
pub const FROM: Param = Param::new(
    "from",
    Kind::Msisdn,
    "Exact sender, `+` then digits. A raw `+` that arrived as a space is taken as `+`.",
)
.example("+919876543210");
const FROM_MSISDN: Param = Param::new(
    "from_msisdn",
    Kind::Msisdn,
    "Alias of `from` (used when `from` is absent).",
);
pub const TO: Param =
    Param::new("to", Kind::Msisdn, "Exact recipient, `+` then digits.").example("+14155550100");
const SINCE: Param = Param::new(
    "since",
    Kind::Time,
    "Only messages with `ts >= since`. `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, a date\n\
    `YYYY-MM-DD` (midnight UTC), or an RFC 3339 time with an offset (`+05:30`).",
)
.example("2025-01-15T10:00:00Z");
const UNTIL: Param = Param::new(
    "until",
    Kind::Time,
    "Only messages with `ts < until`; same formats as `since`.",
);
const Q: Param = Param::new(
    "q",
    Kind::Text { pattern: None },
    "Case-insensitive substring of `text`; `%`, `_` and `\\` match literally. Empty: no filter.",
);
pub const SOURCE: Param = Param::new(
    "source",
    Kind::SourceId,
    "Only messages that came in through this source (`default` for `/webhook`, `whatsapp` for\n\
    `/webhook/whatsapp`, or a configured source's id). Messages stored before sources were\n\
    recorded have none and match no `source`.",
)
.example("default");
const CURSOR: Param = Param::new(
    "cursor",
    Kind::Text { pattern: None },
    "`next_cursor` of the previous page.",
);
const FORMAT: Param = Param::new(
    "format",
    Kind::Text {
        pattern: Some("^(json|ndjson|csv)?$"),
    },
    "`json` (default; also when empty): a page. `ndjson` or `csv`: every match of the filters, streamed in\n\
    `ts, message_id` order as a download; `limit`, `offset` and `cursor` are refused with it.",
)
.example("ndjson");
const INCLUDE: Param = Param::new(
    "include",
    Kind::Text {
        pattern: Some("^(raw)?$"),
    },
    "`raw`: each NDJSON line also carries the payload the message came from (`format=ndjson`\n\
    only).",
);

/// Every parameter, in the order the OpenAPI document lists them.
const PARAMS: [&Param; 12] = [
    &LIMIT,
    &OFFSET,
    &FROM,
    &FROM_MSISDN,
    &TO,
    &SINCE,
    &UNTIL,
    &Q,
    &SOURCE,
    &CURSOR,
    &FORMAT,
    &INCLUDE,
];

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
    /// Only this source's messages.
    pub source: Option<String>,
    pub cursor: Option<Cursor>,
    pub format: Format,
    /// NDJSON lines carry `raw` (`include=raw`).
    pub include_raw: bool,
}

impl IntoParams for Params {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        crate::query::document(&PARAMS)
    }
}

impl Params {
    /// Every bad value is reported, not just the first.
    pub fn parse(raw: Option<&str>) -> Result<Self, ValidationErrors> {
        let mut q = Query::new(raw);
        // The streamed formats answer every match in one response, so a page parameter sent
        // with one is refused rather than ignored: a client sending it expects a page. An empty
        // cursor is no cursor.
        let page_params_sent: Vec<&'static str> = [
            (&LIMIT, q.raw(&LIMIT).is_some()),
            (&OFFSET, q.raw(&OFFSET).is_some()),
            (&CURSOR, q.nonempty(&CURSOR).is_some()),
        ]
        .into_iter()
        .filter_map(|(param, sent)| sent.then_some(param.name))
        .collect();
        let (format_raw, include_raw) = (
            q.raw(&FORMAT).map(str::to_owned),
            q.raw(&INCLUDE).map(str::to_owned),
        );
        let (format, include_raw) = format::parse(
            format_raw.as_deref(),
            &page_params_sent,
            include_raw.as_deref(),
            q.errors(),
        );
        let limit = q.int(&LIMIT);
        let offset_given = q.raw(&OFFSET).is_some();
        let offset = q.int(&OFFSET);
        // `from` wins over its alias, but a bad alias is still an error: a client sending both
        // should learn that one of them is malformed rather than have it silently ignored.
        let alias = q.msisdn(&FROM_MSISDN);
        let from = q.msisdn(&FROM).or(alias);
        let to = q.msisdn(&TO);
        let since = q.time(&SINCE);
        let until = q.time(&UNTIL);
        let pattern = q.contains(&Q);
        let source = q.source_id(&SOURCE);
        // With a streamed format the cursor is already refused, whatever it holds.
        let mut cursor = None;
        if let Some(raw) = q.nonempty(&CURSOR).filter(|_| !format.is_streamed()) {
            let decoded = Cursor::decode(raw);
            if offset_given {
                q.reject(
                    CURSOR.name,
                    "value_error",
                    "Value error, cursor and offset cannot be used together",
                );
            } else if decoded.is_none() {
                q.reject(
                    CURSOR.name,
                    "value_error",
                    "Value error, cursor must be a next_cursor returned by this API",
                );
            } else {
                cursor = decoded;
            }
        }
        q.finish(Params {
            limit,
            offset,
            from,
            to,
            since,
            until,
            pattern,
            source,
            cursor,
            format,
            include_raw,
        })
    }

    /// Whether the read model's aggregates count the total: no filter, or only a sender, only a
    /// recipient, or only a time range. No aggregate is kept per source: a source is counted.
    pub fn total_from_aggregates(&self) -> bool {
        let time = self.since.is_some() || self.until.is_some();
        let given = [self.from.is_some(), self.to.is_some(), time];
        self.pattern.is_none() && self.source.is_none() && given.iter().filter(|g| **g).count() <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest_shared::message::{Loc, parse_ts};

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
        for bad in ["", "Default", "a_b", "a%20b", &"a".repeat(65)] {
            assert_eq!(
                kinds(&format!("source={bad}"))[0],
                ("source".into(), "string_pattern_mismatch".into()),
                "{bad:?}"
            );
        }
        let p = Params::parse(Some(&format!("source={}", "a-1".repeat(21)))).unwrap();
        assert_eq!(p.source.map(|s| s.len()), Some(63));
        assert!(
            !Params::parse(Some("source=whatsapp"))
                .unwrap()
                .total_from_aggregates()
        );
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
}
