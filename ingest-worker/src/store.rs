//! Writing a batch: one statement, idempotent on message_id, dead letters in the same statement.

use chrono::{DateTime, Utc};
use ingest_shared::message::Message;
use sqlx::PgPool;

pub struct Row {
    pub message: Message,
    pub stream_seq: i64,
}

pub struct DeadLetter {
    pub stream_seq: i64,
    pub subject: String,
    pub payload: Vec<u8>,
    pub reason: String,
    pub request_id: Option<String>,
}

/// Both inserts and the read API's aggregates in one statement (a data-modifying CTE), so a
/// batch is one round trip and is committed whole or not at all. `DO NOTHING` also tolerates an
/// id repeated inside the batch, and `RETURNING` yields only the rows really inserted, so the
/// aggregates count each message once however often it is delivered. Messages are inserted
/// sorted by id; the aggregates' lock order is in aggregates.rs.
const STORE_BATCH: &str = concat!(
    "
WITH dead AS (
    INSERT INTO dead_letters (stream_seq, subject, payload, reason, request_id)
    SELECT * FROM UNNEST($8::bigint[], $9::text[], $10::bytea[], $11::text[], $12::text[])
),
inserted AS (
    INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text, stream_seq,
                          msg_type)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                         $6::text[], $7::bigint[], $13::text[]) AS u(message_id)
    ORDER BY u.message_id
    ON CONFLICT (message_id) DO NOTHING
    RETURNING from_msisdn, to_msisdn, ts
),
",
    apply_to_aggregates!("inserted", "1")
);

/// Returns how many rows were new.
pub async fn store_batch(
    pool: &PgPool,
    rows: &[Row],
    dead: &[DeadLetter],
) -> Result<u64, sqlx::Error> {
    let n = rows.len();
    let (mut ids, mut froms, mut tos) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut ts, mut ts_raw, mut texts, mut seqs, mut kinds) = (
        Vec::<DateTime<Utc>>::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for row in rows {
        let m = &row.message;
        ids.push(m.message_id.as_str());
        froms.push(m.from.as_str());
        tos.push(m.to.as_str());
        ts.push(m.ts);
        ts_raw.push(m.ts_raw.as_str());
        texts.push(m.text.as_deref());
        seqs.push(row.stream_seq);
        kinds.push(m.kind.as_deref());
    }
    let inserted: i64 = sqlx::query_scalar(STORE_BATCH)
        .bind(ids)
        .bind(froms)
        .bind(tos)
        .bind(ts)
        .bind(ts_raw)
        .bind(texts)
        .bind(seqs)
        .bind(dead.iter().map(|d| d.stream_seq).collect::<Vec<_>>())
        .bind(dead.iter().map(|d| d.subject.as_str()).collect::<Vec<_>>())
        .bind(
            dead.iter()
                .map(|d| d.payload.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(dead.iter().map(|d| d.reason.as_str()).collect::<Vec<_>>())
        .bind(
            dead.iter()
                .map(|d| d.request_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(kinds)
        .fetch_one(pool)
        .await?;
    Ok(inserted as u64)
}

/// An error that retrying the same rows cannot fix (a value Postgres refuses), as opposed to an
/// outage, which retrying will outlast.
pub fn is_permanent(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}
