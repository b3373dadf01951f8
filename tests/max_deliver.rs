//! A message no worker ever acknowledges (issue #29): after `MAX_DELIVER` deliveries JetStream
//! stops delivering it but the WorkQueue stream keeps it, which held every consistent read at its
//! timeout. The worker now moves it to `dead_letters` (kind `max_deliveries`, its bytes kept) and
//! deletes it from the stream, so reads are fresh again, nothing else is lost, and a redrive
//! stores it once. Two ways it is found: the server's advisory while a worker runs, and the
//! worker's scan for one given up on while none ran.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::PullConsumer;
use base64::Engine as _;
use futures::StreamExt as _;
use integration_tests::procs::{ServiceProcess, TempDir, free_port};
use integration_tests::{Running, TestEnv, eventually, message_body, metric_value};
use serde_json::Value;

const ADMIN: &str = "admin-token-for-tests";
const POISON: &str = "poison-1";

/// Short ack wait and three deliveries keep the test quick; a 1 s duplicate window lets the
/// redrive through soon after. Both binaries get the same, so neither reconciles the stream
/// differently.
fn overrides() -> [(&'static str, &'static str); 5] {
    [
        ("MAX_DELIVER", "3"),
        ("ACK_WAIT_SECS", "2"),
        ("NATS_DUPLICATE_WINDOW_SECS", "1"),
        ("LAG_POLL_SECS", "1"),
        ("LOG_LEVEL", "info"),
    ]
}

fn vars(env: &TestEnv) -> HashMap<String, String> {
    let mut vars = env.vars();
    for (k, v) in overrides() {
        vars.insert(k.to_owned(), v.to_owned());
    }
    vars
}

async fn gateway(env: &TestEnv) -> Running {
    let mut settings = overrides().to_vec();
    settings.extend([
        ("ADMIN_TOKENS", ADMIN),
        ("READ_CONSISTENCY_TIMEOUT_MS", "1000"),
    ]);
    let gateway = env.start_gateway(env.gateway_config(&settings)).await;
    gateway.wait_ready(&env.http, Duration::from_secs(30)).await;
    gateway
}

fn worker(env: &TestEnv, logs: &Path, name: &str) -> ServiceProcess {
    ServiceProcess::spawn(
        "ingest-worker",
        name,
        &vars(env),
        "WORKER_ADDR",
        free_port(),
        logs,
    )
}

async fn post(env: &TestEnv, gateway: &Running, id: &str) {
    let response = env.post_signed(gateway, &message_body(id)).await;
    assert_eq!(response.status(), 200, "POST {id}");
}

/// (deliveries made so far, messages awaiting an ack) of the shared consumer; (0, 0) before any
/// worker created it.
async fn consumer_state(env: &TestEnv) -> (u64, usize) {
    let Ok(stream) = env.js.get_stream(&env.stream).await else {
        return (0, 0);
    };
    match stream.consumer_info(&env.consumer).await {
        Ok(info) => (info.delivered.consumer_sequence, info.num_ack_pending),
        Err(_) => (0, 0),
    }
}

/// The consistency a `GET /messages` answered with, and how long it took.
async fn read(env: &TestEnv, gateway: &Running) -> (String, Duration) {
    let started = Instant::now();
    let response = env
        .http
        .get(gateway.url("/messages"))
        .send()
        .await
        .expect("GET /messages");
    assert_eq!(response.status(), 200);
    let consistency = response
        .headers()
        .get("consistency")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (consistency, started.elapsed())
}

async fn admin(
    env: &TestEnv,
    gateway: &Running,
    method: reqwest::Method,
    path: &str,
) -> (u16, Value) {
    let response = env
        .http
        .request(method, gateway.url(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("admin request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body)
}

/// Whether the stream still holds sequence `seq`.
async fn in_stream(env: &TestEnv, seq: u64) -> bool {
    let stream = env.js.get_stream(&env.stream).await.expect("stream");
    stream.get_raw_message(seq).await.is_ok()
}

/// Waits for the poison's dead letter and checks it against the API: kind, reason, bytes.
async fn dead_letter(env: &TestEnv, gateway: &Running, seq: u64) -> i64 {
    let item = eventually(
        Duration::from_secs(20),
        "the poison message listed as a dead letter",
        || async {
            let (status, body) = admin(
                env,
                gateway,
                reqwest::Method::GET,
                "/admin/dead-letters?reason=max_deliveries",
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["data"].as_array()?.first().cloned()
        },
    )
    .await;
    assert_eq!(item["kind"], "max_deliveries", "{item}");
    assert_eq!(item["message_id"], POISON, "{item}");
    assert_eq!(item["stream_seq"], seq, "{item}");
    assert_eq!(item["times"], 1, "{item}");
    assert!(
        item["reason"]
            .as_str()
            .unwrap()
            .starts_with("max_deliveries"),
        "{item}"
    );
    assert!(
        item["request_id"].is_string(),
        "the gateway's request id: {item}"
    );
    let id = item["id"].as_i64().unwrap();
    let (status, one) = admin(
        env,
        gateway,
        reqwest::Method::GET,
        &format!("/admin/dead-letters/{id}"),
    )
    .await;
    assert_eq!(status, 200, "{one}");
    let payload = base64::engine::general_purpose::STANDARD
        .decode(one["payload_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        payload,
        message_body(POISON).as_bytes(),
        "the bytes as sent"
    );
    id
}

/// What both paths end with: the stream has let go of the poison, a read is fresh at once, the
/// dead letter is counted, and its redrive stores it exactly once next to everything else.
async fn then_reads_are_fresh_and_the_redrive_stores_it(
    env: &TestEnv,
    gateway: &Running,
    workers: &[&ServiceProcess],
    seq: u64,
    others: &[String],
) {
    let id = dead_letter(env, gateway, seq).await;
    eventually(
        Duration::from_secs(10),
        "the poison deleted from the stream",
        || async { (!in_stream(env, seq).await).then_some(()) },
    )
    .await;
    // The other messages are stored by now, so nothing is left for a read to wait on.
    env.wait_for_rows(others.len() as i64).await;
    let (consistency, took) = read(env, gateway).await;
    assert_eq!(consistency, "fresh", "took {took:?}");
    assert!(
        took < Duration::from_millis(900),
        "a fresh read waited {took:?}"
    );

    // One move among all the workers; each counts the stored dead letter.
    eventually(
        Duration::from_secs(10),
        "the max-deliveries metrics",
        || async {
            let mut moved = 0.0;
            for worker in workers {
                let text = env
                    .http
                    .get(worker.url("/metrics"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                moved += metric_value(&text, "worker_max_deliveries_total")?;
                let stored = metric_value(
                    &text,
                    r#"worker_dead_letters_stored{reason="max_deliveries"}"#,
                )?;
                if stored != 1.0 {
                    return None;
                }
            }
            (moved == 1.0).then_some(())
        },
    )
    .await;

    let (status, body) = admin(
        env,
        gateway,
        reqwest::Method::POST,
        &format!("/admin/dead-letters/{id}/redrive"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut expected: Vec<String> = others.to_vec();
    expected.push(POISON.to_owned());
    expected.sort();
    env.wait_for_rows(expected.len() as i64).await;
    env.wait_drained().await;
    assert_eq!(
        env.message_ids().await,
        expected,
        "every message stored exactly once"
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(left, 0, "the redriven dead letter is gone");
}

/// The workers' log line for the move (JSON), one among them all, checked for what an operator
/// needs: how it was found, the sequence, the deliveries and the request id.
fn check_logged(logs: &Path, names: &[&str], found: &str, seq: u64) {
    let log: String = names
        .iter()
        .map(|name| std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default())
        .collect();
    let moved: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            l["msg"]
                .as_str()
                .is_some_and(|m| m.contains("moved to dead letters"))
        })
        .collect();
    assert_eq!(moved.len(), 1, "one line for the one move:\n{log}");
    let line = &moved[0];
    assert_eq!(line["found"], found, "{line}");
    assert_eq!(line["stream_seq"], seq, "{line}");
    assert_eq!(line["deliveries"], 3, "{line}");
    assert!(line["request_id"].is_string(), "{line}");
}

/// Three workers in turn take the poison message, hang on it (a transaction the test holds
/// makes its insert wait) and are SIGKILLed, while other messages go through. The fourth
/// worker is running when the deliveries run out: the advisory makes it move the poison to
/// dead_letters while the transaction still holds, and reads are fresh again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_kills_every_worker_becomes_a_dead_letter_through_the_advisory() {
    let env = TestEnv::new().await;
    let logs = TempDir::new("maxdeliver");
    let gateway = gateway(&env).await;
    // The poison's id, inserted and not committed: the worker's insert of the same id (the
    // exactly-once key in message_ids) waits.
    let mut hold = env.db.begin().await.unwrap();
    sqlx::query("INSERT INTO message_ids (message_id, ts) VALUES ($1, '2025-01-15T10:00:00Z')")
        .bind(POISON)
        .execute(&mut *hold)
        .await
        .unwrap();
    post(&env, &gateway, POISON).await;
    let seq = env.stream_messages().await;
    assert_eq!(seq, 1, "the poison is the stream's first message");

    let mut others = Vec::new();
    for round in 1..=3 {
        let (before, _) = consumer_state(&env).await;
        let name = format!("worker-{round}");
        let mut w = worker(&env, logs.path(), &name);
        eventually(
            Duration::from_secs(30),
            &format!("delivery {round} of the poison"),
            || async {
                let (delivered, ack_pending) = consumer_state(&env).await;
                (delivered > before && ack_pending == 1).then_some(())
            },
        )
        .await;
        // Its batch is closed once its insert waits (the killed workers' inserts wait on too):
        // the others posted from now on cannot join it.
        eventually(
            Duration::from_secs(30),
            &format!("worker {round} waiting on the poison's row"),
            || async {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(&env.db)
                .await
                .ok()?;
                (waiting >= round).then_some(())
            },
        )
        .await;
        // Others pass the hanging worker by and are acked before it dies.
        for k in 0..2 {
            let id = format!("other-{round}-{k}");
            post(&env, &gateway, &id).await;
            others.push(id);
        }
        env.wait_for_rows(others.len() as i64).await;
        eventually(
            Duration::from_secs(10),
            "only the poison unacked",
            || async { (consumer_state(&env).await.1 == 1).then_some(()) },
        )
        .await;
        w.kill().await;
    }
    // Wedged: the stream holds the poison, so a read waits its timeout.
    let (consistency, took) = read(&env, &gateway).await;
    assert_eq!(consistency, "stale", "took {took:?}");

    // Two workers run when the deliveries run out: one of them moves it.
    let (w4, w5) = (
        worker(&env, logs.path(), "worker-4"),
        worker(&env, logs.path(), "worker-5"),
    );
    w4.wait_ready(&env.http, Duration::from_secs(30)).await;
    w5.wait_ready(&env.http, Duration::from_secs(30)).await;
    post(&env, &gateway, "other-4-0").await;
    others.push("other-4-0".to_owned());
    others.sort();

    then_reads_are_fresh_and_the_redrive_stores_it_while(
        &env,
        &gateway,
        &[&w4, &w5],
        seq,
        &others,
        hold,
    )
    .await;
    check_logged(logs.path(), &["worker-4", "worker-5"], "advisory", seq);
    gateway.stop().await.unwrap();
}

/// The held transaction is released after the dead letter exists and reads are fresh (the move
/// never waits for the poison's own insert), before the redrive.
async fn then_reads_are_fresh_and_the_redrive_stores_it_while(
    env: &TestEnv,
    gateway: &Running,
    workers: &[&ServiceProcess],
    seq: u64,
    others: &[String],
    hold: sqlx::Transaction<'static, sqlx::Postgres>,
) {
    dead_letter(env, gateway, seq).await;
    eventually(
        Duration::from_secs(10),
        "the poison deleted from the stream",
        || async { (!in_stream(env, seq).await).then_some(()) },
    )
    .await;
    let (consistency, took) = read(env, gateway).await;
    assert_eq!(
        consistency, "fresh",
        "with the poison's insert still hanging; took {took:?}"
    );
    hold.rollback().await.unwrap();
    then_reads_are_fresh_and_the_redrive_stores_it(env, gateway, workers, seq, others).await;
}

/// No worker runs while the poison's deliveries run out (the test takes it three times and never
/// acks, then a fourth pull makes the server give up on it, with nobody hearing the advisory).
/// Two workers started afterwards find it by their scans, and it is moved once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_given_up_on_while_no_worker_ran_is_found_by_the_scan() {
    let env = TestEnv::new().await;
    let logs = TempDir::new("maxdeliver");
    let gateway = gateway(&env).await;
    post(&env, &gateway, POISON).await;
    let seq = env.stream_messages().await;
    assert_eq!(seq, 1);
    // A message stored already but still in the stream, as a NATS restart can leave one: it is
    // only deleted from the stream, and is no dead letter.
    const STORED: &str = "stored-1";
    post(&env, &gateway, STORED).await;
    sqlx::query(
        "WITH id AS (INSERT INTO message_ids (message_id, ts) \
                     VALUES ($1, '2025-01-15T10:00:00Z')) \
         INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text) \
         VALUES ($1, '+919876543210', '+14155550100', '2025-01-15T10:00:00Z', \
                 '2025-01-15T10:00:00Z', 'Hello')",
    )
    .bind(STORED)
    .execute(&env.db)
    .await
    .unwrap();

    let settings = ingest_shared::nats::ConsumerSettings::from_env(&vars(&env)).unwrap();
    let stream = env.js.get_stream(&env.stream).await.unwrap();
    let consumer: PullConsumer = stream
        .get_or_create_consumer(&env.consumer, settings.consumer_config())
        .await
        .unwrap();
    for delivery in 1..=3 {
        eventually(
            Duration::from_secs(15),
            &format!("delivery {delivery}"),
            || async {
                let mut batch = consumer
                    .fetch()
                    .max_messages(2)
                    .expires(Duration::from_millis(500))
                    .messages()
                    .await
                    .ok()?;
                let mut delivered = Vec::new();
                while let Some(Ok(message)) = batch.next().await {
                    let info = message.info().unwrap();
                    delivered.push((info.stream_sequence, info.delivered));
                }
                (delivered == [(seq, delivery), (seq + 1, delivery)]).then_some(())
            },
        )
        .await;
    }
    eventually(
        Duration::from_secs(15),
        "the server gives up on it",
        || async {
            let mut batch = consumer
                .fetch()
                .max_messages(2)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .ok()?;
            if let Some(Ok(message)) = batch.next().await {
                panic!("delivered past MAX_DELIVER: {:?}", message.info());
            }
            let info = stream.consumer_info(&env.consumer).await.ok()?;
            (info.num_ack_pending == 0 && info.delivered.stream_sequence > seq).then_some(())
        },
    )
    .await;
    assert!(
        in_stream(&env, seq).await,
        "given up on, yet still in the stream"
    );
    let (consistency, took) = read(&env, &gateway).await;
    assert_eq!(consistency, "stale", "took {took:?}");

    // Two workers, started together, so their scans find it at about the same time.
    let (w1, w2) = (
        worker(&env, logs.path(), "worker-1"),
        worker(&env, logs.path(), "worker-2"),
    );
    w1.wait_ready(&env.http, Duration::from_secs(30)).await;
    w2.wait_ready(&env.http, Duration::from_secs(30)).await;
    let mut others: Vec<String> = (0..3).map(|k| format!("other-{k}")).collect();
    for id in &others {
        post(&env, &gateway, id).await;
    }
    others.push(STORED.to_owned());
    others.sort();
    then_reads_are_fresh_and_the_redrive_stores_it(&env, &gateway, &[&w1, &w2], seq, &others).await;
    check_logged(logs.path(), &["worker-1", "worker-2"], "scan", seq);
    let deleted_only = ["worker-1", "worker-2"]
        .iter()
        .map(|name| std::fs::read_to_string(logs.path().join(format!("{name}.log"))).unwrap())
        .flat_map(|log| log.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| l.contains("already stored was still in the stream"))
        .count();
    assert_eq!(
        deleted_only, 1,
        "the stored one deleted from the stream, once"
    );
    gateway.stop().await.unwrap();
}
