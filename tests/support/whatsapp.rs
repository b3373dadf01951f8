//! WhatsApp Cloud API requests for the tests that post them.

use serde_json::json;

use crate::{Running, TestEnv};

/// A WhatsApp Cloud API notification carrying one text message.
pub fn text_notification(id: &str, body: &str) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
            "messages": [{"from": "16505551234", "id": id, "timestamp": "1749416383",
                          "type": "text", "text": {"body": body}}]
        }}]}]
    })
    .to_string()
}

/// Posts `body` to `/webhook/whatsapp` signed with `app_secret`; the status.
pub async fn post(env: &TestEnv, gateway: &Running, app_secret: &str, body: String) -> u16 {
    let signature = format!(
        "sha256={}",
        ingest_shared::signature::sign(app_secret.as_bytes(), body.as_bytes())
    );
    env.http
        .post(gateway.url("/webhook/whatsapp"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .expect("POST /webhook/whatsapp")
        .status()
        .as_u16()
}
