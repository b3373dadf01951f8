//! Meta's WhatsApp Cloud API webhook envelope, unpacked into our own messages.
//!
//! One notification may carry several messages (and delivery statuses) across entries and
//! changes. Each message becomes one canonical message body, published on its own with its
//! WhatsApp id as `Nats-Msg-Id`, so the same exactly-once path applies to every one of them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::message::{self, FieldError, Loc, ValidationErrors};

mod text;

#[cfg(test)]
mod tests;

#[derive(Deserialize)]
struct Notification<'a> {
    #[serde(default)]
    object: Option<String>,
    #[serde(borrow, default)]
    entry: Vec<Entry<'a>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow, default)]
    changes: Vec<Change<'a>>,
}

#[derive(Deserialize)]
struct Change<'a> {
    #[serde(borrow, default)]
    value: Option<ChangeValue<'a>>,
}

/// The parts a stored message keeps as they came are borrowed unparsed, so its raw payload holds
/// Meta's very bytes (key order, numbers) rather than a re-serialisation.
#[derive(Deserialize)]
struct ChangeValue<'a> {
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    contacts: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Vec<&'a RawValue>,
    #[serde(default)]
    statuses: Vec<WaStatus>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    display_phone_number: Option<String>,
}

#[derive(Deserialize)]
struct WaStatus {
    #[serde(default)]
    status: Option<String>,
}

/// The canonical body published for one WhatsApp message: the fields of `/webhook`, and under
/// `whatsapp` what Meta sent for it, which the worker stores as the message's raw payload.
#[derive(Serialize)]
struct Canonical<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    ts: String,
    text: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    msg_type: Option<&'a Value>,
    whatsapp: Original<'a>,
}

#[derive(Serialize)]
struct Original<'a> {
    message: text::Kept<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<text::Kept<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contacts: Option<text::Kept<'a>>,
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
    let notification: Notification<'_> = serde_json::from_slice(body).map_err(|e| {
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
                .and_then(|m| serde_json::from_str::<Metadata>(m.get()).ok())
                .and_then(|m| m.display_phone_number)
                .map(|n| {
                    format!(
                        "+{}",
                        n.chars().filter(char::is_ascii_digit).collect::<String>()
                    )
                });
            for (m, wa) in value.messages.into_iter().enumerate() {
                let at = |field: &str| {
                    let mut at = vec![
                        Loc::Key("body".into()),
                        Loc::Key("entry".into()),
                        Loc::Index(e as u64),
                        Loc::Key("changes".into()),
                        Loc::Index(c as u64),
                        Loc::Key("value".into()),
                        Loc::Key("messages".into()),
                        Loc::Index(m as u64),
                    ];
                    // An error about the whole body is about this message.
                    if field != "body" {
                        at.push(Loc::Key(field.into()));
                    }
                    at
                };
                let change = Around {
                    to: to.as_deref(),
                    metadata: value.metadata,
                    contacts: value.contacts,
                };
                match convert(wa, &change) {
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

/// What one change of the envelope adds to each of its messages.
struct Around<'a> {
    to: Option<&'a str>,
    metadata: Option<&'a RawValue>,
    contacts: Option<&'a RawValue>,
}

fn convert(wa: &RawValue, change: &Around<'_>) -> Result<Unpacked, ValidationErrors> {
    // Read as a tree, not a typed struct: an optional part of an unexpected shape then yields no
    // text instead of refusing the envelope, and every field of every type stays reachable.
    let parsed: Value = serde_json::from_str(wa.get()).map_err(|e| {
        ValidationErrors(vec![FieldError {
            loc: vec![Loc::Key("body".into())],
            msg: format!("not a WhatsApp message: {}", message::strip_position(&e)),
            kind: "value_error".into(),
        }])
    })?;
    let field = |name: &str| parsed.get(name).filter(|v| !v.is_null());
    let ts = field("timestamp").and_then(|t| match t {
        Value::String(s) => s.parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    });
    let ts = ts
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    let from = field("from").and_then(Value::as_str).map(|f| {
        if f.starts_with('+') {
            f.to_owned()
        } else {
            format!("+{f}")
        }
    });
    let msg_type = field("type");
    let body = Canonical {
        message_id: field("id"),
        // A `from` of the wrong type is passed on as it is, for the validator to name.
        from: from.or_else(|| field("from").map(Value::to_string)),
        to: change.to,
        ts: ts.unwrap_or_else(|| "invalid unix timestamp".into()),
        text: msg_type
            .and_then(Value::as_str)
            .and_then(|kind| text::derive(kind, &parsed)),
        msg_type,
        whatsapp: Original {
            message: text::Kept::of(wa),
            metadata: change.metadata.map(text::Kept::of),
            contacts: change.contacts.map(text::Kept::of),
        },
    };
    let body = serde_json::to_vec(&body).expect("a JSON value serialises");
    // The same validator as /webhook: the worker will accept exactly what passes here.
    let parsed = message::parse(&body)?;
    Ok(Unpacked {
        message_id: parsed.message_id,
        body,
    })
}
