//! `GET /messages/{message_id}` and the `msg_type` of list items, over HTTP against the running
//! gateway, on rows written by the real worker from real JetStream.

use integration_tests::{Running, TestEnv, post_signed, whatsapp};
use serde_json::{Value, json};

const APP_SECRET: &str = "wa-app-secret";

async fn get(env: &TestEnv, gateway: &Running, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = env.http.get(gateway.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_items_carry_msg_type_only_when_the_message_has_one() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[("WHATSAPP_APP_SECRET", APP_SECRET)]))
        .await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    let webhook = json!({"message_id": "plain", "from": "+911", "to": "+142",
                         "ts": "2025-01-15T10:00:00Z", "text": "no type"});
    assert_eq!(
        post_signed(&env.http, gateway.url("/webhook"), webhook.to_string()).await,
        200
    );
    assert_eq!(
        whatsapp::post(
            &env,
            &gateway,
            APP_SECRET,
            whatsapp::text_notification("wamid.T1", "typed")
        )
        .await,
        200
    );

    let (status, page) = get(&env, &gateway, "/messages", None).await;
    assert_eq!(status, 200, "{page}");
    let items = page["data"].as_array().expect("data");
    assert_eq!(items.len(), 2, "{page}");
    let plain = items.iter().find(|i| i["message_id"] == "plain").unwrap();
    // The older clients' shape, key for key.
    assert_eq!(plain, &webhook);
    let typed = items
        .iter()
        .find(|i| i["message_id"] == "wamid.T1")
        .unwrap();
    assert_eq!(typed["msg_type"], "text", "{typed}");
    assert_eq!(typed["text"], "typed");

    let (status, one) = get(&env, &gateway, "/messages/wamid.T1", None).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["msg_type"], "text");
    let (_, one) = get(&env, &gateway, "/messages/plain", None).await;
    assert!(one.get("msg_type").is_none(), "{one}");

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_by_id_found_missing_and_behind_read_tokens() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[("READ_TOKENS", "tok-read")]))
        .await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    // An id that has to be percent-encoded in a path: a slash, a space, a `%`, a `?`, non-ASCII.
    let odd_id = "a/b c%d?é";
    let posted = json!({"message_id": odd_id, "from": "+919876543210", "to": "+14155550100",
                        "ts": "2025-01-15T10:00:00.250Z", "text": "Hello, \"world\""});
    let other = json!({"message_id": "m2", "from": "+911", "to": "+142",
                       "ts": "2025-01-16T10:00:00Z", "text": null});
    for body in [&posted, &other] {
        assert_eq!(
            post_signed(&env.http, gateway.url("/webhook"), body.to_string()).await,
            200
        );
    }

    // Read-your-writes: no wait for the worker before the read.
    let encoded = "a%2Fb%20c%25d%3F%C3%A9";
    let (status, one) = get(
        &env,
        &gateway,
        &format!("/messages/{encoded}"),
        Some("tok-read"),
    )
    .await;
    assert_eq!(status, 200, "{one}");
    let mut expected = posted.clone();
    expected["raw"] = Value::Null;
    let raw = one["raw"].clone();
    let mut without_raw = one.clone();
    without_raw["raw"] = Value::Null;
    assert_eq!(without_raw, expected);
    let (status, m2) = get(&env, &gateway, "/messages/m2", Some("tok-read")).await;
    assert_eq!(status, 200);
    assert_eq!(m2["text"], Value::Null);
    assert!(m2.as_object().unwrap().contains_key("raw"), "{m2}");

    for missing in [
        "/messages/nope",
        "/messages/a%2Fb",
        "/messages/%FF%FE",
        "/messages/a%00b",
    ] {
        let (status, body) = get(&env, &gateway, missing, Some("tok-read")).await;
        assert_eq!(status, 404, "{missing}: {body}");
        assert_eq!(body, json!({"detail": "message not found"}), "{missing}");
    }
    for token in [None, Some("wrong")] {
        let (status, body) = get(&env, &gateway, "/messages/m2", token).await;
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(body, json!({"detail": "not authenticated"}));
    }

    // The payload the message came from, once the worker stores it (issue 28's first item).
    assert_eq!(raw, posted, "raw is the posted body");

    env.wait_for_rows(2).await;
    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}
