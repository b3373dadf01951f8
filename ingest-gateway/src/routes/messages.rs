//! `GET /messages`: stored messages, filtered, in `(ts, message_id)` order, paginated by offset
//! or by an opaque keyset cursor.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use ingest_shared::message::{FieldError, Loc, ValidationErrors, is_msisdn, parse_ts};
use serde::Serialize;
use sqlx::Row as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::prefer::{Count, PREFERENCE_APPLIED, Preferences};
use crate::state::AppState;

pub const MAX_LIMIT: i64 = 100;
pub const DEFAULT_LIMIT: i64 = 50;
/// Up to this many matches `total` is counted; past it, estimated (the contract's "Counting").
pub const EXACT_COUNT_BOUND: i64 = 10_000;
/// The bound under `Prefer: count=estimated`.
pub const ESTIMATED_COUNT_BOUND: i64 = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// One stored message, exactly as it was sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageItem {
    #[schema(example = "m1")]
    pub message_id: String,
    #[schema(example = "+919876543210")]
    pub from: String,
    #[schema(example = "+14155550100")]
    pub to: String,
    /// The timestamp byte for byte as the sender wrote it.
    #[schema(example = "2025-01-15T10:00:00Z")]
    pub ts: String,
    pub text: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagesPage {
    pub data: Vec<MessageItem>,
    /// Every row matching the filters, whatever `limit`, `offset` and `cursor` say. Exact, unless
    /// `total_estimated` is present.
    pub total: i64,
    /// Present (and true) only when `total` is Postgres's estimate: the filters matched more
    /// rows than the exact bound (10,000; 1,000 with `Prefer: count=estimated`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_estimated: Option<bool>,
    pub limit: i64,
    pub offset: i64,
    /// Pass as `cursor` to get the rows after this page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The query parameters, for the OpenAPI document; [`Params::parse`] is what reads them.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct MessagesQuery {
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 50)]
    limit: Option<i64>,
    /// Rows to skip (cannot be combined with `cursor`). Prefer `cursor` for deep pages.
    #[param(minimum = 0, default = 0)]
    offset: Option<i64>,
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
}

/// A validated request.
#[derive(Debug, Default, PartialEq)]
struct Params {
    limit: i64,
    offset: i64,
    from: Option<String>,
    to: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// The ILIKE pattern, already escaped and wrapped in `%`.
    pattern: Option<String>,
    cursor: Option<Cursor>,
}

/// Where the previous page ended: its last row's sort key.
#[derive(Debug, Clone, PartialEq)]
struct Cursor {
    ts: DateTime<Utc>,
    message_id: String,
}

const CURSOR_VERSION: &str = "v1";

impl Cursor {
    /// Hex keeps it URL-safe without encoding; the version lets the format change later.
    fn encode(&self) -> String {
        hex::encode(format!(
            "{CURSOR_VERSION}|{}|{}",
            self.ts.timestamp_micros(),
            self.message_id
        ))
    }

    fn decode(s: &str) -> Option<Self> {
        let bytes = hex::decode(s).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let rest = text.strip_prefix(CURSOR_VERSION)?.strip_prefix('|')?;
        let (micros, message_id) = rest.split_once('|')?;
        Some(Self {
            ts: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            message_id: message_id.to_owned(),
        })
    }
}

fn query_error(name: &str, kind: &str, msg: impl Into<String>) -> FieldError {
    FieldError {
        loc: vec![Loc::Key("query".into()), Loc::Key(name.into())],
        msg: msg.into(),
        kind: kind.into(),
    }
}

impl Params {
    /// Reads the raw query string the way the older (FastAPI) API did: the last of repeated
    /// keys wins, unknown keys are ignored, and every bad value is reported, not just the first.
    fn parse(raw: Option<&str>) -> Result<Self, ValidationErrors> {
        let mut values: [Option<String>; 9] = Default::default();
        const KEYS: [&str; 9] = [
            "limit",
            "offset",
            "from",
            "from_msisdn",
            "to",
            "since",
            "until",
            "q",
            "cursor",
        ];
        for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if let Some(i) = KEYS.iter().position(|k| *k == key) {
                values[i] = Some(value.into_owned());
            }
        }
        let [limit, offset, from, from_alias, to, since, until, q, cursor] = values;
        let mut errors = Vec::new();
        let mut params = Params {
            limit: int_param(
                "limit",
                limit,
                DEFAULT_LIMIT,
                1,
                Some(MAX_LIMIT),
                &mut errors,
            ),
            ..Params::default()
        };
        let offset_given = offset.is_some();
        params.offset = int_param("offset", offset, 0, 0, None, &mut errors);
        // `from` wins over its alias, but a bad alias is still an error: a client sending both
        // should learn that one of them is malformed rather than have it silently ignored.
        let alias = from_alias.and_then(|v| msisdn_param("from_msisdn", v, &mut errors));
        params.from = from
            .and_then(|v| msisdn_param("from", v, &mut errors))
            .or(alias);
        params.to = to.and_then(|v| msisdn_param("to", v, &mut errors));
        params.since = since.and_then(|v| time_param("since", &v, &mut errors));
        params.until = until.and_then(|v| time_param("until", &v, &mut errors));
        params.pattern = q.filter(|q| !q.is_empty()).map(|q| contains_pattern(&q));
        // An empty cursor is no cursor, as an empty `q` is no search (clients that always send
        // every parameter send `cursor=` on the first page).
        if let Some(raw) = cursor.filter(|c| !c.is_empty()) {
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

    /// Which way the total is computed: the cheapest exact source for this set of filters.
    fn total_sql(&self) -> &'static str {
        let time = self.since.is_some() || self.until.is_some();
        match (
            self.from.is_some(),
            self.to.is_some(),
            time,
            self.pattern.is_some(),
        ) {
            (false, false, false, false) => PAGE_TOTAL_ALL,
            (true, false, false, false) => PAGE_TOTAL_FROM,
            (false, true, false, false) => PAGE_TOTAL_TO,
            (false, false, true, false) => PAGE_TOTAL_TIME,
            _ => PAGE_TOTAL_COUNTED,
        }
    }
}

fn int_param(
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
fn msisdn_param(name: &str, raw: String, errors: &mut Vec<FieldError>) -> Option<String> {
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

fn time_param(name: &str, raw: &str, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
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

const HOUR: TimeDelta = TimeDelta::hours(1);
const DAY: TimeDelta = TimeDelta::days(1);

fn floor_to(t: DateTime<Utc>, unit: TimeDelta) -> DateTime<Utc> {
    t.duration_trunc(unit).unwrap_or(t)
}

fn ceil_to(t: DateTime<Utc>, unit: TimeDelta) -> DateTime<Utc> {
    let floor = floor_to(t, unit);
    if floor == t { t } else { floor + unit }
}

/// A range of bucket starts `[lo, hi)`; `None` is unbounded on that side.
type BucketRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

const NO_BUCKETS: BucketRange = (Some(DateTime::UNIX_EPOCH), Some(DateTime::UNIX_EPOCH));

/// How PAGE_TOTAL_TIME adds up `[since, until)`: the rows of the partial hours at the two edges
/// are counted; the whole hours that do not fill a whole day come from `message_hours`, the whole
/// days from `message_days`. Summing days keeps a year-long range at ~400 buckets instead of 8,760.
#[derive(Debug, PartialEq, Eq)]
struct TimeBuckets {
    /// `since` rounded up / `until` rounded down to the hour: the edges are `[since, first_hour)`
    /// and `[end_hour, until)`.
    first_hour: Option<DateTime<Utc>>,
    end_hour: Option<DateTime<Utc>>,
    hours_before: BucketRange,
    days: BucketRange,
    hours_after: BucketRange,
}

impl TimeBuckets {
    fn of(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Self {
        let first_hour = since.map(|t| ceil_to(t, HOUR));
        let end_hour = until.map(|t| floor_to(t, HOUR));
        let first_day = since.map(|t| ceil_to(t, DAY));
        let end_day = until.map(|t| floor_to(t, DAY));
        let (hours_before, days, hours_after) = match (first_day, end_day) {
            // No whole day inside: every whole hour is in one range (empty if there is none).
            (Some(first), Some(end)) if first >= end => {
                ((first_hour, end_hour), NO_BUCKETS, NO_BUCKETS)
            }
            _ => (
                since.map_or(NO_BUCKETS, |_| (first_hour, first_day)),
                (first_day, end_day),
                until.map_or(NO_BUCKETS, |_| (end_day, end_hour)),
            ),
        };
        TimeBuckets {
            first_hour,
            end_hour,
            hours_before,
            days,
            hours_after,
        }
    }
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

// The page and its total in ONE statement, so both see the same snapshot while workers insert.
// A filter whose parameter is NULL folds away: the read pool plans every execution with the
// actual values (plan_cache_mode=force_custom_plan), so each combination gets its own plan and
// index (ts / from / to / trigram).
//
// $1 from, $2 to, $3 since, $4 until, $5 ILIKE pattern, $6 $7 cursor (ts, id), $8 offset, $9 limit,
// $10-$17 the buckets of [since, until) (see PAGE_TOTAL_TIME).
macro_rules! filters {
    () => {
        "($1::text IS NULL OR m.from_msisdn = $1)
          AND ($2::text IS NULL OR m.to_msisdn = $2)
          AND ($3::timestamptz IS NULL OR m.ts >= $3)
          AND ($4::timestamptz IS NULL OR m.ts < $4)
          AND ($5::text IS NULL OR m.text ILIKE $5)"
    };
}

// The page is found on the index alone (index-only: the skipped rows of an OFFSET cost an index
// entry each, not a heap fetch), then only its rows are read from the table by primary key.
macro_rules! page_with_total {
    ($total:expr) => {
        concat!(
            "WITH total AS (",
            $total,
            "),
keys AS (
    SELECT m.message_id FROM messages m
    WHERE ",
            filters!(),
            "
      AND ($6::timestamptz IS NULL OR (m.ts, m.message_id) > ($6, $7::text))
    ORDER BY m.ts, m.message_id
    OFFSET $8 LIMIT $9
)
SELECT total.n, p.message_id, p.from_msisdn, p.to_msisdn, p.ts, p.ts_raw, p.text
FROM total LEFT JOIN (keys k JOIN messages p ON p.message_id = k.message_id) ON true
ORDER BY p.ts, p.message_id"
        )
    };
}

/// No filter: the total the worker keeps, instead of counting a million rows.
const PAGE_TOTAL_ALL: &str =
    page_with_total!("SELECT coalesce((SELECT total_messages FROM message_totals), 0) AS n");
/// Only a sender or only a recipient: that one's count, also kept by the worker.
const PAGE_TOTAL_FROM: &str = page_with_total!(
    "SELECT coalesce((SELECT count FROM sender_stats WHERE from_msisdn = $1), 0) AS n"
);
const PAGE_TOTAL_TO: &str = page_with_total!(
    "SELECT coalesce((SELECT count FROM recipient_stats WHERE to_msisdn = $2), 0) AS n"
);
/// Only since/until: whole UTC days and hours inside the range come from the worker's buckets
/// (see `TimeBuckets`: $10 $11 the whole-hour bounds, $12-$17 the three bucket ranges); only the
/// rows of the partial hours at the edges, `[since, $10)` and `[$11, until)`, are counted,
/// through the ts index. `least`/`greatest` ignore NULLs, so an open end needs no special case.
const PAGE_TOTAL_TIME: &str = page_with_total!(
    "SELECT (coalesce((SELECT sum(h.count) FROM message_hours h
                      WHERE h.hour >= coalesce($12::timestamptz, '-infinity')
                        AND h.hour < coalesce($13::timestamptz, 'infinity')), 0)
          + coalesce((SELECT sum(d.count) FROM message_days d
                      WHERE d.day >= coalesce($14::timestamptz, '-infinity')
                        AND d.day < coalesce($15::timestamptz, 'infinity')), 0)
          + coalesce((SELECT sum(h.count) FROM message_hours h
                      WHERE h.hour >= coalesce($16::timestamptz, '-infinity')
                        AND h.hour < coalesce($17::timestamptz, 'infinity')), 0)
          + (SELECT count(*) FROM messages m
             WHERE $3::timestamptz IS NOT NULL AND m.ts >= $3 AND m.ts < least($4, $10))
          + (SELECT count(*) FROM messages m
             WHERE $4::timestamptz IS NOT NULL AND $11 >= coalesce($10, '-infinity')
               AND m.ts >= greatest($3, $11) AND m.ts < $4)
           )::bigint AS n"
);
/// Anything else is counted, through whichever index serves the filters, but only up to the
/// bound ($18 = bound + 1; NULL counts everything). Under the bound the page is taken from the
/// rows just counted (for `q=` that halves the heap visits). At the bound the count stopped
/// early, the total is estimated (ESTIMATE), and the page is found by a scan of its own in
/// `(ts, message_id)` order, which stops after `limit` rows: neither costs O(matches). Only one
/// branch of `keys` runs: the other's condition is false before it starts.
const PAGE_TOTAL_COUNTED: &str = concat!(
    "WITH matched AS MATERIALIZED (
    SELECT m.ts, m.message_id FROM messages m
    WHERE ",
    filters!(),
    "
    LIMIT $18
),
total AS (SELECT count(*) AS n FROM matched),
keys AS (
    (SELECT k.message_id FROM matched k
     WHERE ($18::bigint IS NULL OR (SELECT n FROM total) < $18)
       AND ($6::timestamptz IS NULL OR (k.ts, k.message_id) > ($6, $7::text))
     ORDER BY k.ts, k.message_id
     OFFSET $8 LIMIT $9)
    UNION ALL
    (SELECT m.message_id FROM messages m
     WHERE (SELECT n FROM total) >= $18
       AND ",
    filters!(),
    "
       AND ($6::timestamptz IS NULL OR (m.ts, m.message_id) > ($6, $7::text))
     ORDER BY m.ts, m.message_id
     OFFSET $8 LIMIT $9)
)
SELECT total.n, p.message_id, p.from_msisdn, p.to_msisdn, p.ts, p.ts_raw, p.text
FROM total LEFT JOIN (keys k JOIN messages p ON p.message_id = k.message_id) ON true
ORDER BY p.ts, p.message_id"
);

/// The planner's row estimate for the same filters ($1-$5), read from the top plan node.
const ESTIMATE: &str = concat!(
    "EXPLAIN (FORMAT JSON) SELECT 1 FROM messages m WHERE ",
    filters!()
);

#[utoipa::path(
    get,
    path = "/messages",
    tag = "read",
    summary = "List stored messages",
    description = "Messages in `ts ASC, message_id ASC` order. Filters combine with AND. \
        Paginate with `limit`/`offset`, or with `cursor` (keyset: the same cost on every page, \
        and correct while rows are being inserted). Read-your-writes: the answer includes every \
        message any gateway answered 200 for before this request began (see the `Consistency` \
        response header). `total` is exact up to 10,000 matches (1,000 with \
        `Prefer: count=estimated`, unbounded with `Prefer: count=exact`); past that it is \
        Postgres's estimate and `total_estimated` is true.",
    params(MessagesQuery, crate::prefer::PreferHeader),
    responses(
        (status = 200, description = "A page of messages", body = MessagesPage, headers(
            ("Consistency" = String, description = "`fresh`, `stale` (the wait timed out or NATS was unreachable) or `skipped` (opted out)"),
            ("Preference-Applied" = String, description = "The `Prefer` preferences applied"),
        )),
        (status = 422, description = "A query parameter is invalid", body = crate::error::ValidationErrorBody),
        (status = 503, description = "The database is unavailable; retry later", body = crate::error::DetailBody),
    )
)]
#[tracing::instrument(name = "messages", skip_all)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref()).map_err(ApiError::Validation)?;
    let count = Preferences::of(&headers).count;
    let bound = match count {
        Some(Count::Exact) => None,
        Some(Count::Estimated) => Some(ESTIMATED_COUNT_BOUND),
        None => Some(EXACT_COUNT_BOUND),
    };
    let sql = params.total_sql();
    let counted = sql == PAGE_TOTAL_COUNTED;
    let buckets = TimeBuckets::of(params.since, params.until);
    let (cursor_ts, cursor_id) = match &params.cursor {
        Some(c) => (Some(c.ts), Some(c.message_id.as_str())),
        None => (None, None),
    };
    let db_error = |e| ApiError::from_db("messages", e, state.config.retry_after_secs);
    let query = sqlx::query(sql)
        .bind(params.from.as_deref())
        .bind(params.to.as_deref())
        .bind(params.since)
        .bind(params.until)
        .bind(params.pattern.as_deref())
        .bind(cursor_ts)
        .bind(cursor_id)
        .bind(params.offset)
        // One more than asked: whether it comes back says whether there is a next page.
        .bind(params.limit + 1)
        .bind(buckets.first_hour)
        .bind(buckets.end_hour)
        .bind(buckets.hours_before.0)
        .bind(buckets.hours_before.1)
        .bind(buckets.days.0)
        .bind(buckets.days.1)
        .bind(buckets.hours_after.0)
        .bind(buckets.hours_after.1)
        // One past the bound: reaching it says the total is over the bound.
        .bind(bound.map(|b| b + 1));
    let rows = if counted {
        fetch_counted(&state.read_db, query).await
    } else {
        query.fetch_all(&state.read_db).await
    }
    .map_err(db_error)?;

    let mut total = 0;
    let mut data = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    for row in &rows {
        total = row.try_get::<i64, _>(0).map_err(db_error)?;
        let Some(message_id) = row.try_get::<Option<String>, _>(1).map_err(db_error)? else {
            continue;
        };
        keys.push(row.try_get::<DateTime<Utc>, _>(4).map_err(db_error)?);
        data.push(MessageItem {
            message_id,
            from: row.try_get(2).map_err(db_error)?,
            to: row.try_get(3).map_err(db_error)?,
            ts: row.try_get(5).map_err(db_error)?,
            text: row.try_get(6).map_err(db_error)?,
        });
    }
    let mut total_estimated = None;
    if let Some(bound) = bound.filter(|b| counted && total > *b) {
        // More matches than the bound: the planner's estimate, never below what was counted.
        total = estimate(&state, &params)
            .await
            .map_err(db_error)?
            .max(bound + 1);
        total_estimated = Some(true);
    }
    let next_cursor = if data.len() as i64 > params.limit {
        data.truncate(params.limit as usize);
        data.last().map(|last| {
            Cursor {
                ts: keys[data.len() - 1],
                message_id: last.message_id.clone(),
            }
            .encode()
        })
    } else {
        None
    };
    let mut response = Json(MessagesPage {
        data,
        total,
        total_estimated,
        limit: params.limit,
        offset: params.offset,
        next_cursor,
    })
    .into_response();
    if let Some(count) = count {
        response.headers_mut().append(
            PREFERENCE_APPLIED.clone(),
            HeaderValue::from_static(count.applied()),
        );
    }
    Ok(response)
}

/// The counted total stops at its bound, and under a LIMIT the planner bets on a sequential scan
/// meeting enough matches early: for `q=` that evaluates ILIKE on every row it passes instead of
/// on the trigram index's candidates only. This statement alone is planned without that bet
/// (every filter it can have is served by an index), and with room for the candidates' bitmap
/// to stay exact: a common word's candidates span most of a large table's pages, and a lossy
/// bitmap rechecks every row of each such page instead of only the candidates.
async fn fetch_counted(
    db: &sqlx::PgPool,
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "SELECT set_config('enable_seqscan', 'off', true), set_config('work_mem', '32MB', true)",
    )
    .execute(&mut *tx)
    .await?;
    let rows = query.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}

/// Postgres's estimate of the rows matching the filters (the same statistics its planner uses).
async fn estimate(state: &AppState, params: &Params) -> Result<i64, sqlx::Error> {
    let sqlx::types::Json(plan): sqlx::types::Json<serde_json::Value> =
        sqlx::query_scalar(ESTIMATE)
            .bind(params.from.as_deref())
            .bind(params.to.as_deref())
            .bind(params.since)
            .bind(params.until)
            .bind(params.pattern.as_deref())
            .fetch_one(&state.read_db)
            .await?;
    let rows = plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0);
    Ok(rows.round() as i64)
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

    /// Every instant of a three-day window is covered by exactly one part of `TimeBuckets` (an
    /// edge counted row by row, an hour bucket or a day bucket) when it is inside
    /// `[since, until)`, and by none otherwise: the total adds each row once.
    #[test]
    fn time_buckets_cover_the_range_exactly_once() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let bounds: Vec<Option<DateTime<Utc>>> = [
            None,
            Some("2025-01-14T00:00:00Z"),
            Some("2025-01-14T23:00:00Z"),
            Some("2025-01-14T23:59:59.5Z"),
            Some("2025-01-15T00:00:00Z"),
            Some("2025-01-15T00:30:00Z"),
            Some("2025-01-15T10:00:00Z"),
            Some("2025-01-15T10:20:00Z"),
            Some("2025-01-15T10:40:00Z"),
            Some("2025-01-16T00:00:00Z"),
            Some("2025-01-16T05:30:00Z"),
            Some("2025-01-17T00:00:00Z"),
        ]
        .iter()
        .map(|s| s.map(at))
        .collect();
        let in_range = |t: DateTime<Utc>, (lo, hi): BucketRange| {
            lo.is_none_or(|lo| t >= lo) && hi.is_none_or(|hi| t < hi)
        };
        // Every 165 s over five days, and each bound and the millisecond before it.
        let mut instants: Vec<DateTime<Utc>> = (0..2_700)
            .map(|i| at("2025-01-13T00:00:00Z") + TimeDelta::seconds(165 * i))
            .collect();
        for b in bounds.iter().flatten() {
            instants.extend([*b, *b - TimeDelta::milliseconds(1)]);
        }
        for &since in &bounds {
            for &until in &bounds {
                if since.is_none() && until.is_none() {
                    continue; // not a time-only query
                }
                let b = TimeBuckets::of(since, until);
                for &t in &instants {
                    let edge_before = since.is_some_and(|s| {
                        t >= s && [until, b.first_hour].iter().flatten().all(|e| t < *e)
                    });
                    let edge_after = until.is_some_and(|u| {
                        b.end_hour >= b.first_hour.or(b.end_hour)
                            && [since, b.end_hour].iter().flatten().all(|s| t >= *s)
                            && t < u
                    });
                    let parts = [
                        edge_before,
                        edge_after,
                        in_range(floor_to(t, HOUR), b.hours_before),
                        in_range(floor_to(t, DAY), b.days),
                        in_range(floor_to(t, HOUR), b.hours_after),
                    ];
                    let covered = parts.iter().filter(|p| **p).count();
                    let inside = since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u);
                    assert_eq!(
                        covered,
                        usize::from(inside),
                        "t={t} since={since:?} until={until:?} parts={parts:?} {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn q_wildcards_match_literally() {
        assert_eq!(contains_pattern(r"50%_a\b'"), r"%50\%\_a\\b'%");
    }

    #[test]
    fn cursor_round_trips() {
        let c = Cursor {
            ts: parse_ts("2025-01-15T10:00:00.123456Z").unwrap(),
            message_id: "id|with|pipes é".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("76317c31"), None);
    }
}
