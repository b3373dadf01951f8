//! Read replicas under read-your-writes, on a real streaming replica: each test starts a private
//! Postgres primary and a replica of it (`pg_basebackup -R`, replay delayed by
//! `recovery_min_apply_delay`), gateways that read from the replica, and a worker writing to the
//! primary. A `fresh` read is never answered from a replica that lacks the row; a replica that
//! is down sends reads to the primary; the lag shows in `/health/ready` and `/metrics`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use integration_tests::procs::{Postgres, ServiceProcess, TempDir, free_port};
use integration_tests::{
    TestEnv, eventually, message_body, metric_value, post_signed as post,
    read_with_consistency as read,
};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

fn ids(page: &Value) -> Vec<&str> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {page}"))
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect()
}

/// Whether `id` is stored on the server at `url`, asked directly.
async fn has_row(url: &str, id: &str) -> bool {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM messages WHERE message_id = $1")
        .bind(id)
        .fetch_optional(&mut conn)
        .await
        .expect("look the row up");
    found.is_some()
}

/// A primary with the schema, a replica of it, and the variables of a gateway reading from it.
struct Replicated {
    primary: Postgres,
    replica: Postgres,
    /// The services' environment: `DATABASE_URL` the primary, `DATABASE_READ_URL` the replica.
    vars: HashMap<String, String>,
}

impl Replicated {
    async fn start(env: &TestEnv, dir: &Path, apply_delay: Duration) -> Self {
        let primary = Postgres::start(dir).await;
        let db = sqlx::PgPool::connect(&primary.url())
            .await
            .expect("primary");
        ingest_shared::db::migrate(&db).await.expect("migrate");
        db.close().await;
        let replica = primary.start_replica(dir, apply_delay).await;
        let mut vars = env.vars();
        vars.insert("DATABASE_URL".into(), primary.url());
        vars.insert("DATABASE_READ_URL".into(), replica.url());
        Self {
            primary,
            replica,
            vars,
        }
    }

    fn spawn(&self, dir: &Path, binary: &str, name: &str, vars: &[(&str, &str)]) -> ServiceProcess {
        let mut all = self.vars.clone();
        for (k, v) in vars {
            all.insert((*k).to_owned(), (*v).to_owned());
        }
        let addr_var = if binary == "ingest-worker" {
            "WORKER_ADDR"
        } else {
            "GATEWAY_ADDR"
        };
        ServiceProcess::spawn(binary, name, &all, addr_var, free_port(), dir)
    }
}

async fn ready_body(http: &reqwest::Client, gateway: &ServiceProcess) -> (u16, Value) {
    let response = http
        .get(gateway.url("/health/ready"))
        .send()
        .await
        .expect("GET /health/ready");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

async fn metrics(http: &reqwest::Client, gateway: &ServiceProcess) -> String {
    integration_tests::scrape_metrics_at(http, gateway.url("/metrics")).await
}

/// The issue's flow through a replica that replays every commit 200 ms late: post to gateway A,
/// read at once from gateway B (which reads the replica), two hundred times. Every answer is
/// `fresh` and has the row; without the replay wait most would miss it (checked first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_posts_are_read_back_fresh_through_a_lagging_replica() {
    let env = TestEnv::new().await;
    let dir = TempDir::new("replica-rounds");
    let pg = Replicated::start(&env, dir.path(), Duration::from_millis(200)).await;
    let primary_url = pg.primary.url();
    let a = pg.spawn(
        dir.path(),
        "ingest-gateway",
        "gateway-a",
        &[("DATABASE_READ_URL", &primary_url)],
    );
    let b = pg.spawn(dir.path(), "ingest-gateway", "gateway-b", &[]);
    let worker = pg.spawn(dir.path(), "ingest-worker", "worker", &[]);
    for service in [&a, &b, &worker] {
        service.wait_ready(&env.http, Duration::from_secs(60)).await;
    }
    let http = &env.http;

    // The lag is real: once the primary has a row, the replica still lacks it.
    assert_eq!(
        post(http, a.url("/webhook"), message_body("probe")).await,
        200
    );
    eventually(Duration::from_secs(10), "probe on the primary", || async {
        has_row(&primary_url, "probe").await.then_some(())
    })
    .await;
    assert!(
        !has_row(&pg.replica.url(), "probe").await,
        "the replica should replay 200 ms late"
    );
    let (status, ready) = ready_body(http, &b).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["read_replica"]["role"], "replica", "{ready}");
    assert_eq!(ready["read_replica"]["fallback"], false, "{ready}");

    let mut waited = Duration::ZERO;
    for round in 0..200 {
        let sender = format!("+1555{round:07}");
        let id = format!("r{round}");
        let body = json!({
            "message_id": id, "from": sender, "to": "+14155550100",
            "ts": format!("2025-01-15T10:{:02}:{:02}Z", round / 60, round % 60),
            "text": format!("round {round}"),
        });
        assert_eq!(post(http, a.url("/webhook"), body.to_string()).await, 200);
        let (mine, stats) = tokio::join!(
            read(http, b.url(&format!("/messages?from={sender}")), None),
            read(http, b.url("/stats"), None),
        );
        for r in [&mine, &stats] {
            assert_eq!(r.status, 200, "round {round}: {}", r.body);
            assert_eq!(r.consistency.as_deref(), Some("fresh"), "round {round}");
        }
        assert_eq!(ids(&mine.body), [id.as_str()], "round {round}");
        assert_eq!(stats.body["total_messages"], round + 2, "round {round}");
        waited += mine.took;
    }
    let mean = waited / 200;
    println!("mean read through the 200 ms replica: {mean:?}");
    let text = metrics(http, &b).await;
    assert_eq!(
        metric_value(
            &text,
            r#"read_replica_fallback_total{reason="unreachable"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&text, r#"read_consistency_total{outcome="stale"}"#),
        Some(0.0)
    );
}

/// The replica stops: reads are answered from the primary (`fresh`, with the row), counted by
/// the fallback metric, and the gateway stays ready, saying so. Once the replica is back, reads
/// go to it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_sends_reads_to_the_primary_and_they_come_back() {
    let env = TestEnv::new().await;
    let dir = TempDir::new("replica-down");
    let mut pg = Replicated::start(&env, dir.path(), Duration::from_millis(50)).await;
    let gateway = pg.spawn(dir.path(), "ingest-gateway", "gateway", &[]);
    let worker = pg.spawn(dir.path(), "ingest-worker", "worker", &[]);
    for service in [&gateway, &worker] {
        service.wait_ready(&env.http, Duration::from_secs(60)).await;
    }
    let http = &env.http;
    let fallbacks = |text: &str| {
        metric_value(text, r#"read_replica_fallback_total{reason="unreachable"}"#).unwrap_or(-1.0)
    };
    let url = |id: &str| gateway.url(&format!("/messages?from=%2B1{id}"));
    let message = |id: &str| {
        json!({"message_id": id, "from": format!("+1{id}"), "to": "+14155550100",
               "ts": "2025-01-15T10:00:00Z", "text": "hi"})
        .to_string()
    };

    assert_eq!(
        post(http, gateway.url("/webhook"), message("100")).await,
        200
    );
    let before = read(http, url("100"), None).await;
    assert_eq!(before.consistency.as_deref(), Some("fresh"));
    assert_eq!(ids(&before.body), ["100"]);
    assert_eq!(fallbacks(&metrics(http, &gateway).await), 0.0);

    pg.replica.stop().await;
    for n in 0..10 {
        let id = format!("{}", 200 + n);
        assert_eq!(post(http, gateway.url("/webhook"), message(&id)).await, 200);
        let r = read(http, url(&id), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.consistency.as_deref(), Some("fresh"), "read {n}");
        assert_eq!(ids(&r.body), [id.as_str()], "read {n}");
    }
    let skipped = read(http, gateway.url("/stats"), Some("consistency=eventual")).await;
    assert_eq!(skipped.status, 200, "{}", skipped.body);
    assert_eq!(skipped.body["total_messages"], 11);
    let text = metrics(http, &gateway).await;
    assert_eq!(fallbacks(&text), 11.0, "every read while it was down");
    assert_eq!(metric_value(&text, "read_replica_falling_back"), Some(1.0));
    let (status, ready) = ready_body(http, &gateway).await;
    assert_eq!(
        status, 200,
        "a dead replica does not make the gateway unready: {ready}"
    );
    assert_eq!(ready["read_replica"]["role"], "unreachable", "{ready}");
    assert_eq!(ready["read_replica"]["fallback"], true, "{ready}");

    pg.replica.restart().await;
    eventually(Duration::from_secs(20), "replica checked again", || async {
        let (_, ready) = ready_body(http, &gateway).await;
        (ready["read_replica"]["role"] == "replica").then_some(())
    })
    .await;
    assert_eq!(
        post(http, gateway.url("/webhook"), message("300")).await,
        200
    );
    let after = read(http, url("300"), None).await;
    assert_eq!(after.consistency.as_deref(), Some("fresh"));
    assert_eq!(ids(&after.body), ["300"]);
    let text = metrics(http, &gateway).await;
    assert_eq!(fallbacks(&text), 11.0, "back on the replica");
    assert_eq!(metric_value(&text, "read_replica_falling_back"), Some(0.0));
}

/// A replica further behind than `READ_CONSISTENCY_TIMEOUT_MS` (its replay delayed 6 s, the
/// timeout 500 ms): the read answers `stale` (from
/// the replica, without the row) rather than `fresh`; the lag shows in `/health/ready` and the
/// gauges while it lasts and goes back to 0; once replayed, the read is `fresh` with the row.
/// Promoted, it is seen as a primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_timeout_answers_stale_and_shows_its_lag() {
    let env = TestEnv::new().await;
    let dir = TempDir::new("replica-lag");
    // The delay leaves a loaded CI box seconds of margin between the post and the checks that
    // the replica still lacks the row.
    let pg = Replicated::start(&env, dir.path(), Duration::from_secs(6)).await;
    let gateway = pg.spawn(
        dir.path(),
        "ingest-gateway",
        "gateway",
        // A read that meets a replayed start-up lock (below) waits it out rather than failing
        // on the statement timeout.
        &[
            ("READ_CONSISTENCY_TIMEOUT_MS", "500"),
            ("READ_STATEMENT_TIMEOUT_MS", "30000"),
        ],
    );
    let worker = pg.spawn(dir.path(), "ingest-worker", "worker", &[]);
    for service in [&gateway, &worker] {
        service.wait_ready(&env.http, Duration::from_secs(60)).await;
    }
    let http = &env.http;
    let primary_url = pg.primary.url();
    // The worker's start-up creates partitions (ACCESS EXCLUSIVE on the default partition); a
    // replica holds that lock from its replay until the commit's, which the delay postpones, so
    // reads wait for it. The rounds start once the replica has replayed the start-up.
    eventually(Duration::from_secs(30), "start-up replayed", || async {
        let (_, ready) = ready_body(http, &gateway).await;
        (ready["read_replica"]["lag_bytes"] == 0).then_some(())
    })
    .await;

    for (round, id) in ["m1", "m2"].into_iter().enumerate() {
        assert_eq!(
            post(http, gateway.url("/webhook"), message_body(id)).await,
            200
        );
        eventually(Duration::from_secs(10), "row on the primary", || async {
            has_row(&primary_url, id).await.then_some(())
        })
        .await;
        let r = read(http, gateway.url("/messages"), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.consistency.as_deref(), Some("stale"), "round {round}");
        assert!(r.took >= Duration::from_millis(500), "waited {:?}", r.took);
        assert!(!ids(&r.body).contains(&id), "{id} is not replayed yet");
        assert!(!has_row(&pg.replica.url(), id).await);

        let lagging = eventually(Duration::from_secs(3), "lag reported", || async {
            let (status, ready) = ready_body(http, &gateway).await;
            assert_eq!(status, 200, "a lagging replica keeps the gateway ready");
            let lag = ready["read_replica"]["lag_bytes"].as_i64()?;
            (lag > 0).then_some(ready)
        })
        .await;
        let text = metrics(http, &gateway).await;
        assert!(metric_value(&text, "read_replica_lag_bytes").unwrap() > 0.0);
        if round == 1 {
            // By now the replica has replayed a transaction (m1), so the age is known.
            assert!(lagging["read_replica"]["lag_ms"].as_u64().unwrap() > 0);
            assert!(metric_value(&text, "read_replica_lag_seconds").unwrap() > 0.0);
        }

        eventually(Duration::from_secs(20), "the replica replays", || async {
            let r = read(http, gateway.url("/messages"), None).await;
            (r.consistency.as_deref() == Some("fresh")).then_some(r)
        })
        .await;
        let r = read(http, gateway.url("/messages"), None).await;
        assert!(
            ids(&r.body).contains(&id),
            "fresh, so it has {id}: {}",
            r.body
        );
        eventually(Duration::from_secs(5), "lag back to 0", || async {
            let (_, ready) = ready_body(http, &gateway).await;
            (ready["read_replica"]["lag_bytes"] == 0 && ready["read_replica"]["lag_ms"] == 0)
                .then_some(())
        })
        .await;
    }
    let text = metrics(http, &gateway).await;
    assert_eq!(metric_value(&text, "read_replica_lag_bytes"), Some(0.0));
    assert_eq!(metric_value(&text, "read_replica_lag_seconds"), Some(0.0));

    // A failover promotes the replica: the gateway sees a primary there and stops waiting for
    // a replay that no longer happens.
    let mut conn = PgConnection::connect(&pg.replica.url())
        .await
        .expect("replica");
    sqlx::query("SELECT pg_promote()")
        .execute(&mut conn)
        .await
        .expect("promote");
    eventually(Duration::from_secs(10), "promotion seen", || async {
        let (_, ready) = ready_body(http, &gateway).await;
        (ready["read_replica"]["role"] == "primary").then_some(())
    })
    .await;
    let r = read(http, gateway.url("/messages"), None).await;
    assert_eq!(r.consistency.as_deref(), Some("fresh"), "{}", r.body);
    assert!(
        r.took < Duration::from_millis(500),
        "no replay wait: {:?}",
        r.took
    );
}

/// `DATABASE_READ_URL` on a primary (another spelling of `DATABASE_URL`): seen as such, reads
/// do not wait for a replay that will never be reported, and are fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_url_on_a_primary_is_recognised_and_needs_no_replay_wait() {
    let env = TestEnv::new().await;
    let read_url = format!("{}?application_name=reads", env.database_url);
    let gateway = env
        .start_gateway(env.gateway_config(&[("DATABASE_READ_URL", &read_url)]))
        .await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    gateway.wait_ready(&env.http, Duration::from_secs(30)).await;
    worker.wait_ready(&env.http, Duration::from_secs(30)).await;
    let ready = eventually(Duration::from_secs(10), "read URL checked", || async {
        let response = env
            .http
            .get(gateway.url("/health/ready"))
            .send()
            .await
            .ok()?;
        let ready: Value = response.json().await.ok()?;
        (ready["read_replica"]["role"] != "unknown").then_some(ready)
    })
    .await;
    assert_eq!(ready["read_replica"]["role"], "primary", "{ready}");
    assert_eq!(ready["read_replica"]["fallback"], false);
    assert_eq!(
        env.post_signed(&gateway, &message_body("p1"))
            .await
            .status(),
        200
    );
    let r = read(&env.http, gateway.url("/messages"), None).await;
    assert_eq!(r.consistency.as_deref(), Some("fresh"));
    assert_eq!(ids(&r.body), ["p1"]);
}
