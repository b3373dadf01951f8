//! Keeps the aggregates equal to a count over `messages`: every statement that inserts or
//! deletes messages reports the rows it really changed (`RETURNING from_msisdn, to_msisdn, ts`),
//! and [`apply`] counts exactly those, in the same transaction.
//!
//! Why a second statement in the writer's transaction rather than CTEs appended to each writer's
//! statement: the upkeep is then written once (apply_changes.sql), with one lock order for the
//! batch insert and the retention delete alike, instead of being spliced into both. The price is
//! the changed rows' three columns going to the client, which is small beside the rows
//! themselves; [`apply`] adds them up per sender, recipient, hour and day before sending them
//! back, so the statement gets one array element per aggregate row it updates.
//!
//! What the upkeep costs Postgres is mostly one row update per distinct key of a batch; those
//! updates are HOT (no index entry written) because no index covers a count (see the migration
//! 20261204000008_cheaper_upkeep.sql).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::buckets::{DAY, HOUR, floor_to};

/// The whole statement, its parameters and its lock order are described in the file.
const APPLY_CHANGES: &str = include_str!("apply_changes.sql");

/// A message inserted into or deleted from `messages`: the columns the aggregates count by.
/// Decoded by name from a writer's `RETURNING from_msisdn, to_msisdn, ts`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Change {
    pub from_msisdn: String,
    pub to_msisdn: String,
    pub ts: DateTime<Utc>,
}

/// The messages one statement changed, as the column arrays [`apply`] binds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    from_msisdn: Vec<String>,
    to_msisdn: Vec<String>,
    ts: Vec<DateTime<Utc>>,
}

impl Changes {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
}

impl FromIterator<Change> for Changes {
    fn from_iter<I: IntoIterator<Item = Change>>(changes: I) -> Self {
        let mut all = Self::default();
        for change in changes {
            all.from_msisdn.push(change.from_msisdn);
            all.to_msisdn.push(change.to_msisdn);
            all.ts.push(change.ts);
        }
        all
    }
}

/// Whether the changed messages were inserted or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Added,
    Removed,
}

impl Direction {
    fn sign(self) -> i32 {
        match self {
            Direction::Added => 1,
            Direction::Removed => -1,
        }
    }
}

/// The distinct keys of an aggregate, in key order, and how much each one's count moves.
type Deltas<K> = (Vec<K>, Vec<i64>);

/// Adds up `moves` (key, by how much) per distinct key.
fn tally<K: Ord>(moves: impl Iterator<Item = (K, i64)>) -> Deltas<K> {
    let mut counted = BTreeMap::new();
    for (key, n) in moves {
        *counted.entry(key).or_insert(0) += n;
    }
    counted.into_iter().unzip()
}

/// Applies `changes` to the aggregates; returns how many messages that was. Call it inside the
/// transaction of the statement that made the changes, so both commit or neither does.
pub async fn apply(
    tx: &mut PgConnection,
    changes: &Changes,
    direction: Direction,
) -> Result<u64, sqlx::Error> {
    if changes.is_empty() {
        return Ok(0);
    }
    // Added up here, so the statement touches each aggregate row once, with one array element
    // per distinct key rather than per message.
    let sign = i64::from(direction.sign());
    let senders = tally(changes.from_msisdn.iter().map(|k| (k.as_str(), sign)));
    let recipients = tally(changes.to_msisdn.iter().map(|k| (k.as_str(), sign)));
    let hours = tally(changes.ts.iter().map(|&t| (floor_to(t, HOUR), sign)));
    let days = tally(
        hours
            .0
            .iter()
            .zip(&hours.1)
            .map(|(&h, &n)| (floor_to(h, DAY), n)),
    );
    let messages = sign * changes.len() as i64;
    sqlx::query(APPLY_CHANGES)
        .bind(senders.0)
        .bind(senders.1)
        .bind(recipients.0)
        .bind(recipients.1)
        .bind(hours.0)
        .bind(hours.1)
        .bind(days.0)
        .bind(days.1)
        .bind(messages)
        .execute(tx)
        .await?;
    Ok(changes.len() as u64)
}
