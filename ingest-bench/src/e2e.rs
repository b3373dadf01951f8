//! End to end: waits until every accepted message is a row, then measures how long each took.

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;

use crate::stats::{self, Summary};
use crate::workload::Workload;

pub async fn row_count(db: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(db)
        .await?)
}

#[derive(Debug, Serialize)]
pub struct EndToEnd {
    /// Unique messages with at least one 200.
    pub accepted: usize,
    pub stored: usize,
    /// Accepted but not a row when the wait gave up: a broken guarantee if ever non-zero.
    pub missing: usize,
    /// Row `created_at` (the inserting transaction's start) minus the first accepted send.
    pub latency: Summary,
    /// Last row's `created_at` minus the end of the load.
    pub tail_after_load_ms: f64,
    /// Rows per second from the first send to the last row.
    pub rows_per_s: f64,
}

/// `sent_us[u]`: unix microseconds of the first send of unique message `u` that got a 200.
pub async fn wait_for_rows(
    db: &PgPool,
    run_id: &str,
    sent_us: &[Option<i64>],
    baseline: i64,
    load_end_us: i64,
    timeout: Duration,
) -> anyhow::Result<EndToEnd> {
    let accepted = sent_us.iter().filter(|s| s.is_some()).count();
    let deadline = Instant::now() + timeout;
    // Counting is cheap; the rows themselves are read once, when they should all be there.
    loop {
        let n = row_count(db).await? - baseline;
        if n >= accepted as i64 || Instant::now() >= deadline {
            let e2e = measure(db, run_id, sent_us, load_end_us).await?;
            if e2e.missing == 0 || Instant::now() >= deadline {
                return Ok(e2e);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn measure(
    db: &PgPool,
    run_id: &str,
    sent_us: &[Option<i64>],
    load_end_us: i64,
) -> anyhow::Result<EndToEnd> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT message_id, (extract(epoch FROM created_at) * 1000000)::int8 FROM messages
         WHERE message_id LIKE $1",
    )
    .bind(format!("{run_id}-%"))
    .fetch_all(db)
    .await?;
    let mut found = vec![None; sent_us.len()];
    for (id, created) in rows {
        if let Some(u) = Workload::unique_of(run_id, &id).filter(|u| *u < found.len()) {
            found[u] = Some(created);
        }
    }
    let mut latency = stats::histogram();
    let (mut stored, mut missing) = (0, 0);
    let (mut first_sent, mut last_created) = (i64::MAX, i64::MIN);
    for (sent, created) in sent_us.iter().zip(&found) {
        let Some(sent) = sent else { continue };
        match created {
            Some(created) => {
                stored += 1;
                first_sent = first_sent.min(*sent);
                last_created = last_created.max(*created);
                let us = (created - sent).max(1) as u64;
                stats::record(&mut latency, Duration::from_micros(us));
            }
            None => missing += 1,
        }
    }
    let span_s = (last_created - first_sent) as f64 / 1e6;
    Ok(EndToEnd {
        accepted: stored + missing,
        stored,
        missing,
        latency: Summary::of(&latency),
        tail_after_load_ms: if stored > 0 {
            (last_created - load_end_us) as f64 / 1000.0
        } else {
            0.0
        },
        rows_per_s: if span_s > 0.0 {
            stored as f64 / span_s
        } else {
            0.0
        },
    })
}

#[derive(Debug, Serialize)]
pub struct Drained {
    pub rows: i64,
    /// Rows over the span of their `created_at`: the workers' rate, without their start-up.
    pub rows_per_s: f64,
    pub wall_s: f64,
}

/// Waits until `expect` more rows than `baseline` exist, then reads the rate from `created_at`.
pub async fn wait_for_drain(
    db: &PgPool,
    baseline: i64,
    expect: i64,
    since_us: i64,
    timeout: Duration,
) -> anyhow::Result<Drained> {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let n = row_count(db).await? - baseline;
        if n >= expect || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wall_s = started.elapsed().as_secs_f64();
    let (rows, first, last): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT count(*), (extract(epoch FROM min(created_at)) * 1000000)::int8,
                (extract(epoch FROM max(created_at)) * 1000000)::int8
         FROM messages WHERE created_at >= to_timestamp($1::float8 / 1000000)",
    )
    .bind(since_us as f64)
    .fetch_one(db)
    .await?;
    let span_s = match (first, last) {
        (Some(f), Some(l)) if l > f => (l - f) as f64 / 1e6,
        _ => 0.0,
    };
    Ok(Drained {
        rows,
        rows_per_s: if span_s > 0.0 {
            rows as f64 / span_s
        } else {
            0.0
        },
        wall_s,
    })
}
