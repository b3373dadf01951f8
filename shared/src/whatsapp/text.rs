//! The human-readable part of each WhatsApp message type, which becomes the stored `text`, and
//! the parts of the notification kept whole in the message's raw payload.
//!
//! `text` is a convenience for reading and searching; the type's own fields (media ids,
//! coordinates, reply ids, order items) stay in the raw payload. Nothing here may refuse a
//! message: a part missing or of an unexpected shape yields no text, and a type this code does
//! not know is stored with its `type` as Meta sent it and no text.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::message::MAX_TEXT_CHARS;

/// The readable part of a message of type `kind` (Meta's `type`), fit to pass the message
/// validator whatever Meta sent: NUL characters dropped (Postgres text cannot hold them) and cut
/// to [`MAX_TEXT_CHARS`] characters (the raw payload keeps the whole).
pub fn derive(kind: &str, message: &Value) -> Option<String> {
    let part = |path: &[&str]| -> Option<&str> {
        path.iter()
            .try_fold(message, |at, key| at.get(key))
            .and_then(Value::as_str)
    };
    let text: Cow<'_, str> = match kind {
        "text" => part(&["text", "body"])?.into(),
        "image" | "video" => part(&[kind, "caption"])?.into(),
        "document" => part(&["document", "caption"])
            .or_else(|| part(&["document", "filename"]))?
            .into(),
        "button" => part(&["button", "text"])?.into(),
        "interactive" => interactive(message.get("interactive")?)?.into(),
        "reaction" => part(&["reaction", "emoji"])?.into(),
        "location" => {
            let named = [part(&["location", "name"]), part(&["location", "address"])];
            let named: Vec<&str> = named
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect();
            if named.is_empty() {
                return None;
            }
            named.join(", ").into()
        }
        "contacts" => message
            .get("contacts")?
            .get(0)?
            .get("name")?
            .get("formatted_name")?
            .as_str()?
            .into(),
        "order" => part(&["order", "text"])?.into(),
        "system" => part(&["system", "body"])?.into(),
        _ => return None,
    };
    Some(fit(&text))
}

/// A reply to an interactive message: the title of the button or list row tapped, or for a
/// Flow's reply (`nfm_reply`) its `body`, else its `name`.
fn interactive(interactive: &Value) -> Option<&str> {
    let kind = interactive.get("type")?.as_str()?;
    let reply = interactive.get(kind)?;
    let field = |name: &str| reply.get(name).and_then(Value::as_str);
    match kind {
        "nfm_reply" => field("body").or_else(|| field("name")),
        _ => field("title"),
    }
}

fn fit(text: &str) -> String {
    text.chars()
        .filter(|&c| c != '\0')
        .take(MAX_TEXT_CHARS)
        .collect()
}

/// A part of the notification as Meta sent it, byte for byte; or, when it holds a NUL character
/// (which jsonb cannot store, so the whole message would be refused), the same value with each
/// NUL replaced by U+FFFD.
pub enum Kept<'a> {
    Verbatim(&'a RawValue),
    Cleaned(Value),
}

impl<'a> Kept<'a> {
    pub fn of(raw: &'a RawValue) -> Self {
        // A cheap over-approximation: an escaped backslash followed by "u0000" matches too, and
        // only costs the parse below.
        if !raw.get().contains("\\u0000") {
            return Kept::Verbatim(raw);
        }
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(mut value) => {
                replace_nul(&mut value);
                Kept::Cleaned(value)
            }
            // Not a value serde_json can hold (a lone surrogate): the validator names it.
            Err(_) => Kept::Verbatim(raw),
        }
    }
}

impl Serialize for Kept<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Kept::Verbatim(raw) => raw.serialize(serializer),
            Kept::Cleaned(value) => value.serialize(serializer),
        }
    }
}

fn replace_nul(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(map) => {
            // Keys cannot be changed in place.
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                replace_nul(&mut item);
                map.insert(key.replace('\0', "\u{FFFD}"), item);
            }
        }
        _ => {}
    }
}
