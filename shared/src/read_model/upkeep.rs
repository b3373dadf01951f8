//! Keeps the aggregates equal to a count over `messages`: every statement that inserts or
//! deletes messages reports the rows it really changed (`RETURNING from_msisdn, to_msisdn, ts`),
//! and [`apply`] counts exactly those, in the same transaction.
//!
//! Why a second statement in the writer's transaction rather than CTEs appended to each writer's
//! statement: the upkeep is then written once (apply_changes.sql), with one lock order for the
//! batch insert and the retention delete alike, instead of being spliced into both. The price is
//! the changed rows' three columns going to the client and back, which is small beside the rows
//! themselves.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

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

#[derive(sqlx::FromRow)]
struct Applied {
    messages: i64,
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
    let applied: Applied = sqlx::query_as(APPLY_CHANGES)
        .bind(&changes.from_msisdn)
        .bind(&changes.to_msisdn)
        .bind(&changes.ts)
        .bind(direction.sign())
        .fetch_one(tx)
        .await?;
    Ok(applied.messages as u64)
}
