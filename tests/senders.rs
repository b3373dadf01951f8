//! Real senders: secret rotation, Standard Webhooks with replay protection, and Meta's WhatsApp
//! Cloud API, all through the same exactly-once path.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use integration_tests::{Running, TestEnv, eventually, message_body, metric_value, scrape_metrics};
use serde_json::{Value, json};

const APP_SECRET: &str = "meta-app-secret";
const OLD_APP_SECRET: &str = "meta-app-secret-old";
const VERIFY_TOKEN: &str = "verify-me";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn metric(env: &TestEnv, app: &Running, series: &str) -> f64 {
    metric_value(&scrape_metrics(&env.http, app).await, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_accepted_and_its_slot_counted() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[("WEBHOOK_SECRET", "new-secret,old-secret")]))
        .await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    let slot1 = r#"webhook_signature_key_slot_total{endpoint="webhook",slot="1"}"#;
    let before = metric(&env, &gateway, slot1).await;

    for (i, key) in ["new-secret", "old-secret"].into_iter().enumerate() {
        let body = message_body(&format!("rot-{i}"));
        let signature = ingest_shared::signature::sign(key.as_bytes(), body.as_bytes());
        let response = env
            .http
            .post(gateway.url("/webhook"))
            .header("x-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "signed with {key}");
    }
    let retired = message_body("rot-x");
    let signature = ingest_shared::signature::sign(b"retired", retired.as_bytes());
    let response = env
        .http
        .post(gateway.url("/webhook"))
        .header("x-signature", signature)
        .body(retired)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    env.wait_for_rows(2).await;
    assert!(metric(&env, &gateway, slot1).await >= before + 1.0);
    let text = scrape_metrics(&env.http, &gateway).await;
    assert!(!text.contains("old-secret") && !text.contains("new-secret"));

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_are_verified_and_replays_refused() {
    let env = TestEnv::new().await;
    let key = b"standard-webhooks-key-bytes";
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let gateway = env
        .start_gateway(env.gateway_config(&[
            ("WEBHOOK_SECRET", secret.as_str()),
            ("WEBHOOK_SCHEMES", "standard-webhooks"),
            ("WEBHOOK_TOLERANCE_SECS", "300"),
        ]))
        .await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;

    let send = |id: &str, ts: i64, body: String, signature: String| {
        let request = env
            .http
            .post(gateway.url("/webhook"))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let sign = |id: &str, ts: i64, body: &str| {
        ingest_shared::signature::sign_standard(key, id, ts, body.as_bytes())
    };

    let body = message_body("sw-1");
    let other = ingest_shared::signature::sign_standard(b"other", "msg_1", now(), body.as_bytes());
    let both = format!("{other} {}", sign("msg_1", now(), &body));
    assert_eq!(send("msg_1", now(), body.clone(), both).await.0, 200);

    // Captured and replayed ten minutes later, or stamped ten minutes ahead: refused.
    let old = now() - 600;
    let (status, answer) = send(
        "msg_2",
        old,
        message_body("sw-2"),
        sign("msg_2", old, &message_body("sw-2")),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(answer["detail"], "webhook timestamp outside the tolerance");
    let ahead = now() + 600;
    let (status, _) = send(
        "msg_3",
        ahead,
        message_body("sw-3"),
        sign("msg_3", ahead, &message_body("sw-3")),
    )
    .await;
    assert_eq!(status, 401);
    // A signature over another timestamp than the header's.
    let (status, answer) = send(
        "msg_4",
        now(),
        message_body("sw-4"),
        sign("msg_4", now() - 1, &message_body("sw-4")),
    )
    .await;
    assert_eq!(
        (status, answer),
        (401, json!({"detail": "invalid signature"}))
    );
    // The plain scheme is off on this endpoint.
    let plain = message_body("sw-5");
    let response = env
        .http
        .post(gateway.url("/webhook"))
        .header(
            "x-signature",
            ingest_shared::signature::sign(secret.as_bytes(), plain.as_bytes()),
        )
        .body(plain)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let text = scrape_metrics(&env.http, &gateway).await;
    assert!(
        text.contains(r#"webhook_requests_total{result="stale_timestamp"} 2"#),
        "{text}"
    );
    env.wait_for_rows(1).await;
    env.wait_drained().await;
    let ids = env.message_ids().await;
    assert_eq!(ids, ["sw-1"]);

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

fn notification(values: Vec<Value>) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": values.into_iter().map(|v| json!({"field": "messages", "value": v})).collect::<Vec<_>>()
        }]
    })
    .to_string()
}

fn text_message(id: &str, ts: i64, body: &str) -> Value {
    json!({"from": "16505551234", "id": id, "timestamp": ts.to_string(), "type": "text", "text": {"body": body}})
}

fn value(messages: Vec<Value>) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        "messages": messages
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_cloud_api_handshake_and_notifications() {
    let env = TestEnv::new().await;
    let secrets = format!("{APP_SECRET},{OLD_APP_SECRET}");
    let gateway = env
        .start_gateway(env.gateway_config(&[
            ("WHATSAPP_APP_SECRET", secrets.as_str()),
            ("WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN),
        ]))
        .await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    let url = gateway.url("/webhook/whatsapp");

    // The subscription handshake.
    let ok = env
        .http
        .get(format!(
            "{url}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1".to_owned(),
        format!("hub.mode=unsubscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"),
        "".to_owned(),
    ] {
        let refused = env.http.get(format!("{url}?{query}")).send().await.unwrap();
        assert_eq!(refused.status(), 403, "{query}");
    }

    let post = |body: String, secret: &'static str| {
        let signature = format!(
            "sha256={}",
            ingest_shared::signature::sign(secret.as_bytes(), body.as_bytes())
        );
        let request = env
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let t = 1_749_416_383;
    let text = notification(vec![value(vec![text_message(
        "wamid.TEXT",
        t,
        "Does it come in another color?",
    )])]);
    assert_eq!(post(text.clone(), APP_SECRET).await, 200);
    // Meta retries the same envelope: still one row.
    assert_eq!(post(text, APP_SECRET).await, 200);

    let image = notification(vec![value(vec![json!({
        "from": "16505551234", "id": "wamid.IMAGE", "timestamp": (t + 1).to_string(), "type": "image",
        "image": {"caption": "this one", "mime_type": "image/jpeg", "sha256": "abc", "id": "1479537139650973"}
    })])]);
    assert_eq!(
        post(image, OLD_APP_SECRET).await,
        200,
        "the rotated-out app secret still works"
    );

    // Several messages in one envelope, across two changes.
    let several = notification(vec![
        value(vec![
            text_message("wamid.M1", t + 2, "one"),
            text_message("wamid.M2", t + 3, "two"),
        ]),
        value(vec![text_message("wamid.M3", t + 4, "three")]),
    ]);
    assert_eq!(post(several, APP_SECRET).await, 200);

    // Status-only: counted, nothing stored.
    let statuses = notification(vec![json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "statuses": [{"id": "wamid.TEXT", "status": "delivered", "timestamp": t.to_string(), "recipient_id": "16505551234"}]
    })]);
    assert_eq!(post(statuses, APP_SECRET).await, 200);

    // Forged, and a broken message.
    assert_eq!(
        post(
            notification(vec![value(vec![text_message("wamid.F", t, "x")])]),
            "forged"
        )
        .await,
        401
    );
    let broken = notification(vec![value(vec![
        json!({"from": "16505551234", "timestamp": t.to_string()}),
    ])]);
    assert_eq!(post(broken, APP_SECRET).await, 422);

    env.wait_for_rows(5).await;
    env.wait_drained().await;
    type Row = (
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT message_id, from_msisdn, to_msisdn, ts_raw, text, msg_type FROM messages ORDER BY ts",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    let row = |id: &str, ts: &str, text: Option<&str>, kind: &str| -> Row {
        (
            id.into(),
            "+16505551234".into(),
            "+15550783881".into(),
            ts.into(),
            text.map(Into::into),
            Some(kind.into()),
        )
    };
    assert_eq!(
        rows,
        [
            row(
                "wamid.TEXT",
                "2025-06-08T20:59:43Z",
                Some("Does it come in another color?"),
                "text"
            ),
            row(
                "wamid.IMAGE",
                "2025-06-08T20:59:44Z",
                Some("this one"),
                "image"
            ),
            row("wamid.M1", "2025-06-08T20:59:45Z", Some("one"), "text"),
            row("wamid.M2", "2025-06-08T20:59:46Z", Some("two"), "text"),
            row("wamid.M3", "2025-06-08T20:59:47Z", Some("three"), "text"),
        ]
    );
    eventually(Duration::from_secs(5), "status counted", || async {
        (metric(
            &env,
            &gateway,
            r#"whatsapp_statuses_total{status="delivered"}"#,
        )
        .await
            >= 1.0)
            .then_some(())
    })
    .await;

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_without_configuration_fails_closed() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let url = gateway.url("/webhook/whatsapp");
    let refused = env
        .http
        .get(format!(
            "{url}?hub.mode=subscribe&hub.verify_token=&hub.challenge=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let body = notification(vec![value(vec![text_message(
        "wamid.X",
        1_749_416_383,
        "x",
    )])]);
    let signature = format!(
        "sha256={}",
        ingest_shared::signature::sign(b"", body.as_bytes())
    );
    let response = env
        .http
        .post(&url)
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    env.wait_stream_ready().await;
    assert_eq!(env.stream_messages().await, 0);
    gateway.stop().await.unwrap();
}
