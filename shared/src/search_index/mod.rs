//! `SEARCH_INDEX`: whether `messages` keeps the trigram index that serves `q=`
//! (`messages_text_trgm_idx`), and bringing the database in line with the setting.
//!
//! The index is most of what a stored row costs, so a deployment that rarely searches can go
//! without it; `q=` then answers the same through a scan (docs/scaling.md).
//!
//! `messages` is partitioned by time, so the index is a partitioned index: one on `messages`
//! itself, valid once every partition has its part attached. A partition created while it exists
//! gets its part at creation (empty, so at once). Postgres builds no partitioned index
//! CONCURRENTLY, so switching it on creates the parent's index without building anything, then
//! builds each partition's part with `CREATE INDEX CONCURRENTLY` (writes go on) and attaches it.
//! Switching it off drops the parent's index with its parts, which Postgres only does with a
//! brief ACCESS EXCLUSIVE lock on the table (drop.sql), then any part left unattached.
//!
//! Both binaries read the setting and, once the migrations have run, bring the index in line in
//! the background ([`keep_in_line`]), on a session of its own outside any transaction. A
//! session-level advisory lock ([`LOCK_KEY`]) lets one process at a time do it; the others retry
//! until they get the lock and then find nothing left to do. A part left INVALID by an
//! interrupted build is dropped and built again. Every gateway and worker must have the same
//! setting: two that differ undo each other's work at each start (each logs a warning when it
//! finds the other state).
//!
//! Every statement is checked against the schema at compile time (`sqlx::query_file!`) except
//! the ones that bring each partition's part in line: CREATE INDEX CONCURRENTLY names a partition,
//! and cannot run inside a function, so missing.sql and strays.sql build those statements in
//! Postgres from the catalog, each name quoted by `format('%I')`, and they run as raw SQL. No
//! value from a request or the environment reaches them.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::{Connection, Executor, Postgres};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::config::{ConfigError, Env, one_of};
use crate::retry::{Backoff, until_ok};

/// The index this module keeps, as the migration names it.
pub const INDEX_NAME: &str = "messages_text_trgm_idx";

/// The advisory lock that serialises changes to the index (any value no other lock of ours
/// uses; sqlx's migration lock is derived from the database name).
pub const LOCK_KEY: i64 = 0x7365_6172_6368_6978; // "searchix"

/// What `SEARCH_INDEX` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchIndex {
    /// The GIN trigram index on `messages.text` (the default, and what the migration creates).
    #[default]
    Trigram,
    /// No index on `text`: cheaper writes, and `q=` scans what the other filters leave.
    None,
}

impl SearchIndex {
    pub const NAMES: [&'static str; 2] = ["trigram", "none"];

    /// `SEARCH_INDEX`, read by both binaries.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(
            match one_of(env, "SEARCH_INDEX", "trigram", &Self::NAMES)? {
                "none" => Self::None,
                _ => Self::Trigram,
            },
        )
    }

    /// The state the database is in once it is in line with this setting.
    pub fn state(self) -> IndexState {
        match self {
            Self::Trigram => IndexState::Trigram,
            Self::None => IndexState::None,
        }
    }
}

impl fmt::Display for SearchIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.state().as_str())
    }
}

/// What the database has (`search_index` of `/health/ready`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IndexState {
    /// The index exists and is valid: `q=` uses it.
    Trigram,
    /// There is no index: `q=` scans.
    None,
    /// `CREATE INDEX CONCURRENTLY` is building it: `q=` scans until it is done.
    Building,
    /// It exists but is not valid and nothing is building it: left by an interrupted build (the
    /// next start drops and rebuilds it), or being dropped. Writes maintain it; `q=` scans.
    Invalid,
}

impl IndexState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trigram => "trigram",
            Self::None => "none",
            Self::Building => "building",
            Self::Invalid => "invalid",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [Self::Trigram, Self::None, Self::Building, Self::Invalid]
            .into_iter()
            .find(|state| state.as_str() == name)
    }
}

impl fmt::Display for IndexState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The index's state; `None` while the `messages` table does not exist yet.
pub async fn state<'c, E>(db: E) -> Result<Option<IndexState>, sqlx::Error>
where
    E: Executor<'c, Database = Postgres>,
{
    let name: Option<String> = sqlx::query_file_scalar!("src/search_index/state.sql", LOCK_KEY)
        .fetch_one(db)
        .await?;
    Ok(name.as_deref().and_then(IndexState::parse))
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("another process holds the search index lock")]
    Busy,
    #[error("a CREATE INDEX started outside this service is building the search index")]
    BuildingElsewhere,
    #[error("the messages table does not exist yet")]
    NoSchema,
    #[error("the search index is {found} after switching it to {wanted}")]
    NotInLine {
        found: IndexState,
        wanted: SearchIndex,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What one [`reconcile`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub found: IndexState,
    /// How long the switch took; `None` when the index was already in line.
    pub switched_in: Option<Duration>,
}

/// One attempt at bringing the index in line with `wanted`, on a session of its own (built from
/// `connect`) that holds the advisory lock throughout and is closed afterwards: closing ends the
/// session, which releases the lock even if the attempt failed half-way.
pub async fn reconcile(
    connect: &PgConnectOptions,
    wanted: SearchIndex,
) -> Result<Reconciled, ReconcileError> {
    let mut session = PgConnection::connect_with(connect).await?;
    sqlx::query_file!("src/search_index/session.sql")
        .fetch_one(&mut session)
        .await?;
    let locked: bool = sqlx::query_file_scalar!("src/search_index/try_lock.sql", LOCK_KEY)
        .fetch_one(&mut session)
        .await?;
    if !locked {
        let _ = session.close().await;
        return Err(ReconcileError::Busy);
    }
    let result = bring_in_line(&mut session, wanted).await;
    if result.is_ok() {
        let unlocked: bool = sqlx::query_file_scalar!("src/search_index/unlock.sql", LOCK_KEY)
            .fetch_one(&mut session)
            .await?;
        if !unlocked {
            // Only possible when the statements did not all reach one server session, as
            // behind PgBouncer in transaction mode (docs/operations.md).
            tracing::warn!(
                lock_key = LOCK_KEY,
                "the search index lock was not held by this session at the end"
            );
        }
    }
    let _ = session.close().await;
    result
}

/// With the lock held: compare, and switch when they differ.
async fn bring_in_line(
    session: &mut PgConnection,
    wanted: SearchIndex,
) -> Result<Reconciled, ReconcileError> {
    let found = state(&mut *session)
        .await?
        .ok_or(ReconcileError::NoSchema)?;
    if found == wanted.state() {
        return Ok(Reconciled {
            found,
            switched_in: None,
        });
    }
    if found == IndexState::Building {
        // Someone built it by hand and is still at it; dropping it now would waste that work.
        return Err(ReconcileError::BuildingElsewhere);
    }
    let wanted_text = wanted.to_string();
    match found {
        IndexState::Invalid => tracing::warn!(
            index = INDEX_NAME,
            found = %found,
            search_index = %wanted_text,
            "the search index is INVALID (an interrupted CREATE INDEX CONCURRENTLY, or a drop \
             that did not finish): dropping it first"
        ),
        _ => tracing::warn!(
            index = INDEX_NAME,
            found = %found,
            search_index = %wanted_text,
            "the search index differs from SEARCH_INDEX: switching it. Every gateway and worker \
             must have the same SEARCH_INDEX, or each start switches it back"
        ),
    }
    let started = Instant::now();
    tracing::info!(index = INDEX_NAME, from = %found, to = %wanted_text, "search index switch started");
    match wanted {
        SearchIndex::Trigram => build_parts(session).await?,
        SearchIndex::None => {
            sqlx::query_file!("src/search_index/drop.sql")
                .execute(&mut *session)
                .await?;
            let strays: Vec<String> = sqlx::query_file_scalar!("src/search_index/strays.sql")
                .fetch_all(&mut *session)
                .await?;
            for statement in strays {
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&mut *session)
                    .await?;
            }
        }
    }
    let now = state(&mut *session)
        .await?
        .ok_or(ReconcileError::NoSchema)?;
    let took = started.elapsed();
    if now != wanted.state() {
        return Err(ReconcileError::NotInLine { found: now, wanted });
    }
    tracing::info!(
        index = INDEX_NAME,
        from = %found,
        to = %now,
        duration_ms = took.as_millis() as u64,
        "search index switch done"
    );
    Ok(Reconciled {
        found,
        switched_in: Some(took),
    })
}

/// What missing.sql lists for a partition without its part of the index.
struct MissingPart {
    partition: String,
    drop_invalid: Option<String>,
    build: String,
    attach: String,
}

/// Creates the parent's index, then builds and attaches each partition's missing part, one
/// partition at a time, until none lacks it (a partition created meanwhile has its part already).
async fn build_parts(session: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query_file!("src/search_index/create.sql")
        .execute(&mut *session)
        .await?;
    loop {
        let missing: Vec<MissingPart> =
            sqlx::query_file_as!(MissingPart, "src/search_index/missing.sql")
                .fetch_all(&mut *session)
                .await?;
        if missing.is_empty() {
            return Ok(());
        }
        for part in missing {
            let started = Instant::now();
            for statement in part
                .drop_invalid
                .into_iter()
                .chain([part.build, part.attach])
            {
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&mut *session)
                    .await?;
            }
            tracing::info!(
                index = INDEX_NAME,
                partition = part.partition,
                duration_ms = started.elapsed().as_millis() as u64,
                "search index built on a partition"
            );
        }
    }
}

/// Brings the index in line with `wanted`, retrying on the shared schedule (crate::retry) while
/// Postgres fails or another process holds the lock, until it is done or `cancel` fires. Run it
/// after the migrations, in a task of its own: it never blocks start-up or writes. A build under
/// way when `cancel` fires goes on in Postgres to its end (or, if Postgres is interrupted,
/// leaves an INVALID index that the next start rebuilds).
pub async fn keep_in_line(pool: &PgPool, wanted: SearchIndex, cancel: &CancellationToken) {
    let connect = pool.connect_options();
    // A build by another process can take a long time: say once that this one waits for it.
    let mut told_waiting = false;
    let attempts = until_ok(
        Backoff::new(),
        cancel,
        || reconcile(&connect, wanted),
        |error, delay| {
            let retry_in_ms = delay.as_millis() as u64;
            match error {
                ReconcileError::Busy | ReconcileError::BuildingElsewhere if told_waiting => {
                    tracing::debug!(%error, retry_in_ms, "waiting to check the search index")
                }
                ReconcileError::Busy | ReconcileError::BuildingElsewhere => {
                    told_waiting = true;
                    tracing::info!(%error, retry_in_ms, "waiting to check the search index")
                }
                _ => tracing::warn!(
                    %error, retry_in_ms, "could not bring the search index in line"
                ),
            }
        },
    );
    let reconciled = tokio::select! {
        () = cancel.cancelled() => None,
        reconciled = attempts => reconciled,
    };
    if let Some(Reconciled {
        switched_in: None, ..
    }) = reconciled
    {
        tracing::info!(search_index = %wanted, "the search index is in line with SEARCH_INDEX");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(value: &str) -> HashMap<String, String> {
        HashMap::from([("SEARCH_INDEX".to_owned(), value.to_owned())])
    }

    #[test]
    fn the_setting_defaults_to_trigram_and_takes_none() {
        assert_eq!(
            SearchIndex::from_env(&env("")).unwrap(),
            SearchIndex::Trigram
        );
        assert_eq!(
            SearchIndex::from_env(&env("none")).unwrap(),
            SearchIndex::None
        );
        assert_eq!(
            SearchIndex::from_env(&env("TRIGRAM")).unwrap(),
            SearchIndex::Trigram
        );
        assert!(SearchIndex::from_env(&env("gin")).is_err());
    }

    #[test]
    fn states_name_themselves_as_the_readiness_body_does() {
        for state in [
            IndexState::Trigram,
            IndexState::None,
            IndexState::Building,
            IndexState::Invalid,
        ] {
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{state}\"")
            );
            assert_eq!(IndexState::parse(state.as_str()), Some(state));
        }
    }
}
