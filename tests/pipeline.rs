//! The ingest pipeline end to end, on real NATS JetStream and real Postgres.

use std::time::Duration;

use futures::StreamExt;
use integration_tests::{SECRET, TestEnv, eventually, message_body};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_webhook_is_stored_once_even_when_sent_twice() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;

    let body = r#"{"message_id":"m1","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T10:00:00.500Z","text":"Hello"}"#;
    let first = env.post_signed(&gateway, body).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().contains_key("x-request-id"));
    assert_eq!(
        first.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    env.wait_for_rows(1).await;

    let again = env.post_signed(&gateway, body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    env.wait_drained().await;
    assert_eq!(env.row_count().await, 1);

    let row: (String, String, String, String, Option<String>, Option<i64>) = sqlx::query_as(
        "SELECT message_id, from_msisdn, to_msisdn, ts_raw, text, stream_seq FROM messages",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "m1".into(),
            "+919876543210".into(),
            "+14155550100".into(),
            "2025-01-15T10:00:00.500Z".into(),
            Some("Hello".into()),
            Some(1)
        )
    );
    let ts_ms: f64 = sqlx::query_scalar("SELECT extract(epoch FROM ts)::float8 FROM messages")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(ts_ms, 1_736_935_200.5);

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_republished_after_jetstream_forgot_it_is_still_one_row() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[("NATS_DUPLICATE_WINDOW_SECS", "1")]))
        .await;
    let worker = env
        .start_worker(env.worker_config(&[("NATS_DUPLICATE_WINDOW_SECS", "1")]))
        .await;
    env.wait_stream_ready().await;

    let body = message_body("forgotten");
    assert_eq!(env.post_signed(&gateway, &body).await.status(), 200);
    env.wait_for_rows(1).await;
    env.wait_drained().await;

    // Straight to the subject with no Nats-Msg-Id: JetStream cannot know it is a repeat.
    env.js
        .publish(env.subject.clone(), body.clone().into())
        .await
        .unwrap()
        .await
        .unwrap();
    // And through the gateway once the dedup window has passed.
    eventually(Duration::from_secs(10), "dedup window expiry", || async {
        let response = env.post_signed(&gateway, &body).await;
        assert_eq!(response.status(), 200);
        // The gateway logs dup=false once JetStream has forgotten the id; the stream then holds
        // the re-sent copy until the worker takes it.
        let seq: i64 = sqlx::query_scalar("SELECT stream_seq FROM messages")
            .fetch_one(&env.db)
            .await
            .unwrap();
        let mut stream = env.js.get_stream(&env.stream).await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence as i64;
        (last > seq + 1).then_some(())
    })
    .await;
    env.wait_drained().await;
    assert_eq!(env.row_count().await, 1);

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_posts_of_five_hundred_ids_make_five_hundred_rows() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let workers = [
        env.start_worker(env.worker_config(&[("BATCH_SIZE", "50")]))
            .await,
        env.start_worker(env.worker_config(&[("BATCH_SIZE", "50")]))
            .await,
    ];
    env.wait_stream_ready().await;

    let mut bodies: Vec<String> = (0..500)
        .flat_map(|i| {
            let body = message_body(&format!("id-{i:03}"));
            [body.clone(), body]
        })
        .collect();
    // A fixed shuffle: every copy of an id lands far from the other.
    let n = bodies.len();
    for i in 0..n {
        let j = (i * 7919 + 13) % n;
        bodies.swap(i, j);
    }
    let statuses: Vec<u16> = futures::stream::iter(bodies.iter())
        .map(|body| async { env.post_signed(&gateway, body).await.status().as_u16() })
        .buffer_unordered(64)
        .collect()
        .await;
    assert_eq!(statuses.len(), 1000);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "all accepted: {statuses:?}"
    );

    env.wait_for_rows(500).await;
    env.wait_drained().await;
    assert_eq!(env.row_count().await, 500);
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT message_id) FROM messages")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(distinct, 500);

    for worker in workers {
        worker.stop().await.unwrap();
    }
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_answers_its_status_and_publishes_nothing() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[("MAX_BODY_BYTES", "8192")]))
        .await;
    env.wait_stream_ready().await;
    let url = gateway.url("/webhook");
    let sign = |body: &str| ingest_shared::signature::sign(SECRET.as_bytes(), body.as_bytes());
    let post = |body: String, signature: Option<String>, content_type: &str| {
        let mut request = env
            .http
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-signature", signature);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let valid = message_body("never-stored");
    let invalid_signature = json!({"detail": "invalid signature"});

    // 401: missing, wrong, malformed; and a bad body with a bad signature is still 401.
    assert_eq!(
        post(valid.clone(), None, "application/json").await,
        (401, invalid_signature.clone())
    );
    assert_eq!(
        post(valid.clone(), Some(sign("other body")), "application/json").await,
        (401, invalid_signature.clone())
    );
    assert_eq!(
        post(
            valid.clone(),
            Some("sha256=nothex".into()),
            "application/json"
        )
        .await,
        (401, invalid_signature.clone())
    );
    assert_eq!(
        post("not json".into(), Some("0".repeat(64)), "application/json").await,
        (401, invalid_signature.clone())
    );

    // 413, announced by Content-Length and also found while reading a chunked body.
    let big = format!(r#"{{"message_id":"big","text":"{}"}}"#, "x".repeat(10_000));
    let (status, body) = post(big.clone(), Some(sign(&big)), "application/json").await;
    assert_eq!(status, 413);
    assert!(body["detail"].is_string());
    let chunks = futures::stream::iter(
        big.clone()
            .into_bytes()
            .chunks(100)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = env
        .http
        .post(&url)
        .header("x-signature", sign(&big))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // The rest of the body is never read, so the connection is closed, and the answer says so:
    // a keep-alive client must not send its next request into it.
    assert_eq!(response.headers()["connection"], "close");

    // 415: a declared type that is not JSON.
    let (status, _) = post(valid.clone(), Some(sign(&valid)), "text/plain").await;
    assert_eq!(status, 415);

    // 422, FastAPI style, one case per rule.
    let base: Value = serde_json::from_str(&valid).unwrap();
    let with = |field: &str, value: Value| {
        let mut m = base.clone();
        if value.is_null() && field != "text" {
            m.as_object_mut().unwrap().remove(field);
        } else {
            m[field] = value;
        }
        m.to_string()
    };
    let cases = [
        ("not json".to_owned(), "body"),
        (with("message_id", json!("")), "message_id"),
        (with("message_id", Value::Null), "message_id"),
        (with("from", json!("919876543210")), "from"),
        (with("to", json!("+1415abc")), "to"),
        (with("ts", json!("2025-01-15 10:00:00")), "ts"),
        (with("ts", json!("2025-01-15T10:00:00+05:30")), "ts"),
        (
            with("text", json!("y".repeat(4097))).replace("never-stored", "t"),
            "text",
        ),
        (with("from", json!(919876543210u64)), "from"),
    ];
    for (body, field) in cases {
        let (status, answer) = post(body.clone(), Some(sign(&body)), "application/json").await;
        assert_eq!(status, 422, "{field}: {answer}");
        let detail = answer["detail"].as_array().expect("detail is a list");
        assert!(!detail.is_empty());
        for entry in detail {
            assert!(
                entry["loc"].is_array() && entry["msg"].is_string() && entry["type"].is_string()
            );
        }
        if field != "body" {
            assert!(
                detail.iter().any(|e| e["loc"] == json!(["body", field])),
                "{field}: {answer}"
            );
        }
    }

    // Unknown routes and methods answer JSON too.
    let response = env.http.get(gateway.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.json::<Value>().await.unwrap()["detail"].is_string());
    let response = env.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 405);

    assert_eq!(env.stream_messages().await, 0, "nothing was published");
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_unreachable_means_503_with_retry_after_and_not_ready() {
    let env = TestEnv::new().await;
    // A port nothing listens on.
    let gateway = env
        .start_gateway(env.gateway_config(&[("NATS_URL", "nats://127.0.0.1:9")]))
        .await;
    let response = env.post_signed(&gateway, &message_body("m")).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(response.json::<Value>().await.unwrap()["detail"].is_string());

    let ready = env
        .http
        .get(gateway.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert!(
        body["missing"]
            .as_array()
            .unwrap()
            .contains(&json!("stream")),
        "{body}"
    );
    let live = env
        .http
        .get(gateway.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_needs_the_secret_and_an_empty_secret_fails_closed() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    for app in [&gateway, &worker] {
        eventually(Duration::from_secs(15), "ready", || async {
            let r = env.http.get(app.url("/health/ready")).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }

    let closed = env
        .start_gateway(env.gateway_config(&[("WEBHOOK_SECRET", "")]))
        .await;
    // Once NATS and Postgres answer, only the secret is missing, and that keeps it not ready.
    eventually(
        Duration::from_secs(15),
        "only the secret missing",
        || async {
            let ready = env
                .http
                .get(closed.url("/health/ready"))
                .send()
                .await
                .ok()?;
            assert_eq!(ready.status(), 503);
            let body: Value = ready.json().await.ok()?;
            (body["missing"] == json!(["secret"])).then_some(())
        },
    )
    .await;
    let body = message_body("m");
    let empty_key_signature = ingest_shared::signature::sign(b"", body.as_bytes());
    let response = env
        .http
        .post(closed.url("/webhook"))
        .header("x-signature", empty_key_signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    closed.stop().await.unwrap();
    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_between_commit_and_ack_causes_no_double_rows() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    env.wait_stream_ready().await;
    for i in 0..20 {
        let response = env
            .post_signed(&gateway, &message_body(&format!("c{i}")))
            .await;
        assert_eq!(response.status(), 200);
    }
    let overrides = [("ACK_WAIT_SECS", "1"), ("BATCH_WAIT_MS", "500")];
    let mut crashing = env.worker_config(&overrides);
    crashing.faults.stop_after_commit_before_ack = true;
    let crashed = env.start_worker(crashing).await;
    env.wait_for_rows(20).await;
    // Committed but never acked: JetStream still holds every one of them.
    assert_eq!(env.stream_messages().await, 20);
    crashed.stop().await.unwrap();

    let worker = env.start_worker(env.worker_config(&overrides)).await;
    env.wait_drained().await;
    assert_eq!(env.row_count().await, 20);

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_payload_is_dead_lettered_and_consumption_goes_on() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;

    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Request-Id", "poison-1");
    env.js
        .publish_with_headers(env.subject.clone(), headers, "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let invalid = r#"{"message_id":"bad","from":"nobody","to":"+1","ts":"2025-01-15T10:00:00Z"}"#;
    env.js
        .publish(env.subject.clone(), invalid.into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        env.post_signed(&gateway, &message_body("after-poison"))
            .await
            .status(),
        200
    );

    env.wait_for_rows(1).await;
    env.wait_drained().await;
    type DeadLetterRow = (Vec<u8>, String, Option<String>, Option<i64>);
    let dead: Vec<DeadLetterRow> = sqlx::query_as(
        "SELECT payload, reason, request_id, stream_seq FROM dead_letters ORDER BY stream_seq",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].0, b"{not json");
    assert_eq!(dead[0].2.as_deref(), Some("poison-1"));
    assert_eq!(dead[1].0, invalid.as_bytes());
    assert!(dead[1].1.contains("from"), "{}", dead[1].1);
    let ids = env.message_ids().await;
    assert_eq!(ids, ["after-poison"]);

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// sqlx 0.9.0 leaves Nagle's algorithm on for its TCP connections, which holds the end of every
/// large statement (a worker batch) for a delayed ACK, ~40 ms (`ingest_shared::db::pool_options`).
/// The pools of both binaries are built by `lazy_pool` / `pool_options`, which turn it off.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_connections_have_nagle_off() {
    use ingest_shared::config::SecretUrl;
    use ingest_shared::db;

    let url = SecretUrl::new(integration_tests::admin_database_url());
    let pool = db::lazy_pool(&url, 1, Duration::from_secs(10)).expect("pool");
    let (local, peer): (Option<i32>, Option<i32>) =
        sqlx::query_as("SELECT inet_client_port(), inet_server_port()")
            .fetch_one(&pool)
            .await
            .expect("ask the server which ports it sees");
    let (Some(local), Some(peer)) = (local, peer) else {
        // A Unix-socket URL: no TCP, nothing for Nagle to hold back.
        return;
    };
    assert_eq!(
        db::nodelay::on_connection(local as u16, peer as u16),
        Some(true),
        "the pool's connection (local port {local}) must have TCP_NODELAY"
    );
}
