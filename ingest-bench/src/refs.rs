//! The ceilings: the same bodies published straight to JetStream, and the same rows upserted
//! straight into Postgres, with none of the gateway's or the worker's code in between.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use ingest_shared::message::Message;
use ingest_shared::{RECEIVED_AT_HEADER, REQUEST_ID_HEADER};

use crate::stats;
use crate::workload::Workload;

pub struct Published {
    pub elapsed: Duration,
    pub acked: u64,
    pub duplicates: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

/// Publishes every request of the workload with the gateway's headers, keeping at most
/// `inflight` publishes awaiting their PubAck, and counts the acks.
pub async fn publish(
    js: &jetstream::Context,
    subject: &str,
    workload: &Workload,
    inflight: usize,
) -> anyhow::Result<Published> {
    // Headers are built before the clock, like the bodies: this measures the queue, not us.
    let headers: Vec<async_nats::HeaderMap> = (0..workload.unique())
        .map(|u| {
            let mut h = async_nats::HeaderMap::new();
            h.insert(
                async_nats::header::NATS_MESSAGE_ID,
                workload.ids[u].as_str(),
            );
            h.insert(REQUEST_ID_HEADER, "00000000-0000-4000-8000-000000000000");
            h.insert(RECEIVED_AT_HEADER, "1764355200000000");
            h
        })
        .collect();
    let subject = async_nats::Subject::from(subject);
    let mut pending = FuturesUnordered::new();
    let mut latency = stats::histogram();
    let (mut acked, mut duplicates, mut errors) = (0, 0, 0);
    let mut settle = |r: (Instant, Result<jetstream::publish::PublishAck, _>)| match r.1 {
        Ok(ack) => {
            stats::record(&mut latency, r.0.elapsed());
            acked += 1;
            duplicates += u64::from(ack.duplicate);
        }
        Err(_) => errors += 1,
    };
    let started = Instant::now();
    for &u in &workload.order {
        let u = u as usize;
        if pending.len() >= inflight
            && let Some(r) = pending.next().await
        {
            settle(r);
        }
        let sent_at = Instant::now();
        let ack = js
            .publish_with_headers(
                subject.clone(),
                headers[u].clone(),
                workload.bodies[u].clone(),
            )
            .await?;
        pending.push(async move { (sent_at, ack.await) });
    }
    while let Some(r) = pending.next().await {
        settle(r);
    }
    Ok(Published {
        elapsed: started.elapsed(),
        acked,
        duplicates,
        errors,
        latency,
    })
}

pub struct Upserted {
    pub elapsed: Duration,
    pub rows: usize,
    pub inserted: u64,
    pub batches: usize,
}

/// The worker's statement, minus the dead-letter CTE that is empty on this data.
const UPSERT: &str = "
INSERT INTO messages_ref (message_id, from_msisdn, to_msisdn, ts, ts_raw, text, stream_seq)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                     $6::text[], $7::bigint[])
ON CONFLICT (message_id) DO NOTHING";

/// Upserts the workload's unique rows in `batch`-row statements on one connection into
/// `messages_ref`, a copy of `messages` with the same indexes, emptied first.
pub async fn upsert(
    database_url: &str,
    workload: &Workload,
    batch: usize,
) -> anyhow::Result<Upserted> {
    let rows: Vec<Message> = workload
        .bodies
        .iter()
        .map(|b| ingest_shared::message::parse(b))
        .collect::<Result<_, _>>()?;
    let pool = crate::database(database_url, 1).await?;
    let mut conn = pool.acquire().await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS messages_ref (LIKE messages INCLUDING ALL);
         TRUNCATE messages_ref;",
    )
    .execute(&mut *conn)
    .await?;
    let started = Instant::now();
    let mut inserted = 0;
    let mut batches = 0;
    for (b, chunk) in rows.chunks(batch.max(1)).enumerate() {
        let result = sqlx::query(UPSERT)
            .bind(
                chunk
                    .iter()
                    .map(|m| m.message_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(chunk.iter().map(|m| m.from.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|m| m.to.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|m| m.ts).collect::<Vec<_>>())
            .bind(chunk.iter().map(|m| m.ts_raw.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|m| m.text.as_deref()).collect::<Vec<_>>())
            .bind(
                (0..chunk.len())
                    .map(|i| (b * batch + i) as i64)
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *conn)
            .await?;
        inserted += result.rows_affected();
        batches += 1;
    }
    let elapsed = started.elapsed();
    sqlx::raw_sql("DROP TABLE messages_ref")
        .execute(&mut *conn)
        .await?;
    Ok(Upserted {
        elapsed,
        rows: rows.len(),
        inserted,
        batches,
    })
}
