//! Runs the statements of `GET /messages`: a page of messages and how many match in all.

use chrono::{DateTime, Utc};
use ingest_shared::read_model::buckets::TimeBuckets;
use sqlx::PgPool;

use super::params::Params;

/// One row of either page statement: the total on every row, then a message, or `None`s on the
/// single row an empty page returns.
#[derive(Debug, sqlx::FromRow)]
pub struct PageRow {
    pub total: i64,
    pub message_id: Option<String>,
    pub from_msisdn: Option<String>,
    pub to_msisdn: Option<String>,
    pub ts: Option<DateTime<Utc>>,
    pub ts_raw: Option<String>,
    pub text: Option<String>,
    pub msg_type: Option<String>,
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
    let (cursor_ts, cursor_id) = match &params.cursor {
        Some(c) => (Some(c.ts), Some(c.message_id.as_str())),
        None => (None, None),
    };
    // One more than asked: whether it comes back says whether there is a next page.
    let limit = params.limit + 1;
    let rows = if params.total_is_kept() {
        let buckets = TimeBuckets::of(params.since, params.until);
        let query = sqlx::query_as::<_, PageRow>(include_str!("page_with_kept_total.sql"))
            .bind(params.from.as_deref())
            .bind(params.to.as_deref())
            .bind(params.since)
            .bind(params.until)
            .bind(cursor_ts)
            .bind(cursor_id)
            .bind(params.offset)
            .bind(limit);
        super::bind_buckets(query, &buckets).fetch_all(db).await?
    } else {
        let query = sqlx::query_as::<_, PageRow>(include_str!("page_with_counted_total.sql"))
            .bind(params.from.as_deref())
            .bind(params.to.as_deref())
            .bind(params.since)
            .bind(params.until)
            .bind(params.pattern.as_deref())
            .bind(cursor_ts)
            .bind(cursor_id)
            .bind(params.offset)
            .bind(limit)
            // One past the bound: reaching it says the total is over the bound.
            .bind(bound.map(|b| b + 1));
        fetch_counted(db, query).await?
    };
    let mut total = rows.first().map_or(0, |row| row.total);
    let mut estimated = false;
    if let Some(bound) = bound.filter(|b| !params.total_is_kept() && total > *b) {
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

type PageQuery<'q> = sqlx::query::QueryAs<'q, sqlx::Postgres, PageRow, sqlx::postgres::PgArguments>;

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
async fn fetch_counted(db: &PgPool, query: PageQuery<'_>) -> sqlx::Result<Vec<PageRow>> {
    let mut tx = db.begin().await?;
    sqlx::query(include_str!("counted_settings.sql"))
        .execute(&mut *tx)
        .await?;
    let rows = query.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}

/// Postgres's estimate of the rows matching the filters (the same statistics its planner uses).
async fn estimate(db: &PgPool, params: &Params) -> sqlx::Result<i64> {
    let sqlx::types::Json(plan): sqlx::types::Json<serde_json::Value> =
        sqlx::query_scalar(include_str!("estimate_matches.sql"))
            .bind(params.from.as_deref())
            .bind(params.to.as_deref())
            .bind(params.since)
            .bind(params.until)
            .bind(params.pattern.as_deref())
            .fetch_one(db)
            .await?;
    let rows = plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0);
    Ok(rows.round() as i64)
}
