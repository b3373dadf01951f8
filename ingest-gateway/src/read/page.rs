//! Runs the statements of `GET /messages`: a page of messages and how many match in all.

use chrono::{DateTime, Utc};
use ingest_shared::read_model::buckets::TimeBuckets;
use sqlx::PgPool;

use super::params::Params;

/// One row of either page statement: the total on every row, then a message, or `None`s on the
/// single row an empty page returns.
#[derive(Debug)]
pub struct PageRow {
    pub total: i64,
    pub message_id: Option<String>,
    pub from_msisdn: Option<String>,
    pub to_msisdn: Option<String>,
    pub ts: Option<DateTime<Utc>>,
    pub ts_raw: Option<String>,
    pub text: Option<String>,
    pub msg_type: Option<String>,
    pub source: Option<String>,
}

/// What both page statements return, in `(ts, message_id)` order, up to `limit + 1` messages.
pub struct Fetched {
    pub rows: Vec<PageRow>,
    pub total: i64,
    /// The total is the planner's estimate: the matches passed the bound.
    pub estimated: bool,
}

/// Reads a page of `params`; `bound` is how many matches are counted before the total is
/// estimated instead (`None`: count all).
pub async fn fetch(db: &PgPool, params: &Params, bound: Option<i64>) -> sqlx::Result<Fetched> {
    let aggregated = params.total_from_aggregates();
    let rows = if aggregated {
        fetch_aggregated(db, params).await?
    } else {
        fetch_counted(db, params, bound).await?
    };
    let mut total = rows.first().map_or(0, |row| row.total);
    let mut estimated = false;
    if let Some(bound) = bound.filter(|b| !aggregated && total > *b) {
        // More matches than the bound: the planner's estimate, never below what was counted.
        total = estimate(db, params).await?.max(bound + 1);
        estimated = true;
    }
    Ok(Fetched {
        rows,
        total,
        estimated,
    })
}

/// The cursor's `(ts, message_id)`, and the page's limit: one more than asked, as whether that
/// row comes back says whether there is a next page.
fn keyset(params: &Params) -> (Option<DateTime<Utc>>, Option<&str>, i64) {
    let (ts, id) = match &params.cursor {
        Some(c) => (Some(c.ts), Some(c.message_id.as_str())),
        None => (None, None),
    };
    (ts, id, params.limit + 1)
}

async fn fetch_aggregated(db: &PgPool, params: &Params) -> sqlx::Result<Vec<PageRow>> {
    let (cursor_ts, cursor_id, limit) = keyset(params);
    let b = TimeBuckets::of(params.since, params.until);
    sqlx::query_file_as!(
        PageRow,
        "src/read/page_with_aggregate_total.sql",
        params.from.as_deref(),
        params.to.as_deref(),
        params.since,
        params.until,
        cursor_ts,
        cursor_id,
        params.offset,
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

/// The counted total stops at its bound, and under a LIMIT the planner bets on a sequential scan
/// meeting enough matches early: for `q=` that evaluates ILIKE on every row it passes instead of
/// on the trigram index's candidates only. This statement alone is planned without that bet
/// (every filter it can have is served by an index), and with room for the candidates' bitmap
/// to stay exact: a common word's candidates span most of a large table's pages, and a lossy
/// bitmap rechecks every row of each such page instead of only the candidates.
///
/// Without the trigram index (`SEARCH_INDEX=none`, or while it is being built) the setting
/// changes nothing for a search: Postgres considers no index scan for the unordered match list
/// when no index serves its conditions, so `q=` alone is still one sequential scan stopped at
/// the bound, and with `since`/`until` (or `from`/`to`) it is that filter's index range with
/// ILIKE applied to its rows; past the bound the page is the `(ts, message_id)` index in order,
/// stopped after `limit` matches (plans checked with EXPLAIN ANALYZE on Postgres 15, 100,000
/// rows).
async fn fetch_counted(
    db: &PgPool,
    params: &Params,
    bound: Option<i64>,
) -> sqlx::Result<Vec<PageRow>> {
    let (cursor_ts, cursor_id, limit) = keyset(params);
    let mut tx = db.begin().await?;
    sqlx::query_file!("src/read/counted_settings.sql")
        .fetch_one(&mut *tx)
        .await?;
    let rows = sqlx::query_file_as!(
        PageRow,
        "src/read/page_with_counted_total.sql",
        params.from.as_deref(),
        params.to.as_deref(),
        params.since,
        params.until,
        params.pattern.as_deref(),
        cursor_ts,
        cursor_id,
        params.offset,
        limit,
        // One past the bound: reaching it says the total is over the bound.
        bound.map(|b| b + 1),
        params.source.as_deref()
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// Postgres's estimate of the rows matching the filters (the same statistics its planner uses).
async fn estimate(db: &PgPool, params: &Params) -> sqlx::Result<i64> {
    let plan: Option<serde_json::Value> = sqlx::query_file_scalar!(
        "src/read/estimate_matches.sql",
        params.from.as_deref(),
        params.to.as_deref(),
        params.since,
        params.until,
        params.pattern.as_deref(),
        params.source.as_deref()
    )
    .fetch_one(db)
    .await?;
    let rows = plan.unwrap_or_default()[0]["Plan"]["Plan Rows"]
        .as_f64()
        .unwrap_or(0.0);
    Ok(rows.round() as i64)
}
