use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;
use crate::message::{MAX_TEXT_CHARS, parse};

fn notification(value: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]
    }))
    .unwrap()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/whatsapp")
}

/// Every fixture, with the `msg_type` and `text` it must become.
fn expected() -> Vec<(String, Value, Value)> {
    let expected: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    expected
        .into_iter()
        .map(|(name, want)| {
            let body = std::fs::read(fixtures().join(format!("{name}.json"))).unwrap();
            (name, serde_json::from_slice(&body).unwrap(), want)
        })
        .collect()
}

#[test]
fn every_fixture_maps_to_its_type_and_text() {
    let all = expected();
    assert!(all.len() >= 19, "fixtures missing: {}", all.len());
    for (name, fixture, want) in all {
        let envelope = unpack(&serde_json::to_vec(&fixture).unwrap())
            .unwrap_or_else(|e| panic!("{name}: refused: {e}"));
        assert_eq!(envelope.messages.len(), 1, "{name}");
        let body = &envelope.messages[0].body;
        let m = parse(body).unwrap();
        assert_eq!(
            m.msg_type.as_deref(),
            want["msg_type"].as_str(),
            "{name}: msg_type"
        );
        assert_eq!(m.text.as_deref(), want["text"].as_str(), "{name}: text");
        // The raw payload holds Meta's message, metadata and contacts unchanged.
        let published: Value = serde_json::from_slice(body).unwrap();
        let value = &fixture["entry"][0]["changes"][0]["value"];
        assert_eq!(
            published["whatsapp"]["message"], value["messages"][0],
            "{name}"
        );
        assert_eq!(
            published["whatsapp"]["metadata"], value["metadata"],
            "{name}"
        );
        assert_eq!(
            published["whatsapp"]["contacts"], value["contacts"],
            "{name}"
        );
    }
}

#[test]
fn the_message_object_is_kept_byte_for_byte() {
    let body = br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"metadata":{"display_phone_number":"15550783881"},"messages":[{"from":"1","id":"w1","timestamp":"1749416383","type":"image","image":{"id":"9","price":1.50}}]}}]}]}"#;
    let envelope = unpack(body).unwrap();
    let published = String::from_utf8(envelope.messages[0].body.clone()).unwrap();
    assert!(
        published.contains(r#""message":{"from":"1","id":"w1","timestamp":"1749416383","type":"image","image":{"id":"9","price":1.50}}"#),
        "{published}"
    );
    // No contacts in the change: none in the payload.
    assert!(!published.contains("\"contacts\""), "{published}");
}

#[test]
fn optional_parts_never_refuse_a_message() {
    let long = "é".repeat(MAX_TEXT_CHARS + 10);
    let body = notification(json!({
        "metadata": {"display_phone_number": "15550783881"},
        "messages": [
            {"from": "1", "id": "w1", "timestamp": "1749416383", "type": "image",
             "image": {"id": "9", "caption": long}},
            {"from": "1", "id": "w2", "timestamp": "1749416383", "type": "document",
             "document": {"id": "9", "caption": "a\u{0}b", "filename": 7}},
            {"from": "1", "id": "w3", "timestamp": "1749416383", "type": "location",
             "location": {"latitude": 1.5, "longitude": 2.5}},
            {"from": "1", "id": "w4", "timestamp": "1749416383", "type": "interactive",
             "interactive": {"type": "button_reply", "button_reply": "odd"}},
            {"from": "1", "id": "w5", "timestamp": "1749416383", "type": "location",
             "location": {"address": "Main St 1"}},
            {"from": "1", "id": "w6", "timestamp": "1749416383", "type": "interactive",
             "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow"}}},
        ]
    }));
    let envelope = unpack(&body).unwrap();
    let texts: Vec<Option<String>> = envelope
        .messages
        .iter()
        .map(|m| parse(&m.body).unwrap().text)
        .collect();
    assert_eq!(texts[0].as_ref().unwrap().chars().count(), MAX_TEXT_CHARS);
    assert_eq!(texts[1].as_deref(), Some("ab"));
    assert_eq!(texts[2], None);
    assert_eq!(texts[3], None);
    assert_eq!(texts[4].as_deref(), Some("Main St 1"));
    assert_eq!(texts[5].as_deref(), Some("flow"));
    // The raw payload keeps the whole caption, its NUL stored as U+FFFD (jsonb has no NUL).
    let second: Value = serde_json::from_slice(&envelope.messages[1].body).unwrap();
    assert_eq!(
        second["whatsapp"]["message"]["document"]["caption"],
        "a\u{FFFD}b"
    );
    let first: Value = serde_json::from_slice(&envelope.messages[0].body).unwrap();
    assert_eq!(
        first["whatsapp"]["message"]["image"]["caption"],
        long.as_str()
    );
}

#[test]
fn text_and_image_messages_unpack() {
    let body = notification(json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        "messages": [
            {"from": "16505551234", "id": "wamid.A", "timestamp": "1749416383", "type": "text",
             "text": {"body": "Does it come in another color?"}},
            {"from": "16505551234", "id": "wamid.B", "timestamp": "1749416390", "type": "image",
             "image": {"caption": "this one", "mime_type": "image/jpeg", "sha256": "abc", "id": "1"}}
        ]
    }));
    let envelope = unpack(&body).unwrap();
    assert_eq!(envelope.messages.len(), 2);
    let first = parse(&envelope.messages[0].body).unwrap();
    assert_eq!(first.message_id, "wamid.A");
    assert_eq!(first.from, "+16505551234");
    assert_eq!(first.to, "+15550783881");
    assert_eq!(first.ts_raw, "2025-06-08T20:59:43Z");
    assert_eq!(
        first.text.as_deref(),
        Some("Does it come in another color?")
    );
    assert_eq!(first.msg_type.as_deref(), Some("text"));
    let second = parse(&envelope.messages[1].body).unwrap();
    assert_eq!(second.text.as_deref(), Some("this one"));
    assert_eq!(second.msg_type.as_deref(), Some("image"));
}

#[test]
fn statuses_are_counted_not_stored() {
    let body = notification(json!({
        "metadata": {"display_phone_number": "15550783881"},
        "statuses": [{"id": "wamid.X", "status": "delivered", "timestamp": "1749416383", "recipient_id": "1"}]
    }));
    let envelope = unpack(&body).unwrap();
    assert!(envelope.messages.is_empty());
    assert_eq!(envelope.statuses, ["delivered"]);
}

#[test]
fn a_broken_message_names_its_place() {
    let place = |field: &str| {
        let mut loc = json!(["body", "entry", 0, "changes", 0, "value", "messages", 0]);
        if !field.is_empty() {
            loc.as_array_mut().unwrap().push(json!(field));
        }
        loc
    };
    let first_loc = |message: Value| {
        let body = notification(json!({
            "metadata": {"display_phone_number": "15550783881"},
            "messages": [message]
        }));
        serde_json::to_value(&unpack(&body).unwrap_err().0[0].loc).unwrap()
    };
    assert_eq!(
        first_loc(json!({"from": "16505551234", "timestamp": "1749416383", "type": "text"})),
        place("message_id")
    );
    assert_eq!(
        first_loc(json!({"id": "w", "timestamp": "1749416383", "type": "hologram"})),
        place("from")
    );
    assert_eq!(
        first_loc(json!({"id": "w", "from": "1", "type": "image"})),
        place("ts")
    );
    assert_eq!(
        first_loc(json!({"id": 7, "from": "1", "timestamp": "1749416383"})),
        place("message_id")
    );
    assert!(unpack(b"[]").is_err());
    assert!(unpack(b"not json").is_err());
}
