//! The upkeep reference: what keeping the read model's aggregates costs Postgres per stored row.
//!
//! The same 500-row batches of the workload are stored twice into the same emptied tables, on one
//! connection: with the worker's insert statement alone, and with the insert and
//! `read_model::upkeep::apply` in one transaction, as the worker commits a batch. The CPU time of
//! that connection's backend (from /proc, in nanoseconds) per row, with and without, differ by
//! what the upkeep costs; every Postgres process (autovacuum, WAL writer) is reported beside it
//! from the usual monitor, which also sees whatever else the box runs. Passes alternate, so drift
//! on a shared box falls on both alike. `messages` has the indexes SEARCH_INDEX asks for.

use std::time::{Duration, Instant};

use ingest_shared::message::Message;
use ingest_shared::read_model::upkeep::{self, Change, Changes, Direction};
use serde::Serialize;
use sqlx::PgConnection;

use crate::procmon::{self, Monitor, Target};
use crate::workload::Workload;

/// Two statements, run as raw SQL (a checked statement is one statement); psql runs the same
/// file in scripts/bench-upkeep.sh.
const RESET: &str = include_str!("sql/upkeep_reset.sql");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    InsertOnly,
    WithUpkeep,
}

#[derive(Debug, Serialize)]
pub struct Pass {
    pub mode: Mode,
    pub rows: u64,
    pub elapsed_s: f64,
    pub rows_per_s: f64,
    /// CPU time of the connection's backend per stored row.
    pub backend_us_per_row: f64,
    /// CPU time of every process named postgres per stored row (includes other load).
    pub postgres_us_per_row: f64,
    /// Aggregate rows that differ from a direct count after the pass (only with the upkeep).
    pub mismatches: Option<i64>,
}

struct Pid {
    pid: i32,
}

struct Mismatches {
    mismatches: i64,
}

/// Runs `repeat` rounds of both passes over the workload's rows in `batch`-row transactions.
pub async fn measure(
    database_url: &str,
    workload: &Workload,
    batch: usize,
    repeat: usize,
) -> anyhow::Result<Vec<Pass>> {
    let rows: Vec<Message> = workload
        .bodies
        .iter()
        .map(|b| ingest_shared::message::parse(b))
        .collect::<Result<_, _>>()?;
    let pool = crate::database(database_url, 1).await?;
    ingest_shared::db::migrate(&pool).await?;
    // The indexes of `messages` as SEARCH_INDEX asks, as the binaries would leave them.
    let wanted =
        ingest_shared::search_index::SearchIndex::from_env(&ingest_shared::config::ProcessEnv)?;
    ingest_shared::search_index::reconcile(&database_url.parse()?, wanted).await?;
    let mut conn = pool.acquire().await?;
    let pid: Pid = sqlx::query_file_as!(Pid, "src/sql/backend_pid.sql")
        .fetch_one(&mut *conn)
        .await?;
    let backend = Target::Pids(vec![pid.pid as u32]);
    let mut passes = Vec::new();
    for _ in 0..repeat.max(1) {
        for mode in [Mode::InsertOnly, Mode::WithUpkeep] {
            sqlx::raw_sql(RESET).execute(&mut *conn).await?;
            let monitor = Monitor::start(
                vec![("postgres".into(), Target::Comm("postgres".into()))],
                Duration::from_millis(250),
            );
            let cpu_before = procmon::cpu_ns(&backend);
            let started = Instant::now();
            let stored = store_all(&mut conn, &rows, batch, mode).await?;
            let elapsed = started.elapsed().as_secs_f64();
            let cpu = procmon::cpu_ns(&backend).saturating_sub(cpu_before);
            let all = monitor.finish();
            let postgres_s = all.get("postgres").map_or(0.0, |u| u.cpu_pct / 100.0) * elapsed;
            let mismatches = match mode {
                Mode::InsertOnly => None,
                Mode::WithUpkeep => {
                    let m: Mismatches =
                        sqlx::query_file_as!(Mismatches, "src/sql/upkeep_mismatches.sql")
                            .fetch_one(&mut *conn)
                            .await?;
                    Some(m.mismatches)
                }
            };
            let per_row = |secs: f64| secs * 1e6 / stored.max(1) as f64;
            let pass = Pass {
                mode,
                rows: stored,
                elapsed_s: elapsed,
                rows_per_s: stored as f64 / elapsed,
                backend_us_per_row: per_row(cpu as f64 / 1e9),
                postgres_us_per_row: per_row(postgres_s),
                mismatches,
            };
            eprintln!("{}", serde_json::to_string(&pass)?);
            passes.push(pass);
        }
    }
    sqlx::raw_sql(RESET).execute(&mut *conn).await?;
    Ok(passes)
}

/// Stores `rows` in `batch`-row transactions as the worker does; returns how many were new.
async fn store_all(
    conn: &mut PgConnection,
    rows: &[Message],
    batch: usize,
    mode: Mode,
) -> anyhow::Result<u64> {
    let mut stored = 0;
    let no_i64: &[i64] = &[];
    let no_text: &[&str] = &[];
    let no_bytes: &[&[u8]] = &[];
    let no_opt: &[Option<&str>] = &[];
    let no_i32: &[i32] = &[];
    for (b, chunk) in rows.chunks(batch.max(1)).enumerate() {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let ids: Vec<&str> = chunk.iter().map(|m| m.message_id.as_str()).collect();
        let froms: Vec<&str> = chunk.iter().map(|m| m.from.as_str()).collect();
        let tos: Vec<&str> = chunk.iter().map(|m| m.to.as_str()).collect();
        let ts: Vec<_> = chunk.iter().map(|m| m.ts).collect();
        let ts_raw: Vec<&str> = chunk.iter().map(|m| m.ts_raw.as_str()).collect();
        let texts: Vec<Option<&str>> = chunk.iter().map(|m| m.text.as_deref()).collect();
        let seqs: Vec<i64> = (0..chunk.len()).map(|i| (b * batch + i) as i64).collect();
        let msg_types: Vec<Option<&str>> = chunk.iter().map(|m| m.msg_type.as_deref()).collect();
        // The worker's own statement (ingest-worker/src/store.rs runs it), so this measures what
        // the worker runs; its dead-letter arrays are bound empty.
        let inserted: Vec<Change> = sqlx::query_file_as!(
            Change,
            "../ingest-worker/src/sql/store_batch.sql",
            &ids as &[&str],
            &froms as &[&str],
            &tos as &[&str],
            &ts,
            &ts_raw as &[&str],
            &texts as &[Option<&str>],
            &seqs,
            &msg_types as &[Option<&str>],
            no_opt as &[Option<&str>],
            no_i64,
            no_text as &[&str],
            no_bytes as &[&[u8]],
            no_text as &[&str],
            no_opt as &[Option<&str>],
            no_text as &[&str],
            no_text as &[&str],
            no_i32,
            no_opt as &[Option<&str>],
            no_opt as &[Option<&str>]
        )
        .fetch_all(&mut *tx)
        .await?;
        let inserted: Changes = inserted.into_iter().collect();
        if mode == Mode::WithUpkeep {
            upkeep::apply(&mut tx, &inserted, Direction::Added).await?;
        }
        tx.commit().await?;
        stored += inserted.len() as u64;
    }
    Ok(stored)
}
