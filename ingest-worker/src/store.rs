//! Writing a batch: its messages and dead letters in one statement, idempotent on message_id,
//! and the read model's upkeep in the same transaction; when Postgres refuses a value, finding
//! the rows it refuses so that only those become dead letters.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, Utc};
use ingest_shared::read_model::upkeep::{self, Change, Changes, Direction};
use sqlx::PgPool;

use crate::batch::{Batch, LOG_TARGET, Row};
use crate::config::RawPayload;
use crate::dead_letter::{DeadLetter, Kind};

/// Stores `rows` and `dead` in one transaction, committed whole or not at all, the aggregates
/// included. Returns how many rows were new.
pub async fn store_batch(
    pool: &PgPool,
    raw_payload: RawPayload,
    rows: &[Row],
    dead: &[DeadLetter],
) -> Result<u64, sqlx::Error> {
    let dead = distinct_payloads(dead);
    let n = rows.len();
    let (mut ids, mut froms, mut tos) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut ts, mut ts_raw, mut texts, mut seqs, mut msg_types, mut raws, mut sources) = (
        Vec::<DateTime<Utc>>::with_capacity(n),
        Vec::with_capacity(n),
        Vec::<Option<&str>>::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::<Option<&str>>::with_capacity(n),
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
        msg_types.push(m.msg_type.as_deref());
        sources.push(row.source.as_deref());
        // Sent as text and cast in the statement: the payload's own bytes, no copy or
        // re-serialisation here. A validated body is UTF-8 (its strings were decoded, and JSON
        // has nothing else outside ASCII).
        raws.push(match raw_payload {
            RawPayload::Keep => std::str::from_utf8(&row.payload).ok(),
            RawPayload::Drop => None,
        });
    }
    let dead_seqs: Vec<i64> = dead.iter().map(|d| d.letter.stream_seq).collect();
    let dead_subjects: Vec<&str> = dead.iter().map(|d| d.letter.subject.as_str()).collect();
    let dead_payloads: Vec<&[u8]> = dead.iter().map(|d| d.letter.payload.as_slice()).collect();
    let dead_reasons: Vec<&str> = dead.iter().map(|d| d.letter.reason.as_str()).collect();
    let dead_requests: Vec<Option<&str>> = dead
        .iter()
        .map(|d| d.letter.request_id.as_deref())
        .collect();
    let dead_sources: Vec<Option<&str>> = dead.iter().map(|d| d.letter.source.as_deref()).collect();
    let dead_kinds: Vec<&str> = dead.iter().map(|d| d.letter.kind.as_str()).collect();
    let dead_keys: Vec<&str> = dead.iter().map(|d| d.letter.dedup_key.as_str()).collect();
    let dead_times: Vec<i32> = dead.iter().map(|d| d.times).collect();
    let mut tx = pool.begin().await?;
    // The whole statement, its parameters and why it is shaped so are described in the file.
    let inserted: Vec<Change> = sqlx::query_file_as!(
        Change,
        "src/sql/store_batch.sql",
        // Borrowed, not copied into `String`s: the macro checks these arrays by count and
        // position only (`as`), their element types by the casts in the statement.
        &ids as &[&str],
        &froms as &[&str],
        &tos as &[&str],
        &ts,
        &ts_raw as &[&str],
        &texts as &[Option<&str>],
        &seqs,
        &msg_types as &[Option<&str>],
        &raws as &[Option<&str>],
        &dead_seqs,
        &dead_subjects as &[&str],
        &dead_payloads as &[&[u8]],
        &dead_reasons as &[&str],
        &dead_requests as &[Option<&str>],
        &dead_kinds as &[&str],
        &dead_keys as &[&str],
        &dead_times,
        &sources as &[Option<&str>],
        &dead_sources as &[Option<&str>]
    )
    .fetch_all(&mut *tx)
    .await?;
    let inserted: Changes = inserted.into_iter().collect();
    // Only scripts/bench-upkeep.sh builds without the upkeep: a drain with and one without it
    // differ by what it costs. Such a build leaves /stats behind `messages`: never deploy it.
    if !cfg!(feature = "bench-skip-upkeep") {
        upkeep::apply(&mut tx, &inserted, Direction::Added).await?;
    }
    tx.commit().await?;
    Ok(inserted.len() as u64)
}

/// A dead letter and how often the batch holds its bytes.
struct Counted<'a> {
    letter: &'a DeadLetter,
    times: i32,
}

/// One entry per payload (the statement's upsert cannot touch a row twice), the last occurrence
/// standing for the others, in the order first seen.
fn distinct_payloads(dead: &[DeadLetter]) -> Vec<Counted<'_>> {
    let mut at = HashMap::with_capacity(dead.len());
    let mut distinct: Vec<Counted<'_>> = Vec::with_capacity(dead.len());
    for letter in dead {
        match at.entry(letter.dedup_key.as_str()) {
            Entry::Occupied(slot) => {
                let counted: &mut Counted<'_> = &mut distinct[*slot.get()];
                counted.letter = letter;
                counted.times += 1;
            }
            Entry::Vacant(slot) => {
                slot.insert(distinct.len());
                distinct.push(Counted { letter, times: 1 });
            }
        }
    }
    distinct
}

/// Stores the batch. When Postgres refuses it for a value, writes its rows one at a time so that
/// only the ones refused become dead letters (marked so in `batch`). An error is one that
/// retrying may outlast; the batch then holds what isolation found so far.
pub async fn store(
    pool: &PgPool,
    raw_payload: RawPayload,
    batch: &mut Batch,
) -> Result<u64, sqlx::Error> {
    let error = match store_batch(pool, raw_payload, batch.rows(), batch.dead_letters()).await {
        Ok(inserted) => return Ok(inserted),
        Err(error) => error,
    };
    if !is_permanent(&error) {
        return Err(error);
    }
    tracing::warn!(target: LOG_TARGET, %error, "batch refused by postgres; isolating the bad rows");
    match isolate(pool, raw_payload, batch).await {
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
async fn isolate(
    pool: &PgPool,
    raw_payload: RawPayload,
    batch: &mut Batch,
) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    let mut next = 0;
    while let Some(row) = batch.rows().get(next) {
        match store_batch(pool, raw_payload, std::slice::from_ref(row), &[]).await {
            Ok(n) => {
                inserted += n;
                next += 1;
            }
            // The row leaves the rows, so the next one is now at `next`.
            Err(error) if is_permanent(&error) => batch.refuse(next, &error),
            Err(error) => return Err(error),
        }
    }
    store_batch(pool, raw_payload, &[], batch.dead_letters()).await?;
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

/// How many dead letters are stored, per kind; a kind with none is 0.
pub async fn dead_letters_by_kind(pool: &PgPool) -> Result<Vec<(Kind, i64)>, sqlx::Error> {
    let counted: Vec<(String, i64)> = sqlx::query_file!("src/sql/dead_letters_by_kind.sql")
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|row| (row.kind, row.count))
        .collect();
    Ok(Kind::ALL
        .into_iter()
        .map(|kind| {
            let count = counted
                .iter()
                .find(|(k, _)| k == kind.as_str())
                .map_or(0, |(_, n)| *n);
            (kind, count)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(payload: &str, seq: i64) -> DeadLetter {
        DeadLetter {
            kind: Kind::Invalid,
            dedup_key: format!("key-{payload}"),
            stream_seq: seq,
            subject: "s".into(),
            payload: payload.as_bytes().to_vec(),
            reason: "r".into(),
            request_id: None,
            source: None,
        }
    }

    #[test]
    fn identical_payloads_are_sent_once_with_their_count_and_latest_delivery() {
        let dead = [
            letter("a", 1),
            letter("b", 2),
            letter("a", 3),
            letter("a", 4),
        ];
        let distinct = distinct_payloads(&dead);
        let seen: Vec<_> = distinct
            .iter()
            .map(|c| (c.letter.dedup_key.as_str(), c.letter.stream_seq, c.times))
            .collect();
        assert_eq!(seen, [("key-a", 4, 3), ("key-b", 2, 1)]);
    }
}
