//! Liveness and readiness, the same report for both binaries: each plugs in its own checks
//! ([`Readiness`]); the body, the status code, the `*_ready` gauge and the probe that keeps the
//! gauges current are here.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use axum::http::StatusCode;
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::search_index::IndexState;

/// Longest a single check may take, so `/health/ready` answers even when a dependency hangs.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health/live`: the process answers HTTP.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LiveBody {
    /// Always `alive`.
    #[schema(example = "alive")]
    pub status: &'static str,
}

impl LiveBody {
    pub const ALIVE: LiveBody = LiveBody { status: "alive" };
}

/// `GET /health/ready`. The fields are in alphabetical order, the order the body has always had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReadyBody {
    /// Every check by name: `ok`, or why it fails.
    #[schema(example = json!({"database": "ok", "stream": "nats disconnected"}))]
    pub checks: BTreeMap<&'static str, &'static str>,
    /// The names of the failing checks, in the order they run; empty when ready.
    #[schema(example = json!(["stream"]))]
    pub missing: Vec<&'static str>,
    /// The gateway's read replica (`DATABASE_READ_URL`) at its last check, made every second.
    /// Informational: a lagging replica makes reads wait (or answer `stale`), an unreachable one
    /// sends them to the primary; neither makes the gateway not-ready. Absent when the read URL
    /// is `DATABASE_URL`, and on the worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_replica: Option<ReadReplicaReport>,
    /// The trigram search index as the database has it (`SEARCH_INDEX`, docs/operations.md):
    /// `trigram`, `none`, `building` or `invalid`. Informational: it never makes the binary
    /// not-ready. Absent when Postgres cannot say (unreachable, or the schema not yet applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "trigram")]
    pub search_index: Option<IndexState>,
    pub status: ReadyStatus,
}

/// `/health/ready`'s `read_replica`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReadReplicaReport {
    /// `replica` (replaying the primary's WAL: reads wait for it), `primary` (not in recovery,
    /// e.g. promoted: reads do not wait), `unreachable` (reads go to the primary) or `unknown`
    /// (not checked yet).
    #[schema(example = "replica")]
    pub role: &'static str,
    /// WAL the primary had written and the replica had not replayed. Null unless `replica`.
    #[schema(example = 0)]
    pub lag_bytes: Option<i64>,
    /// How long ago the newest transaction the replica replayed committed, 0 when it had
    /// replayed everything. Null unless `replica`, or before it replayed any transaction.
    #[schema(example = 0)]
    pub lag_ms: Option<u64>,
    /// True while reads are served by the primary because the replica cannot be reached.
    pub fallback: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    NotReady,
}

/// One named check: `Err` says why it fails.
pub type Check = (&'static str, Result<(), &'static str>);

/// What a binary's state offers the shared report.
pub trait Readiness: Clone + Send + Sync + 'static {
    /// The gauge that is 1 while `/health/ready` answers 200 (`gateway_ready`, `worker_ready`).
    const GAUGE: &'static str;

    /// This binary's checks, in the order the report lists the failing ones.
    fn checks(&self) -> impl Future<Output = Vec<Check>> + Send;

    /// The search index's state for the body; `None` leaves the field out.
    fn search_index(&self) -> impl Future<Output = Option<IndexState>> + Send {
        async { None }
    }

    /// The read replica's last check for the body; `None` leaves the field out.
    fn read_replica(&self) -> Option<ReadReplicaReport> {
        None
    }

    /// Gauges of this binary's own that the probe refreshes along with readiness.
    fn refresh(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

impl ReadyBody {
    pub fn from_checks(checks: &[Check]) -> Self {
        let missing: Vec<&'static str> = checks
            .iter()
            .filter(|(_, result)| result.is_err())
            .map(|(name, _)| *name)
            .collect();
        Self {
            checks: checks
                .iter()
                .map(|(name, result)| (*name, result.err().unwrap_or("ok")))
                .collect(),
            status: if missing.is_empty() {
                ReadyStatus::Ready
            } else {
                ReadyStatus::NotReady
            },
            missing,
            read_replica: None,
            search_index: None,
        }
    }

    pub fn status_code(&self) -> StatusCode {
        match self.status {
            ReadyStatus::Ready => StatusCode::OK,
            ReadyStatus::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Runs the checks and records the outcome in the binary's `*_ready` gauge.
pub async fn report<S: Readiness>(state: &S) -> ReadyBody {
    let (checks, search_index) = tokio::join!(state.checks(), state.search_index());
    let mut body = ReadyBody::from_checks(&checks);
    body.search_index = search_index;
    body.read_replica = state.read_replica();
    let ready = body.status == ReadyStatus::Ready;
    metrics::gauge!(S::GAUGE).set(if ready { 1.0 } else { 0.0 });
    body
}

/// Keeps the `*_ready` gauge and the binary's own gauges current even when nothing calls
/// `/health/ready`, so an alert on them does not depend on who probes the binary.
pub async fn probe<S: Readiness>(state: S, every: Duration, cancel: CancellationToken) {
    loop {
        state.refresh().await;
        let _ = report(&state).await;
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// The migrations are applied and Postgres answers.
pub async fn database(db: &PgPool) -> Result<(), &'static str> {
    match tokio::time::timeout(CHECK_TIMEOUT, crate::db::schema_ready(db)).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err("schema not applied"),
        Ok(Err(_)) | Err(_) => Err("postgres unreachable"),
    }
}

/// The search index's state, `None` when Postgres does not answer in time or has no schema yet.
pub async fn search_index(db: &PgPool) -> Option<IndexState> {
    match tokio::time::timeout(CHECK_TIMEOUT, crate::search_index::state(db)).await {
        Ok(Ok(state)) => state,
        Ok(Err(_)) | Err(_) => None,
    }
}

pub fn nats_connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bodies_keep_their_shape() {
        let ready = ReadyBody::from_checks(&[("database", Ok(())), ("stream", Ok(()))]);
        assert_eq!(ready.status_code(), StatusCode::OK);
        assert_eq!(
            serde_json::to_string(&ready).unwrap(),
            r#"{"checks":{"database":"ok","stream":"ok"},"missing":[],"status":"ready"}"#
        );
        let not_ready = ReadyBody::from_checks(&[
            ("secret", Err("WEBHOOK_SECRET is not set")),
            ("database", Ok(())),
            ("stream", Err("nats disconnected")),
        ]);
        assert_eq!(not_ready.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            serde_json::to_string(&not_ready).unwrap(),
            concat!(
                r#"{"checks":{"database":"ok","secret":"WEBHOOK_SECRET is not set","#,
                r#""stream":"nats disconnected"},"missing":["secret","stream"],"#,
                r#""status":"not_ready"}"#
            )
        );
        // The search index's state goes between `missing` and `status`, keeping the order.
        let with_index = ReadyBody {
            search_index: Some(IndexState::Building),
            ..ready
        };
        assert_eq!(with_index.status_code(), StatusCode::OK);
        assert_eq!(
            serde_json::to_string(&with_index).unwrap(),
            concat!(
                r#"{"checks":{"database":"ok","stream":"ok"},"missing":[],"#,
                r#""search_index":"building","status":"ready"}"#
            )
        );
        // The read replica's report goes between `missing` and `search_index`.
        let with_replica = ReadyBody {
            read_replica: Some(ReadReplicaReport {
                role: "replica",
                lag_bytes: Some(120),
                lag_ms: None,
                fallback: false,
            }),
            ..with_index
        };
        assert_eq!(
            serde_json::to_string(&with_replica).unwrap(),
            concat!(
                r#"{"checks":{"database":"ok","stream":"ok"},"missing":[],"#,
                r#""read_replica":{"role":"replica","lag_bytes":120,"lag_ms":null,"#,
                r#""fallback":false},"search_index":"building","status":"ready"}"#
            )
        );
        assert_eq!(
            serde_json::to_string(&LiveBody::ALIVE).unwrap(),
            r#"{"status":"alive"}"#
        );
    }
}
