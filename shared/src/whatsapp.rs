//! Meta's WhatsApp Cloud API webhook envelope, unpacked into our own messages.
//!
//! One notification may carry several messages (and delivery statuses) across entries and
//! changes. Each message becomes one canonical message body, published on its own with its
//! WhatsApp id as `Nats-Msg-Id`, so the same exactly-once path applies to every one of them.

use serde::Deserialize;
use serde_json::json;

use crate::message::{self, FieldError, Loc, ValidationErrors};

#[derive(Deserialize)]
struct Notification {
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    value: Option<ChangeValue>,
}

#[derive(Deserialize)]
struct ChangeValue {
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    messages: Vec<WaMessage>,
    #[serde(default)]
    statuses: Vec<WaStatus>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    display_phone_number: Option<String>,
}

#[derive(Deserialize)]
struct WaMessage {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<WaText>,
}

#[derive(Deserialize)]
struct WaText {
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
struct WaStatus {
    #[serde(default)]
    status: Option<String>,
}

/// One chat message of the envelope, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub message_id: String,
    /// Our canonical message body (what `/webhook` takes), validated.
    pub body: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Envelope {
    pub messages: Vec<Unpacked>,
    /// Delivery statuses (`sent`, `delivered`, `read`, `failed`, …): counted, not stored.
    pub statuses: Vec<String>,
}

/// Unpacks a notification. Any message that would not be a valid message on `/webhook` makes the
/// whole envelope a 422, naming where it is, rather than storing part of it silently.
pub fn unpack(body: &[u8]) -> Result<Envelope, ValidationErrors> {
    let notification: Notification = serde_json::from_slice(body).map_err(|e| {
        ValidationErrors(vec![FieldError {
            loc: vec![Loc::Key("body".into())],
            msg: format!(
                "not a WhatsApp notification: {}",
                message::strip_position(&e)
            ),
            kind: "value_error".into(),
        }])
    })?;
    if notification.object.as_deref() != Some("whatsapp_business_account") {
        return Err(ValidationErrors(vec![FieldError {
            loc: vec![Loc::Key("body".into()), Loc::Key("object".into())],
            msg: "Input should be 'whatsapp_business_account'".into(),
            kind: "literal_error".into(),
        }]));
    }
    let mut envelope = Envelope::default();
    let mut errors = Vec::new();
    for (e, entry) in notification.entry.into_iter().enumerate() {
        for (c, change) in entry.changes.into_iter().enumerate() {
            let Some(value) = change.value else { continue };
            let to = value
                .metadata
                .and_then(|m| m.display_phone_number)
                .map(|n| {
                    format!(
                        "+{}",
                        n.chars().filter(char::is_ascii_digit).collect::<String>()
                    )
                });
            for (m, wa) in value.messages.into_iter().enumerate() {
                let at = |field: &str| {
                    vec![
                        Loc::Key("body".into()),
                        Loc::Key("entry".into()),
                        Loc::Index(e as u64),
                        Loc::Key("changes".into()),
                        Loc::Index(c as u64),
                        Loc::Key("value".into()),
                        Loc::Key("messages".into()),
                        Loc::Index(m as u64),
                        Loc::Key(field.into()),
                    ]
                };
                match convert(wa, to.as_deref()) {
                    Ok(unpacked) => envelope.messages.push(unpacked),
                    Err(ValidationErrors(list)) => {
                        errors.extend(list.into_iter().map(|mut err| {
                            let field = match err.loc.last() {
                                Some(Loc::Key(k)) => k.clone(),
                                _ => String::new(),
                            };
                            err.loc = at(&field);
                            err
                        }))
                    }
                }
            }
            envelope.statuses.extend(
                value
                    .statuses
                    .into_iter()
                    .map(|s| s.status.unwrap_or_else(|| "unknown".into())),
            );
        }
    }
    if errors.is_empty() {
        Ok(envelope)
    } else {
        Err(ValidationErrors(errors))
    }
}

fn convert(wa: WaMessage, to: Option<&str>) -> Result<Unpacked, ValidationErrors> {
    let ts = wa.timestamp.as_ref().and_then(|t| match t {
        serde_json::Value::String(s) => s.parse::<i64>().ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    });
    let ts = ts
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    let from = wa.from.map(|f| {
        if f.starts_with('+') {
            f
        } else {
            format!("+{f}")
        }
    });
    let text = wa.text.and_then(|t| t.body);
    // The same validator as /webhook: the worker will accept exactly what passes here.
    let body = json!({
        "message_id": wa.id,
        "from": from,
        "to": to,
        "ts": ts.unwrap_or_else(|| "invalid unix timestamp".into()),
        "text": text,
        "type": wa.kind,
    });
    let body = serde_json::to_vec(&strip_nulls(body)).expect("a JSON value serialises");
    let parsed = message::parse(&body)?;
    Ok(Unpacked {
        message_id: parsed.message_id,
        body,
    })
}

/// Absent fields stay absent, so the validator reports them as missing rather than mistyped.
fn strip_nulls(mut value: serde_json::Value) -> serde_json::Value {
    if let Some(map) = value.as_object_mut() {
        map.retain(|k, v| !v.is_null() || k == "text");
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(value: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]
        }))
        .unwrap()
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
        let first = message::parse(&envelope.messages[0].body).unwrap();
        assert_eq!(first.message_id, "wamid.A");
        assert_eq!(first.from, "+16505551234");
        assert_eq!(first.to, "+15550783881");
        assert_eq!(first.ts_raw, "2025-06-08T20:59:43Z");
        assert_eq!(
            first.text.as_deref(),
            Some("Does it come in another color?")
        );
        assert_eq!(first.kind.as_deref(), Some("text"));
        let second = message::parse(&envelope.messages[1].body).unwrap();
        assert_eq!(second.text, None);
        assert_eq!(second.kind.as_deref(), Some("image"));
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
        let body = notification(json!({
            "metadata": {"display_phone_number": "15550783881"},
            "messages": [{"from": "16505551234", "timestamp": "1749416383", "type": "text"}]
        }));
        let errors = unpack(&body).unwrap_err().0;
        assert_eq!(
            serde_json::to_value(&errors[0].loc).unwrap(),
            json!([
                "body",
                "entry",
                0,
                "changes",
                0,
                "value",
                "messages",
                0,
                "message_id"
            ])
        );
        assert!(unpack(b"[]").is_err());
        assert!(unpack(b"not json").is_err());
    }
}
