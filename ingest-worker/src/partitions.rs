//! Partitions of `messages` by time, created by the worker itself: the one of the current
//! interval and `PARTITIONS_AHEAD` more, at start and every `PARTITION_CHECK_INTERVAL_SECS`, so
//! no operator job has to remember it. The work is one server-side function
//! (`ensure_message_partitions`, migration 20261204000009) under an advisory lock, so several
//! workers create each partition once. Rows outside every partition land in `messages_default`
//! and are moved into their partition when it is created. Retention drops whole expired
//! partitions (retention.rs).

use std::time::Duration;

use ingest_shared::config::{ConfigError, Env, one_of, parse_in_range, secs_or};
use ingest_shared::retry::{self, Backoff};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metrics::PARTITIONS_CREATED;

/// The width of one partition (`PARTITION_INTERVAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionInterval {
    Day,
    Week,
    Month,
}

impl PartitionInterval {
    pub const NAMES: [&'static str; 3] = ["day", "week", "month"];

    /// As `date_trunc` and the server-side function name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSettings {
    pub interval: PartitionInterval,
    /// Partitions kept ready after the current one.
    pub ahead: u32,
    /// Time between two checks.
    pub check_every: Duration,
}

impl PartitionSettings {
    /// Month by default: a month's partition holds a few hundred million rows at most at the
    /// rates this service is sized for, a year of retention is a dozen partitions (each query
    /// without a time range visits every partition), and retention, which drops a partition only
    /// once all of it has expired, keeps at most a month more than `RETENTION_DAYS`; the
    /// straddling month's expired rows are deleted row by row as before. Day or week suit a short
    /// retention or a very high rate (docs/scaling.md).
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let interval = match one_of(
            env,
            "PARTITION_INTERVAL",
            "month",
            &PartitionInterval::NAMES,
        )? {
            "day" => PartitionInterval::Day,
            "week" => PartitionInterval::Week,
            _ => PartitionInterval::Month,
        };
        Ok(Self {
            interval,
            ahead: parse_in_range(env, "PARTITIONS_AHEAD", 2, 1..=366)?,
            check_every: secs_or(env, "PARTITION_CHECK_INTERVAL_SECS", 3600, 1..=86_400)?,
        })
    }
}

/// Creates the partitions missing now; returns their names.
pub async fn ensure(db: &PgPool, settings: &PartitionSettings) -> Result<Vec<String>, sqlx::Error> {
    // The whole statement, its parameters and its locks are described in the file.
    let created: Vec<String> = sqlx::query_file_scalar!(
        "src/sql/ensure_partitions.sql",
        settings.interval.as_str(),
        settings.ahead as i32
    )
    .fetch_all(db)
    .await?;
    metrics::counter!(PARTITIONS_CREATED).increment(created.len() as u64);
    for name in &created {
        tracing::info!(
            partition = name,
            interval = settings.interval.as_str(),
            "partition created"
        );
    }
    Ok(created)
}

/// Runs [`ensure`] now and every `check_every` until `cancel` fires; a failure (Postgres down)
/// is retried on the shared schedule, never waiting longer than a check interval. Start it after
/// the migrations.
pub async fn keep_ahead(db: PgPool, settings: PartitionSettings, cancel: CancellationToken) {
    tracing::info!(
        interval = settings.interval.as_str(),
        ahead = settings.ahead,
        check_every_s = settings.check_every.as_secs(),
        "partition upkeep enabled"
    );
    while !cancel.is_cancelled() {
        let done = retry::until_ok(
            Backoff::at_most(settings.check_every),
            &cancel,
            || ensure(&db, &settings),
            |error, delay| {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "partition upkeep failed");
            },
        )
        .await;
        if done.is_none() || Backoff::sleep(settings.check_every, &cancel).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn month_two_ahead_hourly_by_default_and_each_setting_is_read() {
        let settings = PartitionSettings::from_env(&env(&[])).unwrap();
        assert_eq!(
            settings,
            PartitionSettings {
                interval: PartitionInterval::Month,
                ahead: 2,
                check_every: Duration::from_secs(3600),
            }
        );
        let settings = PartitionSettings::from_env(&env(&[
            ("PARTITION_INTERVAL", "week"),
            ("PARTITIONS_AHEAD", "5"),
            ("PARTITION_CHECK_INTERVAL_SECS", "60"),
        ]))
        .unwrap();
        assert_eq!(settings.interval, PartitionInterval::Week);
        assert_eq!((settings.ahead, settings.check_every.as_secs()), (5, 60));
        assert!(PartitionSettings::from_env(&env(&[("PARTITION_INTERVAL", "year")])).is_err());
        assert!(PartitionSettings::from_env(&env(&[("PARTITIONS_AHEAD", "0")])).is_err());
    }
}
