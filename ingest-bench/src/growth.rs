//! The growth benchmark's pieces (scripts/bench-growth.sh): a drain into a large seeded table
//! measured without counting the table, the drained rows taken out again, rows loaded by SQL
//! added to the aggregates, and how long retention blocks the table.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ingest_shared::read_model::upkeep::{self, Change, Changes, Direction};
use serde::Serialize;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::stats::{self, Summary};

/// The workers' count of rows they inserted, the same counter their /metrics exports.
const ROWS_INSERTED: &str = "worker_rows_inserted_total";

/// The sum of `worker_rows_inserted_total` over the workers' /metrics (`host:port` each); a
/// worker that does not answer yet counts 0.
async fn rows_inserted(workers: &[String]) -> u64 {
    let mut total = 0;
    for addr in workers {
        if let Ok(Ok(text)) =
            tokio::time::timeout(Duration::from_secs(2), get_metrics(addr.as_str())).await
        {
            total += parse_counter(&text, ROWS_INSERTED);
        }
    }
    total
}

async fn get_metrics(addr: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The value of an unlabelled counter in Prometheus text, 0 when absent.
fn parse_counter(text: &str, name: &str) -> u64 {
    text.lines()
        .filter_map(|line| {
            let (metric, value) = line.split_once(' ')?;
            (metric == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .map(|v| v as u64)
        .sum()
}

#[derive(Debug, Serialize)]
pub struct Drained {
    pub rows: i64,
    /// Rows over the span of their `created_at`: the workers' rate, without their start-up.
    pub rows_per_s: f64,
    /// From the start of the wait to the workers' count reaching the backlog.
    pub wall_s: f64,
}

struct Span {
    rows: i64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

/// Waits until the workers report `expect` inserted rows; asks Postgres nothing meanwhile, so the
/// wait costs the database nothing whatever the table's size.
pub async fn wait_for_workers(
    workers: &[String],
    expect: u64,
    timeout: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    while rows_inserted(workers).await < expect {
        if started.elapsed() >= timeout {
            anyhow::bail!("the workers did not insert {expect} rows within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The rows with `ts >= ts_from` and their rate.
pub async fn drained_since(
    db: &PgPool,
    ts_from: DateTime<Utc>,
    wall_s: f64,
) -> anyhow::Result<Drained> {
    let span: Span = sqlx::query_file_as!(Span, "src/sql/drained_since.sql", ts_from)
        .fetch_one(db)
        .await?;
    let span_s = match (span.first, span.last) {
        (Some(f), Some(l)) if l > f => (l - f).as_seconds_f64(),
        _ => 0.0,
    };
    Ok(Drained {
        rows: span.rows,
        rows_per_s: if span_s > 0.0 {
            span.rows as f64 / span_s
        } else {
            0.0
        },
        wall_s,
    })
}

struct Removed {
    message_id: String,
    from_msisdn: String,
    to_msisdn: String,
    ts: DateTime<Utc>,
}

struct Present {
    present: bool,
}

/// Deletes the rows of `[from, to)` and takes them out of the aggregates (and out of
/// `message_ids` when the schema has it) in one transaction. Returns how many.
pub async fn unstore(db: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<u64> {
    let mut tx = db.begin().await?;
    let has_ids: Present = sqlx::query_file_as!(Present, "src/sql/has_message_ids.sql")
        .fetch_one(&mut *tx)
        .await?;
    let removed: Vec<Removed> = sqlx::query_file_as!(Removed, "src/sql/unstore.sql", from, to)
        .fetch_all(&mut *tx)
        .await?;
    if has_ids.present {
        let ids: Vec<&str> = removed.iter().map(|r| r.message_id.as_str()).collect();
        sqlx::query_file!("src/sql/unstore_ids.sql", &ids as &[&str])
            .execute(&mut *tx)
            .await?;
    }
    let changes: Changes = removed
        .into_iter()
        .map(|r| Change {
            from_msisdn: r.from_msisdn,
            to_msisdn: r.to_msisdn,
            ts: r.ts,
        })
        .collect();
    let n = upkeep::apply(&mut tx, &changes, Direction::Removed).await?;
    tx.commit().await?;
    Ok(n)
}

/// Adds the rows of `[from, to)` to the aggregates, one `step` of ts per transaction so that a
/// month of a large table never sits in memory at once. Returns how many.
pub async fn count_in(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: chrono::Duration,
) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut at = from;
    while at < to {
        let next = (at + step).min(to);
        let mut tx = db.begin().await?;
        let rows: Vec<Change> = sqlx::query_file_as!(Change, "src/sql/rows_in_range.sql", at, next)
            .fetch_all(&mut *tx)
            .await?;
        let changes: Changes = rows.into_iter().collect();
        total += upkeep::apply(&mut tx, &changes, Direction::Added).await?;
        tx.commit().await?;
        at = next;
    }
    Ok(total)
}

#[derive(Debug, Serialize)]
pub struct Blocked {
    /// From the start of the probe to no row older than the cutoff being left.
    pub gone_after_s: f64,
    pub probes: u64,
    /// Latency of a one-row read of `messages`, probed back to back: its maximum is the longest
    /// time the table was blocked.
    pub probe: Summary,
    pub probe_max_ms: f64,
}

struct Left {
    rows: i64,
}

/// Reads one row of `messages` back to back on one connection until no row older than `cutoff`
/// is left (another connection checks every half second), recording each read's latency.
pub async fn probe_until_expired(
    db: &PgPool,
    cutoff: DateTime<Utc>,
    timeout: Duration,
) -> anyhow::Result<Blocked> {
    let started = Instant::now();
    let mut latency = stats::histogram();
    let mut max = Duration::ZERO;
    let mut probes = 0;
    let mut next_check = started;
    loop {
        let now = Instant::now();
        if now >= next_check {
            let left: Left = sqlx::query_file_as!(Left, "src/sql/expired_left.sql", cutoff)
                .fetch_one(db)
                .await?;
            if left.rows == 0 {
                break;
            }
            if started.elapsed() >= timeout {
                anyhow::bail!(
                    "{} rows older than {cutoff} left after {timeout:?}",
                    left.rows
                );
            }
            next_check = now + Duration::from_millis(500);
        }
        let t = Instant::now();
        sqlx::query_file!("src/sql/probe.sql")
            .fetch_optional(db)
            .await?;
        let took = t.elapsed();
        stats::record(&mut latency, took);
        max = max.max(took);
        probes += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(Blocked {
        gone_after_s: started.elapsed().as_secs_f64(),
        probes,
        probe: Summary::of(&latency),
        probe_max_ms: max.as_secs_f64() * 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_is_read_from_prometheus_text() {
        let text = "HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\n\
            # HELP worker_rows_inserted_total Rows inserted.\n\
            # TYPE worker_rows_inserted_total counter\n\
            worker_rows_inserted_total 123456\n\
            worker_rows_inserted_total_extra 9\n\
            worker_batches_total 10\n";
        assert_eq!(parse_counter(text, ROWS_INSERTED), 123_456);
        assert_eq!(parse_counter(text, "absent_total"), 0);
    }
}
