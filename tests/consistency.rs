//! Read-your-writes (the contract's "GET /messages"): a read that starts after a `/webhook` 200,
//! from any gateway, sees that message; when it cannot be sure in time, or NATS is gone, it still
//! answers 200 and says `Consistency: stale`.

use std::time::Duration;

use integration_tests::procs::{NatsServer, ServiceProcess, TempDir, free_port};
use integration_tests::{
    TestEnv, eventually, message_body, metric_value, post_signed as post,
    read_with_consistency as read, scrape_metrics,
};
use serde_json::json;

/// The older API's clients, as its evaluator runs them: post three messages to one gateway, then
/// read at once from another, two hundred times with two workers. Every answer is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_are_read_back_at_once_from_another_gateway() {
    let env = TestEnv::new().await;
    let logs = TempDir::new("ryw");
    let vars = env.vars();
    let spawn = |binary: &str, name: &str, addr_var: &str| {
        ServiceProcess::spawn(binary, name, &vars, addr_var, free_port(), logs.path())
    };
    let (a, b) = (
        spawn("ingest-gateway", "gateway-a", "GATEWAY_ADDR"),
        spawn("ingest-gateway", "gateway-b", "GATEWAY_ADDR"),
    );
    let workers = [
        spawn("ingest-worker", "worker-1", "WORKER_ADDR"),
        spawn("ingest-worker", "worker-2", "WORKER_ADDR"),
    ];
    for service in [&a, &b].into_iter().chain(&workers) {
        service.wait_ready(&env.http, Duration::from_secs(60)).await;
    }

    let http = &env.http;
    for round in 0..200 {
        let sender = format!("+1555{round:07}");
        let ids: Vec<String> = (0..3).map(|k| format!("r{round}-{k}")).collect();
        for (k, id) in ids.iter().enumerate() {
            let body = json!({
                "message_id": id, "from": sender, "to": "+14155550100",
                "ts": format!("2025-01-15T10:{:02}:{:02}Z", round / 60, round % 60),
                "text": format!("round {round} message {k}"),
            });
            assert_eq!(post(http, a.url("/webhook"), body.to_string()).await, 200);
        }
        let expected = 3 * (round + 1);

        let all = read(http, b.url("/messages?limit=1"), None).await;
        let mine = read(http, b.url(&format!("/messages?from={sender}")), None).await;
        let stats = read(http, b.url("/stats"), None).await;
        for r in [&all, &mine, &stats] {
            assert_eq!(r.status, 200, "round {round}: {}", r.body);
            assert_eq!(r.consistency.as_deref(), Some("fresh"), "round {round}");
        }
        assert_eq!(all.body["total"], expected, "round {round}: {}", all.body);
        assert_eq!(stats.body["total_messages"], expected, "round {round}");
        let got: Vec<&str> = mine.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message_id"].as_str().unwrap())
            .collect();
        assert_eq!(got, ids, "round {round}: {}", mine.body);
        assert_eq!(mine.body["total"], 3, "round {round}");
    }
    assert_eq!(env.row_count().await, 600);
}

/// No worker: the message is queued, not stored. A read waits its timeout and is served as it is,
/// marked stale; an opted-out read does not wait; once a worker runs, the next read sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_workers_reads_are_stale_after_the_timeout_and_fresh_once_they_catch_up() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[("READ_CONSISTENCY_TIMEOUT_MS", "300")]))
        .await;
    env.wait_stream_ready().await;
    assert_eq!(
        env.post_signed(&gateway, &message_body("m1"))
            .await
            .status(),
        200
    );

    for path in ["/messages", "/stats"] {
        let r = read(&env.http, gateway.url(path), None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.consistency.as_deref(), Some("stale"), "{path}");
        assert!(
            r.took >= Duration::from_millis(300),
            "{path} waited {:?}",
            r.took
        );
        let total = if path == "/stats" {
            "total_messages"
        } else {
            "total"
        };
        assert_eq!(r.body[total], 0, "{path}: {}", r.body);
    }
    let skipped = read(
        &env.http,
        gateway.url("/messages"),
        Some("consistency=eventual"),
    )
    .await;
    assert_eq!(skipped.status, 200);
    assert_eq!(skipped.consistency.as_deref(), Some("skipped"));
    assert_eq!(skipped.applied, ["consistency=eventual"]);
    assert!(
        skipped.took < Duration::from_millis(300),
        "{:?}",
        skipped.took
    );

    let worker = env.start_worker(env.worker_config(&[])).await;
    // Read-your-writes, not polling: the first read after the worker starts waits for it.
    let fresh = eventually(Duration::from_secs(20), "a fresh read", || async {
        let r = read(&env.http, gateway.url("/messages"), None).await;
        (r.consistency.as_deref() == Some("fresh")).then_some(r)
    })
    .await;
    assert_eq!(fresh.body["total"], 1, "{}", fresh.body);
    assert_eq!(fresh.body["data"][0]["message_id"], "m1");

    let metrics = scrape_metrics(&env.http, &gateway).await;
    let count = |outcome: &str| {
        metric_value(
            &metrics,
            &format!("read_consistency_total{{outcome=\"{outcome}\"}}"),
        )
        .unwrap_or_else(|| panic!("read_consistency_total{{outcome={outcome}}} in\n{metrics}"))
    };
    assert!(count("stale") >= 2.0);
    assert_eq!(count("skipped"), 1.0);
    assert!(count("fresh") >= 1.0);
    let waits = metric_value(&metrics, "read_consistency_wait_ms_count").expect("wait histogram");
    assert!(waits >= 3.0, "{waits}");
    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();

    // READ_CONSISTENCY_TIMEOUT_MS=0 turns the wait off.
    let off = env
        .start_gateway(env.gateway_config(&[("READ_CONSISTENCY_TIMEOUT_MS", "0")]))
        .await;
    let r = read(&env.http, off.url("/stats"), None).await;
    assert_eq!(r.consistency.as_deref(), Some("skipped"));
    assert!(r.applied.is_empty(), "{:?}", r.applied);
    off.stop().await.unwrap();
}

/// NATS gone: reads still answer 200 from Postgres, marked stale, without waiting the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_stopped_reads_answer_stale_at_once() {
    let env = TestEnv::new().await;
    let dir = TempDir::new("ryw-nats");
    let mut nats = NatsServer::start(dir.path()).await;
    let url = nats.url();
    let overrides = [
        ("NATS_URL", url.as_str()),
        ("READ_CONSISTENCY_TIMEOUT_MS", "10000"),
    ];
    let gateway = env.start_gateway(env.gateway_config(&overrides)).await;
    let worker = env.start_worker(env.worker_config(&overrides)).await;
    gateway.wait_ready(&env.http, Duration::from_secs(30)).await;
    assert_eq!(
        env.post_signed(&gateway, &message_body("m1"))
            .await
            .status(),
        200
    );
    let before = read(&env.http, gateway.url("/messages"), None).await;
    assert_eq!(before.consistency.as_deref(), Some("fresh"));
    assert_eq!(before.body["total"], 1);

    nats.kill().await;
    let stale = eventually(Duration::from_secs(20), "a stale read", || async {
        let r = read(&env.http, gateway.url("/messages"), None).await;
        (r.consistency.as_deref() == Some("stale")).then_some(r)
    })
    .await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body["total"], 1, "{}", stale.body);
    for path in ["/messages", "/stats"] {
        let r = read(&env.http, gateway.url(path), None).await;
        assert_eq!((r.status, r.consistency.as_deref()), (200, Some("stale")));
        // Far below the 10 s timeout: a disconnected client is not asked.
        assert!(r.took < Duration::from_secs(2), "{path} took {:?}", r.took);
    }

    nats.restart().await;
    eventually(Duration::from_secs(30), "fresh again", || async {
        let r = read(&env.http, gateway.url("/stats"), None).await;
        (r.consistency.as_deref() == Some("fresh")).then_some(())
    })
    .await;
    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// A payload the worker can never store is dead-lettered and terminated; reads behind it are
/// fresh as soon as that is done, not held until the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_does_not_hold_reads_up_past_its_dead_lettering() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[("READ_CONSISTENCY_TIMEOUT_MS", "20000")]))
        .await;
    env.wait_stream_ready().await;
    env.js
        .publish(env.subject.clone(), "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        env.post_signed(&gateway, &message_body("after"))
            .await
            .status(),
        200
    );
    let worker = env.start_worker(env.worker_config(&[])).await;

    let r = read(&env.http, gateway.url("/messages"), None).await;
    assert_eq!(r.consistency.as_deref(), Some("fresh"), "took {:?}", r.took);
    assert!(r.took < Duration::from_secs(20), "{:?}", r.took);
    assert_eq!(r.body["total"], 1, "{}", r.body);
    let dead: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM dead_letters")
        .fetch_all(&env.db)
        .await
        .unwrap();
    assert_eq!(
        dead,
        [b"{not json"],
        "dead-lettered by the time the read answers"
    );
    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}
