//! `GET /stats/timeseries`: what it accepts and what a valid request means ([`SeriesParams`],
//! also its OpenAPI description), and the two statements that count it.
//!
//! Without a sender or recipient the series adds up the read model's hour and day buckets, and
//! counts only the rows of the partial hours that `since` and `until` cut (the same split as the
//! `/messages` total, [`TimeBuckets`]). With `from`, `to` or `source` there is no aggregate per
//! sender (recipient, source) and hour, so the rows are counted through that sender's (or
//! recipient's, or source's) `(…, ts, message_id)` index: the cost is its rows in the range.

use chrono::{DateTime, Utc};
use ingest_shared::message::ValidationErrors;
use ingest_shared::read_model::buckets::{TimeBuckets, Unit};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};

use super::params::{FROM, SOURCE, TO};
use crate::query::{Kind, Param, Query};

/// At most this many buckets in one answer; past it the answer is cut and says where to go on.
/// A day series reaches it only past a few decades of data; an hour series past a year or so.
pub const MAX_BUCKETS: i64 = 10_000;

/// The bucket lengths, as the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BucketName {
    Hour,
    Day,
}

impl From<Unit> for BucketName {
    fn from(unit: Unit) -> Self {
        match unit {
            Unit::Hour => BucketName::Hour,
            Unit::Day => BucketName::Day,
        }
    }
}

const BUCKET: Param = Param::new(
    "bucket",
    Kind::Required {
        schema: "BucketName",
    },
    "Bucket length: a UTC hour or a UTC day.",
);
const SINCE: Param = Param::new(
    "since",
    Kind::Time,
    "Only messages with `ts >= since` (formats as in `/messages`). A bucket that `since` cuts\n\
    counts only its rows at or after `since`.",
)
.example("2025-01-15T10:00:00Z");
const UNTIL: Param = Param::new(
    "until",
    Kind::Time,
    "Only messages with `ts < until`; same formats. A bucket that `until` cuts counts only its\n\
    rows before `until`.",
);

/// A validated request.
#[derive(Debug, PartialEq)]
pub struct SeriesParams {
    pub unit: Unit,
    pub from: Option<String>,
    pub to: Option<String>,
    pub source: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl IntoParams for SeriesParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        crate::query::document(&[&BUCKET, &FROM, &TO, &SOURCE, &SINCE, &UNTIL])
    }
}

impl SeriesParams {
    /// Every bad value is reported, not just the first.
    pub fn parse(raw: Option<&str>) -> Result<Self, ValidationErrors> {
        let mut q = Query::new(raw);
        let unit = match q.raw(&BUCKET) {
            None => {
                q.reject(BUCKET.name, "missing", "Field required");
                None
            }
            Some(name) => {
                let unit = Unit::parse(name);
                if unit.is_none() {
                    q.reject(BUCKET.name, "enum", "Input should be 'hour' or 'day'");
                }
                unit
            }
        };
        let from = q.msisdn(&FROM);
        let to = q.msisdn(&TO);
        let source = q.source_id(&SOURCE);
        let since = q.time(&SINCE);
        let until = q.time(&UNTIL);
        match unit {
            Some(unit) => q.finish(SeriesParams {
                unit,
                from,
                to,
                source,
                since,
                until,
            }),
            None => Err(q
                .finish(())
                .expect_err("a missing or bad bucket is an error")),
        }
    }
}

/// One bucket of either statement.
#[derive(Debug)]
pub struct BucketRow {
    pub start: DateTime<Utc>,
    pub count: i64,
}

/// The non-empty buckets in ascending order, up to `MAX_BUCKETS + 1` (one past the cap says the
/// answer is cut).
pub async fn fetch(db: &PgPool, params: &SeriesParams) -> sqlx::Result<Vec<BucketRow>> {
    let unit = params.unit.as_str();
    let limit = MAX_BUCKETS + 1;
    if params.from.is_some() || params.to.is_some() || params.source.is_some() {
        return sqlx::query_file_as!(
            BucketRow,
            "src/read/series_counted.sql",
            unit,
            params.from.as_deref(),
            params.to.as_deref(),
            params.since,
            params.until,
            limit,
            params.source.as_deref()
        )
        .fetch_all(db)
        .await;
    }
    let b = TimeBuckets::for_unit(params.since, params.until, params.unit);
    sqlx::query_file_as!(
        BucketRow,
        "src/read/series_from_aggregates.sql",
        unit,
        params.since,
        params.until,
        limit,
        b.first_hour,
        b.end_hour,
        b.hours_before.0,
        b.hours_before.1,
        b.days.0,
        b.days.1,
        b.hours_after.0,
        b.hours_after.1
    )
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(raw: &str) -> Vec<(String, String)> {
        SeriesParams::parse(Some(raw))
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (serde_json::to_value(&e.loc).unwrap()[1].to_string(), e.kind))
            .collect()
    }

    #[test]
    fn bucket_is_required_and_every_bad_value_is_reported() {
        let p = SeriesParams::parse(Some("bucket=day&from=+911&unknown=1")).unwrap();
        assert_eq!((p.unit, p.from.as_deref()), (Unit::Day, Some("+911")));
        let p = SeriesParams::parse(Some("bucket=day&source=whatsapp")).unwrap();
        assert_eq!(p.source.as_deref(), Some("whatsapp"));
        assert_eq!(
            SeriesParams::parse(Some("bucket=hour")).unwrap().unit,
            Unit::Hour
        );
        assert_eq!(kinds(""), [("\"bucket\"".into(), "missing".into())]);
        assert_eq!(
            kinds("bucket=week&from=x&to=1&source=x_y&since=yesterday&until=2025-13-01"),
            [
                ("\"bucket\"".into(), "enum".into()),
                ("\"from\"".into(), "string_pattern_mismatch".into()),
                ("\"to\"".into(), "string_pattern_mismatch".into()),
                ("\"source\"".into(), "string_pattern_mismatch".into()),
                ("\"since\"".into(), "datetime_parsing".into()),
                ("\"until\"".into(), "datetime_parsing".into()),
            ]
        );
        // Case matters, as for every enum of the API.
        assert_eq!(kinds("bucket=Hour")[0].1, "enum");
    }
}
