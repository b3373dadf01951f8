//! The rule that a message body can be kept whole: the worker stores the body it validated in
//! `messages.raw` (jsonb), so a body Postgres would refuse there must be refused at the edge,
//! with a 422 the sender can act on, rather than become a row the worker can never write.
//!
//! Postgres's jsonb refuses what JSON itself allows in three places: the NUL character in a
//! string (`\u0000`: jsonb strings are text), a lone UTF-16 surrogate escape, and nesting deep
//! enough to exhaust its stack. serde_json refuses the last two when it decodes strings and past
//! its recursion limit, so walking the body once with a visitor that also looks for NUL covers
//! all three. Unknown fields are otherwise skipped unread by the field parser (message.rs), which
//! is why this walk is separate.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Why `body` cannot be stored as jsonb, in words for the sender; `None` when it can.
pub fn unstorable(body: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match Storable.deserialize(&mut de).and_then(|()| de.end()) {
        Ok(()) => None,
        Err(e) => Some(crate::message::strip_position(&e)),
    }
}

/// A JSON value Postgres can store as jsonb.
#[derive(Clone, Copy)]
struct Storable;

const NUL: &str = "strings must not contain the NUL character (\\u0000)";

impl<'de> DeserializeSeed<'de> for Storable {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Storable {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        if s.contains('\0') {
            Err(E::custom(NUL))
        } else {
            Ok(())
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(()) = map.next_key_seed(Key)? {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// An object key: a string, checked as any string is.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_str(Storable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_bodies_are_storable() {
        for body in [
            r#"{"a":1,"b":[true,null,1.5,-3,"x\u00e9"],"c":{"d":"\ud83d\ude00"}}"#,
            r#"{}"#,
            &format!("{}1{}", "[".repeat(100), "]".repeat(100)),
        ] {
            assert_eq!(unstorable(body.as_bytes()), None, "{body}");
        }
    }

    #[test]
    fn what_jsonb_refuses_is_named() {
        let nul = unstorable(br#"{"extra":"a\u0000b"}"#).unwrap();
        assert!(nul.contains("NUL"), "{nul}");
        assert!(unstorable(br#"{"a\u0000":1}"#).is_some());
        assert!(unstorable(br#"{"extra":"\ud800"}"#).is_some());
        assert!(unstorable(br#"{"extra":"\udc00x"}"#).is_some());
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(1000), "]".repeat(1000));
        assert!(unstorable(deep.as_bytes()).is_some());
        assert!(unstorable(b"{\"x\":\"\xff\"}").is_some());
    }

    /// Where and of what kind each error `parse` reports for `body` is.
    fn kinds(body: &str) -> Vec<(String, String)> {
        crate::message::parse(body.as_bytes())
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| {
                let at = serde_json::to_value(e.loc.last()).unwrap();
                (at.as_str().unwrap_or_default().to_owned(), e.kind)
            })
            .collect()
    }

    #[test]
    fn a_body_that_cannot_be_kept_whole_is_refused() {
        let nul =
            r#"{"message_id":"m","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z","x":"\u0000"}"#;
        assert_eq!(kinds(nul), [("body".to_owned(), "value_error".to_owned())]);
        let deep = format!(
            r#"{{"message_id":"m","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z","x":{}{}}}"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert_eq!(kinds(&deep)[0].1, "value_error");
        let extra = r#"{"message_id":"m","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z","x":{"y":[1,"z"]}}"#;
        assert!(crate::message::parse(extra.as_bytes()).is_ok());
    }
}
