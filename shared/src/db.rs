//! Postgres pools and the schema.

use std::time::Duration;

use secrecy::ExposeSecret;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::config::{ConfigError, DEFAULT_DATABASE_URL, Env, SecretUrl, secret, secret_or};

pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// `DATABASE_URL` (or `DATABASE_URL_FILE`, the whole URL from a file, as CloudNativePG's `uri`
/// key holds it), with `DATABASE_PASSWORD` (or `_FILE`) applied when the URL carries none: the
/// URL can then sit in a ConfigMap and only the password in a Secret.
pub fn url_from_env(env: &dyn Env) -> Result<SecretUrl, ConfigError> {
    let url = secret_or(env, "DATABASE_URL", Some(DEFAULT_DATABASE_URL))?;
    let url = url
        .as_ref()
        .map_or(DEFAULT_DATABASE_URL, |u| u.expose_secret());
    with_password(env, "DATABASE_URL", url)
}

/// `DATABASE_READ_URL` (or `_FILE`) with the same password rule; unset, `primary`.
pub fn read_url_from_env(env: &dyn Env, primary: &SecretUrl) -> Result<SecretUrl, ConfigError> {
    match secret_or(env, "DATABASE_READ_URL", Some("DATABASE_URL"))? {
        Some(url) => with_password(env, "DATABASE_READ_URL", url.expose_secret()),
        None => Ok(primary.clone()),
    }
}

fn with_password(env: &dyn Env, name: &str, url: &str) -> Result<SecretUrl, ConfigError> {
    let password = secret(env, "DATABASE_PASSWORD")?;
    if password.is_some() && carries_password(url) {
        return Err(ConfigError::Var {
            name: format!("{name} and DATABASE_PASSWORD"),
            reason: "the URL carries a password and DATABASE_PASSWORD is set; set one".into(),
        });
    }
    Ok(SecretUrl::new(url).with_password(password))
}

/// Whether a Postgres URL holds a password, in its user info or as `?password=`. A URL that does
/// not parse holds none here; sqlx then names what is wrong with it when the pool is built.
fn carries_password(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|url| {
        url.password().is_some_and(|p| !p.is_empty())
            || url.query_pairs().any(|(key, _)| key == "password")
    })
}

/// The options a pool connects with: the URL, and the password given apart from it.
pub fn connect_options(url: &SecretUrl) -> Result<PgConnectOptions, sqlx::Error> {
    let options: PgConnectOptions = url.expose().parse()?;
    Ok(match url.expose_password() {
        Some(password) => options.password(password),
        None => options,
    })
}

/// A pool that connects on first use, so a binary starts (and reports not-ready) while Postgres
/// is still down instead of refusing to start.
pub fn lazy_pool(
    url: &SecretUrl,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options = connect_options(url)?;
    Ok(pool_options(&options)
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options))
}

/// What every pool of ours starts from.
///
/// sqlx 0.9.0 opens its TCP connections without `TCP_NODELAY` (launchbadge/sqlx#4335: the option
/// was dropped by #4022; the fix, #4336, is merged but in no release yet). A statement too large
/// for one socket write, which is every worker batch (tens to hundreds of kB of arrays), then
/// has its last piece held back by Nagle's algorithm until the server's delayed ACK, ~40 ms
/// later. Measured (BENCHMARKS.md): a worker batch of 100 rows committed in 61 ms over TCP and
/// in 21 ms over a Unix socket. Until a sqlx release sets the option again, each new connection
/// sets it itself; remove `after_connect` with that upgrade. (Not a `[patch]` of sqlx-core: that
/// means vendoring the crate, and the Docker build's cargo-chef stage stubs out path crates.)
pub fn pool_options(connect: &PgConnectOptions) -> PgPoolOptions {
    let options = PgPoolOptions::new();
    // sqlx takes a host that is a path (from the URL or PGHOST) as a Unix socket: no Nagle there.
    let unix_socket = connect.get_socket().is_some() || connect.get_host().starts_with('/');
    if unix_socket || !cfg!(target_os = "linux") {
        return options;
    }
    let port = connect.get_port();
    options.after_connect(move |_conn, _meta| {
        Box::pin(async move {
            let sockets = nodelay::set_on_sockets_to(port);
            if sockets == 0 {
                // At least the new connection is a TCP socket to `port`: finding none means
                // /proc is not readable here, and large statements wait for delayed ACKs again.
                tracing::warn!(port, "could not set TCP_NODELAY on the database connection");
            } else {
                tracing::debug!(sockets, port, "TCP_NODELAY set on the database connections");
            }
            Ok(())
        })
    })
}

#[cfg(target_os = "linux")]
pub mod nodelay {
    use std::os::fd::{BorrowedFd, RawFd};

    /// The process's open descriptors (none when /proc cannot be read).
    fn descriptors() -> impl Iterator<Item = RawFd> {
        std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<RawFd>().ok())
    }

    /// Runs `f` on descriptor `fd` as a socket.
    fn with_socket<T>(fd: RawFd, f: impl FnOnce(socket2::SockRef<'_>) -> T) -> T {
        // SAFETY: `borrow_raw` asks that the descriptor stay open while borrowed, and another
        // thread may close it during the walk. That breaks the letter of the contract but not
        // memory safety: the descriptor is only passed to getpeername/getsockopt/setsockopt,
        // never closed, read or written. A closed number makes those calls fail (EBADF); a
        // number reused meanwhile names a new file that is checked like any other.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        f(socket2::SockRef::from(&fd))
    }

    /// Sets `TCP_NODELAY` on every TCP socket of this process whose peer port is `port`: the
    /// new connection, the pool's earlier ones (which have it already), and any other client's
    /// connection to that port, which only makes it send sooner. Returns how many.
    pub fn set_on_sockets_to(port: u16) -> usize {
        descriptors()
            .filter(|&fd| {
                with_socket(fd, |socket| {
                    let to_port = socket
                        .peer_addr()
                        .ok()
                        .and_then(|addr| addr.as_socket())
                        .is_some_and(|addr| addr.port() == port);
                    to_port && socket.set_tcp_nodelay(true).is_ok()
                })
            })
            .count()
    }

    /// Whether this process's TCP connection from local port `local` to port `peer` has
    /// `TCP_NODELAY`; `None` when there is no such connection. The tests ask with the ports the
    /// server saw (`inet_client_port()`, `inet_server_port()`).
    pub fn on_connection(local: u16, peer: u16) -> Option<bool> {
        descriptors().find_map(|fd| {
            with_socket(fd, |socket| {
                let ours = socket.local_addr().ok()?.as_socket()?.port();
                let theirs = socket.peer_addr().ok()?.as_socket()?.port();
                (ours == local && theirs == peer).then(|| socket.tcp_nodelay().unwrap_or(false))
            })
        })
    }
}

/// Elsewhere the descriptors cannot be listed: `pool_options` installs no hook, and the
/// connections keep sqlx's default. This stub only lets that code compile.
#[cfg(not(target_os = "linux"))]
pub mod nodelay {
    pub fn set_on_sockets_to(_port: u16) -> usize {
        0
    }
}

/// Applies pending migrations. sqlx holds an advisory lock meanwhile, so several processes
/// starting together is safe.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Applies migrations, retrying on the shared schedule (crate::retry) until Postgres answers or
/// `cancel` fires.
pub async fn migrate_with_retry(pool: &PgPool, cancel: &tokio_util::sync::CancellationToken) {
    let migrated = crate::retry::until_ok(
        crate::retry::Backoff::new(),
        cancel,
        || migrate(pool),
        |error, delay| {
            tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "migration failed");
        },
    )
    .await;
    if migrated.is_some() {
        tracing::info!("database schema is up to date");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_password_applies_to_urls_without_one() {
        let vars = env(&[
            ("DATABASE_URL", "postgres://app@db/ingest"),
            ("DATABASE_READ_URL", "postgres://app@replica/ingest"),
            ("DATABASE_PASSWORD", "hunter2"),
        ]);
        let primary = url_from_env(&vars).unwrap();
        let read = read_url_from_env(&vars, &primary).unwrap();
        for url in [&primary, &read] {
            assert_eq!(url.expose_password(), Some("hunter2"));
            let options = format!("{:?}", connect_options(url).unwrap());
            assert!(options.contains("hunter2"), "{options}");
            assert!(!format!("{url:?}").contains("hunter2"));
        }
        let unset = env(&[("DATABASE_URL", "postgres://app@db/ingest")]);
        let same = read_url_from_env(&unset, &url_from_env(&unset).unwrap()).unwrap();
        assert_eq!(same.expose(), "postgres://app@db/ingest");
        assert_eq!(same.expose_password(), None);
    }

    #[test]
    fn a_url_with_a_password_and_database_password_is_an_error_naming_both() {
        for url in [
            "postgres://app:pw@db/ingest",
            "postgres://app@db/ingest?password=pw",
        ] {
            let vars = env(&[("DATABASE_URL", url), ("DATABASE_PASSWORD", "hunter2")]);
            let err = url_from_env(&vars).unwrap_err().to_string();
            assert!(err.contains("DATABASE_URL and DATABASE_PASSWORD"), "{err}");
            assert!(!err.contains("hunter2") && !err.contains("pw@"), "{err}");
        }
        let vars = env(&[
            ("DATABASE_URL", "postgres://app@db/ingest"),
            ("DATABASE_READ_URL", "postgres://app:pw@replica/ingest"),
            ("DATABASE_PASSWORD", "hunter2"),
        ]);
        let primary = url_from_env(&vars).unwrap();
        let err = read_url_from_env(&vars, &primary).unwrap_err().to_string();
        assert!(
            err.contains("DATABASE_READ_URL and DATABASE_PASSWORD"),
            "{err}"
        );
    }
}
