//! Read replicas under read-your-writes. With `DATABASE_READ_URL` on a streaming replica, the
//! JetStream watermark (consistency.rs) only says the primary committed; the read must also
//! wait until the replica has replayed that commit.
//!
//! After its watermark passed, a read takes the primary's WAL position (`pg_current_wal_lsn()`)
//! from a query sent after that moment, then waits until the replica's replay position
//! (`pg_last_wal_replay_lsn()`) reaches it. Both are shared: one primary query serves every read
//! that asked before it was sent (flight.rs), and one poll of the replica at a time wakes every
//! read whose position it reached. Replay positions only grow, so any poll at or past a read's
//! position proves the replica has its rows, however old the poll.
//!
//! The server behind `DATABASE_READ_URL` is watched, not assumed: a primary there (one promoted
//! by a failover, or a URL that never pointed at a replica) needs no wait, and one that cannot be
//! reached sends reads to the primary, on a pool of their own, until it answers again.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use ingest_shared::health::{CHECK_TIMEOUT, ReadReplicaReport};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, PgPool};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::flight::Flights;
use crate::metrics;
use crate::state::AppState;

/// How often the read side is checked while no read waits for it: its role, whether it answers,
/// and its lag for the gauges and `/health/ready`.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Back-to-back polls while reads wait for the replica to replay their position: a read waits at
/// most this much longer than the replay itself, and the replica answers a bounded rate of polls.
const POLL_GAP: Duration = Duration::from_millis(5);

/// Why a read went to the primary instead of the replica; the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The connection failed or broke, or the replica refused the query.
    Unreachable,
    /// No answer within the check timeout.
    Timeout,
}

impl Fallback {
    pub const ALL: [Fallback; 2] = [Fallback::Unreachable, Fallback::Timeout];

    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Unreachable => "unreachable",
            Fallback::Timeout => "timeout",
        }
    }
}

/// Where one read request queries. The consistency layer decides it once per request (so the
/// database a read waited for is the one it reads) and leaves it in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `DATABASE_READ_URL`.
    ReadUrl,
    /// The primary, because the read URL's server cannot be reached.
    Primary(Fallback),
}

/// What the server behind `DATABASE_READ_URL` was at the last check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Not checked yet.
    Unknown,
    /// Replaying a primary's WAL: reads wait for it.
    Replica,
    /// Not in recovery: every commit it reports is its own, nothing to wait for.
    Primary,
    Unreachable(Fallback),
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    role: Role,
    /// The replay position at the last poll that answered.
    replayed: i64,
    /// At the last periodic check: WAL the primary had and the replica had not replayed, and
    /// for how long (zero when it had everything).
    lag: Option<(i64, Option<Duration>)>,
}

struct ReadSide {
    in_recovery: bool,
    replayed: Option<i64>,
    replay_age_secs: Option<f64>,
}

struct PrimaryLsn {
    lsn: i64,
}

/// The read API's databases and which one a read goes to; cheap to clone.
#[derive(Clone)]
pub struct ReadReplica(Arc<Shared>);

struct Shared {
    /// `DATABASE_READ_URL`'s pool.
    read_db: PgPool,
    /// `None` when the read URL is the primary's, which needs neither a wait nor a fallback.
    watched: Option<Watched>,
}

struct Watched {
    /// The fallback: the primary with the read pool's settings.
    primary_reads: PgPool,
    /// Where the primary's WAL position is asked (the gateway's own pool).
    primary: PgPool,
    positions: Flights<i64>,
    seen: watch::Sender<Seen>,
    /// Reads waiting for the replica to replay their position; the poller polls while any do.
    waiting: AtomicUsize,
    wake: Notify,
}

impl ReadReplica {
    /// The read URL is the primary's: reads go there and never wait for a replica.
    pub fn same_as_primary(read_db: PgPool) -> Self {
        Self(Arc::new(Shared {
            read_db,
            watched: None,
        }))
    }

    /// A read URL of its own, watched until `cancel` fires: `read_options` for its checks (a
    /// connection of their own, so a dead replica fails them at once rather than after the
    /// pool's acquire timeout), `primary_reads` for reads while it cannot be reached, `primary`
    /// for the WAL position.
    pub fn spawn(
        read_db: PgPool,
        read_options: PgConnectOptions,
        primary_reads: PgPool,
        primary: PgPool,
        cancel: CancellationToken,
    ) -> Self {
        let (seen, _) = watch::channel(Seen {
            role: Role::Unknown,
            replayed: 0,
            lag: None,
        });
        let replica = Self(Arc::new(Shared {
            read_db,
            watched: Some(Watched {
                primary_reads,
                primary,
                positions: Flights::new(),
                seen,
                waiting: AtomicUsize::new(0),
                wake: Notify::new(),
            }),
        }));
        tokio::spawn(ask_primary(replica.clone(), cancel.clone()));
        tokio::spawn(poll_read_side(replica.clone(), read_options, cancel));
        replica
    }

    fn watched(&self) -> Option<&Watched> {
        self.0.watched.as_ref()
    }

    /// Where a read that does not wait goes (opted out, or its watermark did not pass).
    pub fn source(&self) -> Source {
        match self.watched().map(|w| w.seen.borrow().role) {
            Some(Role::Unreachable(reason)) => Source::Primary(reason),
            _ => Source::ReadUrl,
        }
    }

    pub fn pool(&self, source: Source) -> &PgPool {
        match (source, self.watched()) {
            (Source::Primary(_), Some(watched)) => &watched.primary_reads,
            _ => &self.0.read_db,
        }
    }

    /// For a read whose watermark has passed: waits until a database it can read holds every
    /// commit the primary had made by now, and says which. `None`: the primary's position could
    /// not be had, so the replica cannot be known to be current. The caller bounds the wait.
    pub async fn caught_up(&self) -> Option<Source> {
        let Some(watched) = self.watched() else {
            return Some(Source::ReadUrl);
        };
        match watched.seen.borrow().role {
            Role::Primary => return Some(Source::ReadUrl),
            Role::Unreachable(reason) => return Some(Source::Primary(reason)),
            Role::Unknown | Role::Replica => {}
        }
        let target = watched.positions.next().await?;
        let mut seen = watched.seen.subscribe();
        let reached = |s: &Seen| match s.role {
            Role::Replica => s.replayed >= target,
            Role::Unknown => false,
            Role::Primary | Role::Unreachable(_) => true,
        };
        if !reached(&seen.borrow_and_update()) {
            let _waiting = Waiting::enter(watched);
            seen.wait_for(reached).await.ok()?;
        }
        let role = seen.borrow().role;
        Some(match role {
            Role::Unreachable(reason) => Source::Primary(reason),
            _ => Source::ReadUrl,
        })
    }

    /// For `/health/ready`: the last check, without a query of its own. `None` when the read
    /// URL is the primary's.
    pub fn report(&self) -> Option<ReadReplicaReport> {
        let seen = *self.watched()?.seen.borrow();
        let (role, fallback) = match seen.role {
            Role::Unknown => ("unknown", false),
            Role::Replica => ("replica", false),
            Role::Primary => ("primary", false),
            Role::Unreachable(_) => ("unreachable", true),
        };
        let lag = seen.lag.filter(|_| seen.role == Role::Replica);
        Some(ReadReplicaReport {
            role,
            lag_bytes: lag.map(|(bytes, _)| bytes),
            lag_ms: lag
                .and_then(|(_, age)| age)
                .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            fallback,
        })
    }
}

/// Counts a read in `waiting` for as long as it waits, also when its wait is cut short.
struct Waiting<'a>(&'a Watched);

impl<'a> Waiting<'a> {
    fn enter(watched: &'a Watched) -> Self {
        watched.waiting.fetch_add(1, Ordering::SeqCst);
        watched.wake.notify_one();
        Self(watched)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `positions`: one `pg_current_wal_lsn()` on the primary at a time.
async fn ask_primary(replica: ReadReplica, cancel: CancellationToken) {
    let Some(watched) = replica.watched() else {
        return;
    };
    while let Some(ticket) = watched.positions.pending(&cancel).await {
        let query = sqlx::query_file_as!(PrimaryLsn, "src/replica/primary_lsn.sql")
            .fetch_one(&watched.primary);
        let lsn = match tokio::time::timeout(CHECK_TIMEOUT, query).await {
            Ok(Ok(row)) => Some(row.lsn),
            Ok(Err(error)) => {
                tracing::debug!(%error, "primary WAL position");
                None
            }
            Err(_) => None,
        };
        watched.positions.answer(ticket, lsn);
    }
}

/// Checks the read side every [`CHECK_EVERY`] (with the primary's position, for the lag), and
/// back to back while reads wait for it.
async fn poll_read_side(
    replica: ReadReplica,
    options: PgConnectOptions,
    cancel: CancellationToken,
) {
    let Some(watched) = replica.watched() else {
        return;
    };
    let mut connection = None;
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut periodic = tokio::select! {
            () = cancel.cancelled() => return,
            _ = every.tick() => true,
            () = watched.wake.notified() => false,
        };
        loop {
            let sent = Instant::now();
            // Asked before the replica, so the lag is never overstated.
            let primary = if periodic {
                tokio::time::timeout(CHECK_TIMEOUT, watched.positions.next())
                    .await
                    .ok()
                    .flatten()
            } else {
                None
            };
            let answer = check(&mut connection, &options).await;
            publish(watched, answer, primary);
            periodic = false;
            let polling = watched.seen.borrow().role == Role::Replica;
            if !polling || watched.waiting.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until((sent + POLL_GAP).into()) => {}
            }
        }
    }
}

/// One poll of the read side on the checks' own connection, opened again after a failure.
async fn check(
    connection: &mut Option<PgConnection>,
    options: &PgConnectOptions,
) -> Result<ReadSide, (Fallback, String)> {
    let attempt = async {
        let conn = match connection {
            Some(conn) => conn,
            None => connection.insert(options.connect().await?),
        };
        sqlx::query_file_as!(ReadSide, "src/replica/read_side.sql")
            .fetch_one(conn)
            .await
    };
    let result = match tokio::time::timeout(CHECK_TIMEOUT, attempt).await {
        Ok(Ok(row)) => return Ok(row),
        Ok(Err(error)) => Err((Fallback::Unreachable, error.to_string())),
        Err(_) => Err((Fallback::Timeout, "timed out".to_owned())),
    };
    *connection = None;
    result
}

/// Records a poll's answer for the waiting reads, the gauges and the report, and logs changes
/// of role (not every poll).
fn publish(watched: &Watched, answer: Result<ReadSide, (Fallback, String)>, primary: Option<i64>) {
    let before = *watched.seen.borrow();
    let mut seen = before;
    match answer {
        Ok(side) => {
            seen.role = if side.in_recovery {
                Role::Replica
            } else {
                Role::Primary
            };
            seen.replayed = side.replayed.unwrap_or(0);
            if let Some(primary) = primary {
                seen.lag = Some(if seen.role == Role::Primary {
                    (0, Some(Duration::ZERO))
                } else {
                    let bytes = (primary - seen.replayed).max(0);
                    let age = if bytes == 0 {
                        Some(Duration::ZERO)
                    } else {
                        side.replay_age_secs
                            .and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok())
                    };
                    (bytes, age)
                });
            }
        }
        Err((reason, ref error)) => {
            seen.role = Role::Unreachable(reason);
            if !matches!(before.role, Role::Unreachable(_)) {
                tracing::warn!(%error, "read replica unreachable: reads go to the primary");
            }
        }
    }
    match (before.role, seen.role) {
        (Role::Unreachable(_), Role::Replica | Role::Primary) => {
            tracing::info!("read replica answers again: reads go back to it");
        }
        (Role::Unknown | Role::Replica, Role::Primary) => tracing::warn!(
            "DATABASE_READ_URL is not in recovery: reads no longer wait for a replica to replay"
        ),
        (Role::Unknown | Role::Primary, Role::Replica) => {
            tracing::info!("DATABASE_READ_URL is a streaming replica: reads wait for its replay");
        }
        _ => {}
    }
    if let (Some((bytes, age)), Role::Replica | Role::Primary) = (seen.lag, seen.role) {
        metrics::read_replica_lag(bytes, age);
    }
    metrics::read_replica_falling_back(matches!(seen.role, Role::Unreachable(_)));
    watched.seen.send_replace(seen);
}

/// The pool a read handler queries: the one its consistency wait chose.
pub struct ReadDb(pub PgPool);

impl FromRequestParts<AppState> for ReadDb {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let source = parts
            .extensions
            .get::<Source>()
            .copied()
            .unwrap_or_else(|| state.replica.source());
        Ok(Self(state.replica.pool(source).clone()))
    }
}

impl std::ops::Deref for ReadDb {
    type Target = PgPool;
    fn deref(&self) -> &PgPool {
        &self.0
    }
}
