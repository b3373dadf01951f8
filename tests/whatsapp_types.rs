//! Every message kept whole: each WhatsApp message type stored with its `msg_type`, its readable
//! `text` and Meta's own objects in `raw`; a `/webhook` body's extra fields kept in `raw`; and
//! `RAW_PAYLOAD=drop` storing the same rows without it. Through the gateway's HTTP routes, NATS,
//! the worker and Postgres, read back from the table.

use std::path::PathBuf;

use integration_tests::{Running, TestEnv};
use serde_json::{Value, json};

const APP_SECRET: &str = "meta-app-secret";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/whatsapp")
}

/// Every fixture's name, its bytes, and the `msg_type` and `text` it must become.
fn fixtures_with_expectations() -> Vec<(String, String, Value)> {
    let expected: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    expected
        .into_iter()
        .map(|(name, want)| {
            let body = std::fs::read_to_string(fixtures().join(format!("{name}.json"))).unwrap();
            (name, body, want)
        })
        .collect()
}

async fn post_whatsapp(env: &TestEnv, gateway: &Running, body: &str) -> reqwest::Response {
    let signature = format!(
        "sha256={}",
        ingest_shared::signature::sign(APP_SECRET.as_bytes(), body.as_bytes())
    );
    env.http
        .post(gateway.url("/webhook/whatsapp"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// One stored row: the columns a sender's message fills, and `raw`.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Stored {
    from_msisdn: String,
    to_msisdn: String,
    ts_raw: String,
    text: Option<String>,
    msg_type: Option<String>,
    raw: Option<Value>,
}

async fn stored(env: &TestEnv, message_id: &str) -> Stored {
    sqlx::query_as(
        "SELECT from_msisdn, to_msisdn, ts_raw, text, msg_type, raw FROM messages \
         WHERE message_id = $1",
    )
    .bind(message_id)
    .fetch_one(&env.db)
    .await
    .unwrap_or_else(|e| panic!("{message_id}: {e}"))
}

async fn start(env: &TestEnv, worker_vars: &[(&str, &str)]) -> (Running, Running) {
    let gateway = env
        .start_gateway(env.gateway_config(&[("WHATSAPP_APP_SECRET", APP_SECRET)]))
        .await;
    let worker = env.start_worker(env.worker_config(worker_vars)).await;
    env.wait_stream_ready().await;
    (gateway, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_whatsapp_type_is_stored_with_its_type_text_and_payload() {
    let env = TestEnv::new().await;
    let (gateway, worker) = start(&env, &[]).await;
    let all = fixtures_with_expectations();
    for (name, body, _) in &all {
        let response = post_whatsapp(&env, &gateway, body).await;
        assert_eq!(
            response.status(),
            200,
            "{name}: {:?}",
            response.text().await
        );
    }
    env.wait_for_rows(all.len() as i64).await;

    for (name, body, want) in &all {
        let fixture: Value = serde_json::from_str(body).unwrap();
        let value = &fixture["entry"][0]["changes"][0]["value"];
        let message = &value["messages"][0];
        let row = stored(&env, message["id"].as_str().unwrap()).await;
        assert_eq!(
            row.msg_type.as_deref(),
            want["msg_type"].as_str(),
            "{name}: msg_type"
        );
        assert_eq!(row.text.as_deref(), want["text"].as_str(), "{name}: text");
        assert_eq!(
            row.from_msisdn,
            format!("+{}", message["from"].as_str().unwrap()),
            "{name}"
        );
        assert_eq!(row.to_msisdn, "+15557014420", "{name}");
        let raw = row.raw.unwrap_or_else(|| panic!("{name}: raw is NULL"));
        let kept = &raw["whatsapp"];
        // The whole message object, and so its media id, caption, coordinates, reply id, order
        // items, errors: whatever the type carries.
        assert_eq!(&kept["message"], message, "{name}: raw message");
        assert_eq!(
            &kept["metadata"], &value["metadata"],
            "{name}: raw metadata"
        );
        assert_eq!(
            &kept["contacts"], &value["contacts"],
            "{name}: raw contacts"
        );
        // The canonical fields travel with it, as on /webhook.
        assert_eq!(raw["message_id"], message["id"], "{name}");
        assert_eq!(raw["type"], want["msg_type"], "{name}");
    }

    // A few type-specific fields read straight from the stored jsonb, as an analyst would.
    let pick = |sql: &'static str| sqlx::query_scalar::<_, Option<String>>(sql).fetch_one(&env.db);
    let checks = [
        (
            "SELECT raw #>> '{whatsapp,message,image,id}' FROM messages WHERE msg_type = 'image'",
            "1583309921764412",
        ),
        (
            "SELECT raw #>> '{whatsapp,message,location,latitude}' FROM messages WHERE msg_type = 'location'",
            "51.5194",
        ),
        (
            "SELECT raw #>> '{whatsapp,message,interactive,list_reply,id}' FROM messages WHERE text = 'Tuesday morning'",
            "slot-tue-am",
        ),
        (
            "SELECT raw #>> '{whatsapp,message,errors,0,code}' FROM messages WHERE msg_type = 'unsupported'",
            "131051",
        ),
        (
            "SELECT raw #>> '{whatsapp,message,referral,headline}' FROM messages WHERE message_id = 'wamid.fixture-text_referral'",
            "Kettles for less",
        ),
        (
            "SELECT raw #>> '{whatsapp,contacts,0,profile,name}' FROM messages WHERE msg_type = 'hologram'",
            "Priya Raman",
        ),
    ];
    for (sql, want) in checks {
        assert_eq!(pick(sql).await.unwrap().as_deref(), Some(want), "{sql}");
    }

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_body_is_kept_whole_and_one_jsonb_cannot_hold_is_refused() {
    let env = TestEnv::new().await;
    let (gateway, worker) = start(&env, &[]).await;
    let body = json!({
        "message_id": "extra-1",
        "from": "+919876543210",
        "to": "+14155550100",
        "ts": "2025-01-15T10:00:00.250Z",
        "text": "Order shipped",
        "order": {"id": 4411, "items": [{"sku": "kettle", "qty": 2, "price": 34.5}]},
        "tags": ["priority", null, true],
        "note": "caf\u{e9} \u{1F600}"
    });
    let response = env.post_signed(&gateway, &body.to_string()).await;
    assert_eq!(response.status(), 200);

    // jsonb holds no NUL character: refused with a 422 naming why, never stored in part.
    let nul = r#"{"message_id":"extra-2","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z","x":"a\u0000b"}"#;
    let response = env.post_signed(&gateway, nul).await;
    assert_eq!(response.status(), 422);
    let detail: Value = response.json().await.unwrap();
    assert_eq!(detail["detail"][0]["loc"], json!(["body"]), "{detail}");
    assert!(
        detail["detail"][0]["msg"].as_str().unwrap().contains("NUL"),
        "{detail}"
    );

    env.wait_for_rows(1).await;
    let row = stored(&env, "extra-1").await;
    assert_eq!(
        row.raw.as_ref(),
        Some(&body),
        "the body, extra fields and all"
    );
    assert_eq!(row.msg_type, None);
    assert_eq!(row.text.as_deref(), Some("Order shipped"));
    assert_eq!(env.message_ids().await, ["extra-1"]);

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_raw_payload_drop_the_rows_are_the_same_without_raw() {
    let env = TestEnv::new().await;
    let (gateway, worker) = start(&env, &[("RAW_PAYLOAD", "drop")]).await;
    let image = std::fs::read_to_string(fixtures().join("image.json")).unwrap();
    assert_eq!(post_whatsapp(&env, &gateway, &image).await.status(), 200);
    let body = json!({
        "message_id": "dropped-1", "from": "+919876543210", "to": "+14155550100",
        "ts": "2025-01-15T10:00:00Z", "text": "Hello", "extra": {"kept": false}
    });
    assert_eq!(
        env.post_signed(&gateway, &body.to_string()).await.status(),
        200
    );
    env.wait_for_rows(2).await;

    assert_eq!(
        stored(&env, "wamid.fixture-image").await,
        Stored {
            from_msisdn: "+447700900123".into(),
            to_msisdn: "+15557014420".into(),
            ts_raw: "2025-07-01T09:33:00Z".into(),
            text: Some("The crack on the lid".into()),
            msg_type: Some("image".into()),
            raw: None,
        }
    );
    assert_eq!(
        stored(&env, "dropped-1").await,
        Stored {
            from_msisdn: "+919876543210".into(),
            to_msisdn: "+14155550100".into(),
            ts_raw: "2025-01-15T10:00:00Z".into(),
            text: Some("Hello".into()),
            msg_type: None,
            raw: None,
        }
    );

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}
