//! Writing a batch: its messages and dead letters in one statement, idempotent on message_id,
//! and the read model's upkeep in the same transaction; when Postgres refuses a value, finding
//! the rows it refuses so that only those become dead letters.

use chrono::{DateTime, Utc};
use ingest_shared::read_model::upkeep::{self, Change, Changes, Direction};
use sqlx::PgPool;

use crate::batch::{Batch, DeadLetter, Row};
use crate::consume::LOG_TARGET;

/// The whole statement, its parameters and why it is shaped so are described in the file.
const STORE_BATCH: &str = include_str!("sql/store_batch.sql");

/// Stores `rows` and `dead` in one transaction, committed whole or not at all, the aggregates
/// included. Returns how many rows were new.
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
    let mut tx = pool.begin().await?;
    let inserted: Vec<Change> = sqlx::query_as(STORE_BATCH)
        .bind(ids)
        .bind(froms)
        .bind(tos)
        .bind(ts)
        .bind(ts_raw)
        .bind(texts)
        .bind(seqs)
        .bind(kinds)
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
        .fetch_all(&mut *tx)
        .await?;
    let inserted: Changes = inserted.into_iter().collect();
    upkeep::apply(&mut tx, &inserted, Direction::Added).await?;
    tx.commit().await?;
    Ok(inserted.len() as u64)
}

/// Stores the batch. When Postgres refuses it for a value, writes its rows one at a time so that
/// only the ones refused become dead letters (marked so in `batch`). An error is one that
/// retrying may outlast; the batch then holds what isolation found so far.
pub async fn store(pool: &PgPool, batch: &mut Batch) -> Result<u64, sqlx::Error> {
    let error = match store_batch(pool, batch.rows(), batch.dead_letters()).await {
        Ok(inserted) => return Ok(inserted),
        Err(error) => error,
    };
    if !is_permanent(&error) {
        return Err(error);
    }
    tracing::warn!(target: LOG_TARGET, %error, "batch refused by postgres; isolating the bad rows");
    match isolate(pool, batch).await {
        Ok(inserted) => return Ok(inserted),
        Err(error) if !is_permanent(&error) => {
            tracing::warn!(target: LOG_TARGET, %error, "isolation interrupted by an outage");
        }
        Err(error) => {
            tracing::error!(target: LOG_TARGET, %error, "isolation failed");
        }
    }
    Err(error)
}

/// Writes the rows one at a time; a row Postgres refuses becomes a dead letter. Then the dead
/// letters, alone.
async fn isolate(pool: &PgPool, batch: &mut Batch) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    let mut next = 0;
    while let Some(row) = batch.rows().get(next) {
        match store_batch(pool, std::slice::from_ref(row), &[]).await {
            Ok(n) => {
                inserted += n;
                next += 1;
            }
            // The row leaves the rows, so the next one is now at `next`.
            Err(error) if is_permanent(&error) => batch.refuse(next, &error),
            Err(error) => return Err(error),
        }
    }
    store_batch(pool, &[], batch.dead_letters()).await?;
    Ok(inserted)
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
