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

/// How much each aggregate row moves: per sender, recipient and UTC hour of `ts` (the days and
/// the number of messages follow from the hours). Built from the rows a statement changed
/// ([`Moves::of`]) or from counts a caller already has per key ([`Moves::sender`] etc.: retention
/// counts a whole partition in one scan), and applied by [`apply_moves`].
#[derive(Debug, Clone)]
pub struct Moves {
    sign: i64,
    senders: BTreeMap<String, i64>,
    recipients: BTreeMap<String, i64>,
    hours: BTreeMap<DateTime<Utc>, i64>,
}

impl Moves {
    /// No moves yet; every count added later moves its row up (`Added`) or down (`Removed`).
    pub fn new(direction: Direction) -> Self {
        Self {
            sign: i64::from(direction.sign()),
            senders: BTreeMap::new(),
            recipients: BTreeMap::new(),
            hours: BTreeMap::new(),
        }
    }

    /// The moves of the messages in `changes`.
    pub fn of(changes: &Changes, direction: Direction) -> Self {
        let mut moves = Self::new(direction);
        for ((from, to), &ts) in changes
            .from_msisdn
            .iter()
            .zip(&changes.to_msisdn)
            .zip(&changes.ts)
        {
            moves.sender(from.clone(), 1);
            moves.recipient(to.clone(), 1);
            moves.hour(ts, 1);
        }
        moves
    }

    /// `n` messages from `from_msisdn`.
    pub fn sender(&mut self, from_msisdn: String, n: i64) {
        *self.senders.entry(from_msisdn).or_insert(0) += n;
    }

    /// `n` messages to `to_msisdn`.
    pub fn recipient(&mut self, to_msisdn: String, n: i64) {
        *self.recipients.entry(to_msisdn).or_insert(0) += n;
    }

    /// `n` messages whose `ts` falls in the UTC hour of `ts` (any instant of it).
    pub fn hour(&mut self, ts: DateTime<Utc>, n: i64) {
        *self.hours.entry(floor_to(ts, HOUR)).or_insert(0) += n;
    }

    /// How many messages these moves count.
    pub fn messages(&self) -> u64 {
        self.hours.values().sum::<i64>().unsigned_abs()
    }
}

/// The keys of `counted` in key order, and each one's signed move.
fn signed<K: Ord + Clone>(counted: &BTreeMap<K, i64>, sign: i64) -> (Vec<K>, Vec<i64>) {
    counted.iter().map(|(k, n)| (k.clone(), sign * n)).unzip()
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
    apply_moves(tx, &Moves::of(changes, direction)).await
}

/// Applies `moves` to the aggregates; returns how many messages they count. Call it inside the
/// transaction that changed those messages, so both commit or neither does.
pub async fn apply_moves(tx: &mut PgConnection, moves: &Moves) -> Result<u64, sqlx::Error> {
    let messages = moves.messages();
    if messages == 0 {
        return Ok(0);
    }
    // Added up per key, so the statement touches each aggregate row once, with one array element
    // per distinct key rather than per message.
    let senders = signed(&moves.senders, moves.sign);
    let recipients = signed(&moves.recipients, moves.sign);
    let hours = signed(&moves.hours, moves.sign);
    let mut days = BTreeMap::new();
    for (&hour, &n) in &moves.hours {
        *days.entry(floor_to(hour, DAY)).or_insert(0) += n;
    }
    let days = signed(&days, moves.sign);
    // The whole statement, its parameters and its lock order are described in the file.
    sqlx::query_file!(
        "src/read_model/apply_changes.sql",
        &senders.0,
        &senders.1,
        &recipients.0,
        &recipients.1,
        &hours.0,
        &hours.1,
        &days.0,
        &days.1,
        moves.sign * messages as i64
    )
    .fetch_one(tx)
    .await?;
    Ok(messages)
}
