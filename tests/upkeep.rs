//! The read model's upkeep under contention: writers inserting batches that share senders,
//! recipients, hours and days, handing them to `upkeep::apply` in opposite orders, while
//! retention-like deleters remove random rows and take them out again. No transaction may fail
//! (a deadlock is an error, and so is a lost update, found at the end), and afterwards every
//! aggregate equals a direct count over `messages`, every sender's band is the band of its count,
//! and the busiest senders of `/stats` (its own statement) are the ones a direct count gives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ingest_shared::read_model::upkeep::{self, Change, Changes, Direction};
use integration_tests::TestEnv;
use sqlx::PgPool;

/// The statement of `GET /stats`, run as the gateway runs it.
const STATS: &str = include_str!("../ingest-gateway/src/read/stats.sql");

const WRITERS: usize = 4;
const BATCHES: usize = 40;
const BATCH: usize = 60;

/// Senders with very different weights, so counts spread over several bands and ties happen,
/// and one message in ten from a sender of its own (the band of a single message).
fn sender(n: usize) -> String {
    if n.is_multiple_of(10) {
        return format!("+1777{n:06}");
    }
    let k = (n * 7919) % 100;
    format!("+1555{:04}", k * k / 400)
}

/// Instants on both sides of hour and day edges, before 1970 and after 2262 too (where a
/// nanosecond-based truncation gives up), so buckets are shared and edges are exercised.
const TIMES: [&str; 8] = [
    "2025-01-15T09:59:59.999Z",
    "2025-01-15T10:00:00Z",
    "2025-01-15T23:59:59Z",
    "2025-01-16T00:00:00.5Z",
    "1969-12-31T23:30:00Z",
    "1900-06-01T12:00:01Z",
    "2300-01-01T05:30:00Z",
    "9999-12-31T23:59:59Z",
];

async fn insert_batch(db: &PgPool, writer: usize, batch: usize) -> Result<u64, sqlx::Error> {
    let mut ids = Vec::with_capacity(BATCH);
    let mut froms = Vec::with_capacity(BATCH);
    let mut tos = Vec::with_capacity(BATCH);
    let mut ts = Vec::with_capacity(BATCH);
    for i in 0..BATCH {
        let n = batch * BATCH + i;
        ids.push(format!("w{writer}-{n:06}"));
        froms.push(sender(n * WRITERS + writer));
        tos.push(format!("+1666{:03}", (n + writer) % 7));
        ts.push(TIMES[(n * 3 + writer) % TIMES.len()].to_owned());
    }
    let mut tx = db.begin().await?;
    let mut inserted: Vec<Change> = sqlx::query_as(
        "WITH u AS (
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS u(id, f, t, r)
         ),
         new AS (
             INSERT INTO message_ids (message_id, ts) SELECT id, r::timestamptz FROM u
             ON CONFLICT (message_id) DO NOTHING
             RETURNING message_id
         )
         INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw)
         SELECT id, f, t, r::timestamptz, r FROM u JOIN new ON new.message_id = u.id
         RETURNING from_msisdn, to_msisdn, ts",
    )
    .bind(&ids)
    .bind(&froms)
    .bind(&tos)
    .bind(&ts)
    .fetch_all(&mut *tx)
    .await?;
    // Half the writers hand their changes over in the opposite order of the other half.
    if !writer.is_multiple_of(2) {
        inserted.sort_by(|a, b| b.from_msisdn.cmp(&a.from_msisdn));
    } else {
        inserted.sort_by(|a, b| a.from_msisdn.cmp(&b.from_msisdn));
    }
    let changes: Changes = inserted.into_iter().collect();
    let applied = upkeep::apply(&mut tx, &changes, Direction::Added).await?;
    tx.commit().await?;
    Ok(applied)
}

/// One retention-like batch: random rows, locked so that two deleters never take the same one.
async fn delete_batch(db: &PgPool, n: i64) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let deleted: Vec<Change> = sqlx::query_as(
        "DELETE FROM messages WHERE (ts, message_id) IN (
             SELECT ts, message_id FROM messages ORDER BY random() LIMIT $1
             FOR UPDATE SKIP LOCKED)
         RETURNING from_msisdn, to_msisdn, ts",
    )
    .bind(n)
    .fetch_all(&mut *tx)
    .await?;
    let changes: Changes = deleted.into_iter().collect();
    let applied = upkeep::apply(&mut tx, &changes, Direction::Removed).await?;
    tx.commit().await?;
    Ok(applied)
}

/// Rows of the aggregates that differ from a direct count, as readable lines.
async fn mismatches(db: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT format('sender %s: %s counted, %s kept', coalesce(m.k, s.from_msisdn), m.n, s.count)
         FROM (SELECT from_msisdn AS k, count(*) AS n FROM messages GROUP BY 1) m
         FULL JOIN (SELECT * FROM sender_stats WHERE count <> 0) s ON s.from_msisdn = m.k
         WHERE m.n IS DISTINCT FROM s.count
         UNION ALL
         SELECT format('sender %s: band %s for %s', from_msisdn, band, count) FROM sender_stats
         WHERE band <> sender_band(count)
         UNION ALL
         SELECT format('recipient %s: %s counted, %s kept', coalesce(m.k, r.to_msisdn), m.n, r.count)
         FROM (SELECT to_msisdn AS k, count(*) AS n FROM messages GROUP BY 1) m
         FULL JOIN (SELECT * FROM recipient_stats WHERE count <> 0) r ON r.to_msisdn = m.k
         WHERE m.n IS DISTINCT FROM r.count
         UNION ALL
         SELECT format('hour %s: %s counted, %s kept', coalesce(m.k, h.hour), m.n, h.count)
         FROM (SELECT date_trunc('hour', ts, 'UTC') AS k, count(*) AS n FROM messages GROUP BY 1) m
         FULL JOIN (SELECT * FROM message_hours WHERE count <> 0) h ON h.hour = m.k
         WHERE m.n IS DISTINCT FROM h.count
         UNION ALL
         SELECT format('day %s: %s counted, %s kept', coalesce(m.k, d.day), m.n, d.count)
         FROM (SELECT date_trunc('day', ts, 'UTC') AS k, count(*) AS n FROM messages GROUP BY 1) m
         FULL JOIN (SELECT * FROM message_days WHERE count <> 0) d ON d.day = m.k
         WHERE m.n IS DISTINCT FROM d.count
         UNION ALL
         SELECT format('totals %s/%s/%s', t.total_messages, t.senders_count, t.recipients_count)
         FROM message_totals t
         WHERE (t.total_messages, t.senders_count, t.recipients_count) IS DISTINCT FROM
               ((SELECT count(*) FROM messages), (SELECT count(DISTINCT from_msisdn) FROM messages),
                (SELECT count(DISTINCT to_msisdn) FROM messages))",
    )
    .fetch_all(db)
    .await
    .expect("compare the aggregates")
}

/// Decoded by the names stats.sql gives its columns, with the never-NULL mark ("!") its
/// compile-time check reads.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Top {
    #[sqlx(rename = "top_senders!")]
    top_senders: Vec<String>,
    #[sqlx(rename = "top_sender_counts!")]
    top_sender_counts: Vec<i64>,
}

async fn top_by_stats(db: &PgPool, n: i64) -> Top {
    sqlx::query_as(STATS)
        .bind(n)
        .fetch_one(db)
        .await
        .expect("the /stats statement")
}

async fn top_by_count(db: &PgPool, n: i64) -> Top {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT from_msisdn, count(*) FROM messages GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $1",
    )
    .bind(n)
    .fetch_all(db)
    .await
    .expect("count the busiest senders");
    let (top_senders, top_sender_counts) = rows.into_iter().unzip();
    Top {
        top_senders,
        top_sender_counts,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aggregates_stay_exact_under_concurrent_batches_and_retention() {
    let env = TestEnv::new().await;
    let db = PgPool::connect(&env.database_url).await.expect("pool");
    let writing = Arc::new(AtomicBool::new(true));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut stored = 0;
                for b in 0..BATCHES {
                    stored += insert_batch(&db, w, b).await.expect("a writer's batch");
                }
                stored
            })
        })
        .collect();
    let deleters: Vec<_> = (0..2)
        .map(|_| {
            let (db, writing) = (db.clone(), writing.clone());
            tokio::spawn(async move {
                let mut deleted = 0;
                // Deletes while the writers write, then once more after.
                loop {
                    let last = !writing.load(Ordering::Relaxed);
                    deleted += delete_batch(&db, 25).await.expect("a retention batch");
                    if last {
                        return deleted;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    let mut stored = 0;
    for w in writers {
        stored += w.await.expect("writer");
    }
    writing.store(false, Ordering::Relaxed);
    let mut deleted = 0;
    for d in deleters {
        deleted += d.await.expect("deleter");
    }

    assert_eq!(stored, (WRITERS * BATCHES * BATCH) as u64);
    assert!(deleted > 0, "the deleters removed nothing");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left as u64, stored - deleted);
    assert_eq!(mismatches(&db).await, Vec::<String>::new());
    for n in [1, 3, 10, 30] {
        assert_eq!(
            top_by_stats(&db, n).await,
            top_by_count(&db, n).await,
            "top {n}"
        );
    }

    // Retention removes everything: every count falls to 0 and stays exact, and no sender is
    // listed any more.
    while delete_batch(&db, 500).await.expect("a retention batch") > 0 {}
    assert_eq!(mismatches(&db).await, Vec::<String>::new());
    assert_eq!(top_by_stats(&db, 10).await, top_by_count(&db, 10).await);
    assert!(top_by_stats(&db, 10).await.top_senders.is_empty());
    db.close().await;
}
