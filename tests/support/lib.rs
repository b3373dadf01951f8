//! Test support: each test gets its own database, stream, subject and consumer on the real
//! Postgres and NATS, runs the real gateway and workers in-process on port 0, and drops
//! everything afterwards (also when the test fails).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod browser;
pub mod procs;
pub mod whatsapp;

pub const SECRET: &str = "test-secret-do-not-log";

pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL")
        .or_else(|_| std::env::var("NATS_URL"))
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A database URL on the test server; tests create their own database next to this one.
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let host_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[host_end..].find('/') {
        Some(slash) => &base[..host_end + slash],
        None => base,
    };
    format!("{base}/{db}{query}")
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub struct Running {
    pub addr: SocketAddr,
    stop: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits until `GET /health/ready` answers 200.
    pub async fn wait_ready(&self, http: &reqwest::Client, timeout: Duration) {
        let url = self.url("/health/ready");
        eventually(timeout, &format!("{url} ready"), || async {
            let response = http.get(&url).send().await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
    }

    /// Stops the app as SIGTERM would and waits for it to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.handle.take() {
            Some(handle) => handle.await?,
            None => Ok(()),
        }
    }
}

/// The Prometheus text an app serves at `/metrics`.
pub async fn scrape_metrics(http: &reqwest::Client, app: &Running) -> String {
    scrape_metrics_at(http, app.url("/metrics")).await
}

/// The Prometheus text served at `url` (a binary started as a process: `gateway.url("/metrics")`).
pub async fn scrape_metrics_at(http: &reqwest::Client, url: String) -> String {
    http.get(url)
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of one series (`name{labels}` exactly as rendered) in Prometheus text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub struct TestEnv {
    pub id: String,
    pub stream: String,
    pub subject: String,
    pub consumer: String,
    pub database_name: String,
    pub database_url: String,
    pub db: PgPool,
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub http: reqwest::Client,
}

impl TestEnv {
    pub async fn new() -> Self {
        init_test_logging();
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let database_name = format!("ingest_test_{id}");
        let admin = admin_database_url();
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("test Postgres must be running (scripts/test.sh starts it)");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{database_name}\""
        )))
        .execute(&mut conn)
        .await
        .expect("create test database");
        let database_url = with_database(&admin, &database_name);
        let db = PgPool::connect(&database_url)
            .await
            .expect("connect test db");
        ingest_shared::db::migrate(&db)
            .await
            .expect("migrate test db");
        let nats = async_nats::connect(nats_url())
            .await
            .expect("test NATS must be running (scripts/test.sh starts it)");
        let js = jetstream::new(nats.clone());
        Self {
            stream: format!("TEST_{}", id.to_uppercase()),
            subject: format!("test.{id}.messages"),
            consumer: format!("worker-{id}"),
            id,
            database_name,
            database_url,
            db,
            nats,
            js,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }

    /// The environment both binaries would see, before per-test overrides.
    pub fn vars(&self) -> HashMap<String, String> {
        [
            ("WEBHOOK_SECRET", SECRET.to_owned()),
            ("DATABASE_URL", self.database_url.clone()),
            ("NATS_URL", nats_url()),
            ("NATS_STREAM", self.stream.clone()),
            ("NATS_SUBJECT", self.subject.clone()),
            ("NATS_CONSUMER", self.consumer.clone()),
            ("NATS_MAX_BYTES", (64u64 << 20).to_string()),
            ("GATEWAY_ADDR", "127.0.0.1:0".to_owned()),
            ("WORKER_ADDR", "127.0.0.1:0".to_owned()),
            ("BATCH_WAIT_MS", "10".to_owned()),
            ("ACK_WAIT_SECS", "5".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    pub fn gateway_config(&self, overrides: &[(&str, &str)]) -> ingest_gateway::Config {
        let vars = apply(self.vars(), overrides);
        ingest_gateway::Config::from_env(&vars).expect("gateway config")
    }

    pub fn worker_config(&self, overrides: &[(&str, &str)]) -> ingest_worker::Config {
        let vars = apply(self.vars(), overrides);
        ingest_worker::Config::from_env(&vars).expect("worker config")
    }

    pub async fn start_gateway(&self, config: ingest_gateway::Config) -> Running {
        let app = ingest_gateway::Application::build(config)
            .await
            .expect("build gateway");
        let addr = app.local_addr();
        let stop = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));
        Running {
            addr,
            stop,
            handle: Some(handle),
        }
    }

    pub async fn start_worker(&self, config: ingest_worker::Config) -> Running {
        let app = ingest_worker::Application::build(config)
            .await
            .expect("build worker");
        let addr = app.local_addr();
        let stop = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));
        Running {
            addr,
            stop,
            handle: Some(handle),
        }
    }

    pub async fn post_signed(&self, gateway: &Running, body: &str) -> reqwest::Response {
        let signature = ingest_shared::signature::sign(SECRET.as_bytes(), body.as_bytes());
        self.http
            .post(gateway.url("/webhook"))
            .header("content-type", "application/json")
            .header("x-signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .expect("post webhook")
    }

    /// Every stored message id, in id order.
    pub async fn message_ids(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT message_id FROM messages ORDER BY message_id")
            .fetch_all(&self.db)
            .await
            .expect("read message ids")
    }

    pub async fn row_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM messages")
            .fetch_one(&self.db)
            .await
            .expect("count rows")
    }

    pub async fn wait_for_rows(&self, n: i64) {
        eventually(Duration::from_secs(30), &format!("{n} rows"), || async {
            (self.row_count().await >= n).then_some(())
        })
        .await;
    }

    /// Messages still held by the stream (WorkQueue: acked or terminated ones are removed).
    pub async fn stream_messages(&self) -> u64 {
        let mut stream = self
            .js
            .get_stream(&self.stream)
            .await
            .expect("stream exists");
        stream.info().await.expect("stream info").state.messages
    }

    /// Waits until the consumer has nothing pending or unacknowledged and the stream is empty.
    pub async fn wait_drained(&self) {
        eventually(Duration::from_secs(30), "consumer drained", || async {
            let stream = self.js.get_stream(&self.stream).await.ok()?;
            let info = stream.consumer_info(&self.consumer).await.ok()?;
            let empty = info.num_pending == 0 && info.num_ack_pending == 0;
            (empty && self.stream_messages().await == 0).then_some(())
        })
        .await;
    }

    pub async fn wait_stream_ready(&self) {
        eventually(Duration::from_secs(15), "stream created", || async {
            self.js.get_stream(&self.stream).await.ok().map(|_| ())
        })
        .await;
    }
}

fn apply(mut vars: HashMap<String, String>, overrides: &[(&str, &str)]) -> HashMap<String, String> {
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let (admin, db_name, stream, nats) = (
            admin_database_url(),
            self.database_name.clone(),
            self.stream.clone(),
            nats_url(),
        );
        let pool = self.db.clone();
        // Drop runs inside the test's runtime; do the async clean-up on a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async move {
                // The pool's connections belong to the test's runtime, which is blocked in this
                // drop: when one is still on its way back to the pool (a test that panicked
                // mid-query), `close` would wait for it for ever. FORCE below ends them anyway.
                let _ = tokio::time::timeout(Duration::from_secs(2), pool.close()).await;
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
                if let Ok(client) = async_nats::connect(nats).await {
                    let _ = jetstream::new(client).delete_stream(&stream).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Logs from the apps under test go to stdout only when `TEST_LOG` names a level.
fn init_test_logging() {
    if let Ok(level) = std::env::var("TEST_LOG") {
        ingest_shared::telemetry::init_logging(&level);
    }
}

/// A valid message body with the given id.
pub fn message_body(id: &str) -> String {
    serde_json::json!({
        "message_id": id,
        "from": "+919876543210",
        "to": "+14155550100",
        "ts": "2025-01-15T10:00:00Z",
        "text": "Hello"
    })
    .to_string()
}

/// A read and what it said of its consistency (docs/read-your-writes.md).
pub struct Read {
    pub status: u16,
    /// The `Consistency` header.
    pub consistency: Option<String>,
    /// Every `Preference-Applied` header.
    pub applied: Vec<String>,
    pub body: serde_json::Value,
    pub took: Duration,
}

/// GETs `url` (with `Prefer: prefer` when given) and keeps what it said of its consistency.
pub async fn read_with_consistency(
    http: &reqwest::Client,
    url: String,
    prefer: Option<&str>,
) -> Read {
    let started = std::time::Instant::now();
    let mut request = http.get(&url);
    if let Some(prefer) = prefer {
        request = request.header("prefer", prefer);
    }
    let response = request.send().await.expect("GET");
    let took = started.elapsed();
    let header = |name: &str| -> Vec<String> {
        response
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    let consistency = header("consistency").into_iter().next();
    let applied = header("preference-applied");
    let status = response.status().as_u16();
    let body = response.json().await.expect("JSON body");
    Read {
        status,
        consistency,
        applied,
        body,
        took,
    }
}

/// POSTs `body` to `url` signed with [`SECRET`], as a sender does; the status.
pub async fn post_signed(http: &reqwest::Client, url: String, body: String) -> u16 {
    let signature = ingest_shared::signature::sign(SECRET.as_bytes(), body.as_bytes());
    http.post(url)
        .header("content-type", "application/json")
        .header("x-signature", signature)
        .body(body)
        .send()
        .await
        .expect("POST /webhook")
        .status()
        .as_u16()
}

/// `rows` rows straight into `messages` (one sender, one second apart, 200-character texts):
/// enough that an export a client does not read fills the sockets' buffers and waits.
pub async fn seed_messages(env: &TestEnv, rows: i64) {
    sqlx::query(
        "INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text)
         SELECT 's' || lpad(i::text, 7, '0'), '+911', '+142',
                timestamptz '2025-01-15T00:00:00Z' + i * interval '1 second',
                'seeded', repeat('x', 200)
         FROM generate_series(1, $1) AS i",
    )
    .bind(rows)
    .execute(&env.db)
    .await
    .unwrap();
}
