//! Postgres pools and the schema.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::config::SecretUrl;

pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// A pool that connects on first use, so a binary starts (and reports not-ready) while Postgres
/// is still down instead of refusing to start.
pub fn lazy_pool(
    url: &SecretUrl,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.expose().parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options))
}

/// Applies pending migrations. sqlx holds an advisory lock meanwhile, so several processes
/// starting together is safe.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Applies migrations, retrying with backoff until Postgres answers or `cancel` fires.
pub async fn migrate_with_retry(pool: &PgPool, cancel: &tokio_util::sync::CancellationToken) {
    let mut delays = crate::nats::backoff_delays();
    loop {
        match migrate(pool).await {
            Ok(()) => {
                tracing::info!("database schema is up to date");
                return;
            }
            Err(error) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "migration failed");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// True when Postgres answers and the newest migration this binary knows is applied.
pub async fn schema_ready(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let Some(latest) = MIGRATOR.iter().map(|m| m.version).max() else {
        return Ok(true);
    };
    let applied: Option<bool> =
        sqlx::query_scalar("SELECT success FROM _sqlx_migrations WHERE version = $1")
            .bind(latest)
            .fetch_optional(pool)
            .await
            .or_else(|e| match &e {
                // 42P01: the migrations table does not exist yet.
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => Ok(None),
                _ => Err(e),
            })?;
    Ok(applied == Some(true))
}
