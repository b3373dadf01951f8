//! The worker exports the stream's contents against its limits (the stream-fill alert's inputs)
//! as JetStream reports them.

use std::time::Duration;

use integration_tests::{TestEnv, eventually, message_body, metric_value, scrape_metrics};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reports_the_stream_fill_against_its_limits() {
    const SENT: u64 = 20;
    const MAX_MSGS: u64 = 10_000;
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let max_msgs = MAX_MSGS.to_string();
    let mut config = env.worker_config(&[("LAG_POLL_SECS", "1"), ("NATS_MAX_MSGS", &max_msgs)]);
    let max_bytes = config.nats.max_bytes as f64;
    // Commits the first batch, then consumes nothing more and acks nothing: every message
    // stays in the stream.
    config.faults.stop_after_commit_before_ack = true;
    let worker = env.start_worker(config).await;
    env.wait_stream_ready().await;

    assert_eq!(
        env.post_signed(&gateway, &message_body("fill-0"))
            .await
            .status(),
        200
    );
    env.wait_for_rows(1).await;
    for n in 1..SENT {
        let body = message_body(&format!("fill-{n}"));
        assert_eq!(env.post_signed(&gateway, &body).await.status(), 200);
    }

    eventually(
        Duration::from_secs(20),
        "worker_stream_messages",
        || async {
            let text = scrape_metrics(&env.http, &worker).await;
            (metric_value(&text, "worker_stream_messages") == Some(SENT as f64)).then_some(())
        },
    )
    .await;
    assert_eq!(
        env.stream_messages().await,
        SENT,
        "JetStream holds them all"
    );

    // Nothing moves any more: the next refresh reports what JetStream reports.
    let mut stream = env.js.get_stream(&env.stream).await.unwrap();
    let info = stream.info().await.unwrap().clone();
    assert!(info.state.bytes > 0);
    let text = eventually(Duration::from_secs(20), "stream bytes", || async {
        let text = scrape_metrics(&env.http, &worker).await;
        (metric_value(&text, "worker_stream_bytes") == Some(info.state.bytes as f64))
            .then_some(text)
    })
    .await;
    assert_eq!(
        metric_value(&text, "worker_stream_max_bytes"),
        Some(max_bytes)
    );
    assert_eq!(
        metric_value(&text, "worker_stream_max_messages"),
        Some(MAX_MSGS as f64)
    );
    assert_eq!(
        info.config.max_messages, MAX_MSGS as i64,
        "NATS_MAX_MSGS set the limit"
    );
    assert!(metric_value(&text, "worker_consumer_redelivered").is_some());

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}
