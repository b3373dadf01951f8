//! Which buckets of `message_hours` and `message_days` a time range covers.
//!
//! The upkeep files each message under `date_trunc('hour' | 'day', ts, 'UTC')`; [`floor_to`]
//! is the same rounding on this side, so a bucket start computed here names exactly the rows
//! the upkeep counted into that bucket.

use chrono::{DateTime, TimeDelta, Utc};

pub const HOUR: TimeDelta = TimeDelta::hours(1);
pub const DAY: TimeDelta = TimeDelta::days(1);

/// The start of the UTC bucket of length `unit` (whole seconds) that holds `t`. Whole seconds
/// since the epoch, not `duration_trunc`, which gives up outside the years 1677-2262 that a
/// valid `ts` may lie beyond (the upkeep must file every message where Postgres would).
pub fn floor_to(t: DateTime<Utc>, unit: TimeDelta) -> DateTime<Utc> {
    let secs = unit.num_seconds().max(1);
    DateTime::from_timestamp(t.timestamp().div_euclid(secs) * secs, 0).unwrap_or(t)
}

fn ceil_to(t: DateTime<Utc>, unit: TimeDelta) -> DateTime<Utc> {
    let floor = floor_to(t, unit);
    if floor == t { t } else { floor + unit }
}

/// A range of bucket starts `[lo, hi)`; `None` is unbounded on that side.
pub type BucketRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

const NO_BUCKETS: BucketRange = (Some(DateTime::UNIX_EPOCH), Some(DateTime::UNIX_EPOCH));

/// How `[since, until)` adds up from the aggregates: the rows of the partial hours at the two
/// edges are counted; the whole hours that do not fill a whole day come from `message_hours`,
/// the whole days from `message_days`. Summing days keeps a year-long range at a few hundred
/// buckets instead of one per hour.
#[derive(Debug, PartialEq, Eq)]
pub struct TimeBuckets {
    /// `since` rounded up / `until` rounded down to the hour: the edges counted row by row are
    /// `[since, first_hour)` and `[end_hour, until)`.
    pub first_hour: Option<DateTime<Utc>>,
    pub end_hour: Option<DateTime<Utc>>,
    pub hours_before: BucketRange,
    pub days: BucketRange,
    pub hours_after: BucketRange,
}

impl TimeBuckets {
    pub fn of(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Self {
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

/// The length of a series bucket: `GET /stats/timeseries?bucket=hour|day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Hour,
    Day,
}

impl Unit {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Unit::Hour),
            "day" => Some(Unit::Day),
            _ => None,
        }
    }

    /// The name `date_trunc(<name>, ts, 'UTC')` takes, which is also the name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Hour => "hour",
            Unit::Day => "day",
        }
    }
}

impl TimeBuckets {
    /// How `[since, until)` adds up into buckets of `unit`. Per day, [`TimeBuckets::of`] as it
    /// is (its parts each fall inside one day). Per hour, the days cannot be used (a day bucket
    /// does not say which of its hours its rows are in), so every whole hour is read from
    /// `message_hours` in one range, with the same row-counted edges.
    pub fn for_unit(
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        unit: Unit,
    ) -> Self {
        let buckets = Self::of(since, until);
        match unit {
            Unit::Day => buckets,
            Unit::Hour => TimeBuckets {
                hours_before: (buckets.first_hour, buckets.end_hour),
                days: NO_BUCKETS,
                hours_after: NO_BUCKETS,
                ..buckets
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_to_rounds_down_before_1970_and_after_2262_as_date_trunc_does() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        for (t, hour, day) in [
            (
                "2025-01-15T10:59:59.999Z",
                "2025-01-15T10:00:00Z",
                "2025-01-15T00:00:00Z",
            ),
            (
                "1969-12-31T23:30:00.5Z",
                "1969-12-31T23:00:00Z",
                "1969-12-31T00:00:00Z",
            ),
            (
                "1900-06-01T00:00:00Z",
                "1900-06-01T00:00:00Z",
                "1900-06-01T00:00:00Z",
            ),
            (
                "2300-01-01T05:30:00Z",
                "2300-01-01T05:00:00Z",
                "2300-01-01T00:00:00Z",
            ),
            (
                "9999-12-31T23:59:59Z",
                "9999-12-31T23:00:00Z",
                "9999-12-31T00:00:00Z",
            ),
        ] {
            assert_eq!(floor_to(at(t), HOUR), at(hour), "{t}");
            assert_eq!(floor_to(at(t), DAY), at(day), "{t}");
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
        for (since, until, unit) in bounds.iter().flat_map(|&s| {
            bounds
                .iter()
                .flat_map(move |&u| [(s, u, Unit::Hour), (s, u, Unit::Day)])
        }) {
            {
                if since.is_none() && until.is_none() {
                    continue; // not a time-only query
                }
                let b = TimeBuckets::for_unit(since, until, unit);
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
                        "t={t} since={since:?} until={until:?} {unit:?} parts={parts:?} {b:?}"
                    );
                }
            }
        }
    }
}
