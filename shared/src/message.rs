//! The webhook message, its validation, and FastAPI-style error details.
//!
//! The gateway validates before publishing and the worker validates again before inserting, so a
//! payload that reached the stream some other way can never poison a batch.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::raw;

pub const MAX_MESSAGE_ID_CHARS: usize = 256;
pub const MAX_MSISDN_DIGITS: usize = 20;
pub const MAX_TEXT_CHARS: usize = 4096;
pub const MAX_TYPE_CHARS: usize = 64;

/// A validated message, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub ts: DateTime<Utc>,
    /// `ts` exactly as the sender wrote it; the read API returns this.
    pub ts_raw: String,
    pub text: Option<String>,
    /// The sender's message type (`text`, `image`, …), when it says one; WhatsApp does. The
    /// body's `type`, stored as `messages.msg_type`.
    pub msg_type: Option<String>,
}

/// One entry of a 422 body: `{"loc":["body","from"],"msg":"...","type":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub loc: Vec<Loc>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Loc {
    Key(String),
    Index(u64),
}

impl FieldError {
    fn field(field: &str, kind: &str, msg: impl Into<String>) -> Self {
        Self {
            loc: vec![Loc::Key("body".into()), Loc::Key(field.into())],
            msg: msg.into(),
            kind: kind.into(),
        }
    }

    fn body(kind: &str, msg: impl Into<String>) -> Self {
        Self {
            loc: vec![Loc::Key("body".into())],
            msg: msg.into(),
            kind: kind.into(),
        }
    }
}

/// Why a body is not a valid message; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl std::fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let field = match e.loc.last() {
                Some(Loc::Key(k)) => k.clone(),
                Some(Loc::Index(i)) => i.to_string(),
                None => String::new(),
            };
            write!(f, "{field}: {}", e.msg)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// The wire shape. Borrowing keeps the hot path free of copies for unescaped strings; unknown
/// fields are ignored as FastAPI does, and a repeated known field is an error (two parsers could
/// otherwise disagree on which value was signed).
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    message_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    ts: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    msg_type: Option<Cow<'a, str>>,
}

const FIELDS: [&str; 4] = ["message_id", "from", "to", "ts"];

/// Parses and validates a raw webhook body.
pub fn parse(body: &[u8]) -> Result<Message, ValidationErrors> {
    let wire = serde_json::from_slice::<Wire<'_>>(body)
        .map_err(|err| ValidationErrors(explain_parse_error(body, &err)))?;
    let unstorable = raw::unstorable(body);
    match (validate(wire), unstorable) {
        (Ok(message), None) => Ok(message),
        (result, reason) => {
            let mut errors = result.err().map(|e| e.0).unwrap_or_default();
            if let Some(reason) = reason {
                errors.push(FieldError::body(
                    "value_error",
                    format!("Value error, the body is stored whole as JSON, so {reason}"),
                ));
            }
            Err(ValidationErrors(errors))
        }
    }
}

fn validate(wire: Wire<'_>) -> Result<Message, ValidationErrors> {
    let mut errors = Vec::new();

    let message_id = match wire.message_id {
        None => {
            errors.push(missing("message_id"));
            None
        }
        Some(id) => match check_message_id(&id) {
            Ok(()) => Some(id.into_owned()),
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
    let from = msisdn_field("from", wire.from, &mut errors);
    let to = msisdn_field("to", wire.to, &mut errors);
    let ts = match wire.ts {
        None => {
            errors.push(missing("ts"));
            None
        }
        Some(raw) => match parse_ts(&raw) {
            Some(ts) => Some((ts, raw.into_owned())),
            None => {
                errors.push(FieldError::field(
                    "ts",
                    "value_error",
                    "Value error, ts must be an ISO-8601 UTC timestamp like 2025-01-15T10:00:00Z",
                ));
                None
            }
        },
    };
    let text = match wire.text {
        None => None,
        Some(text) => {
            if text.chars().count() > MAX_TEXT_CHARS {
                errors.push(FieldError::field(
                    "text",
                    "string_too_long",
                    format!("String should have at most {MAX_TEXT_CHARS} characters"),
                ));
            } else if text.contains('\0') {
                // Postgres text cannot hold NUL.
                errors.push(FieldError::field(
                    "text",
                    "value_error",
                    "Value error, text must not contain NUL characters",
                ));
            }
            Some(text.into_owned())
        }
    };

    let msg_type = match wire.msg_type {
        None => None,
        Some(msg_type) => {
            if msg_type.is_empty()
                || msg_type.chars().count() > MAX_TYPE_CHARS
                || msg_type.chars().any(char::is_control)
            {
                errors.push(FieldError::field(
                    "type",
                    "value_error",
                    format!(
                        "Value error, type must be 1 to {MAX_TYPE_CHARS} characters without control characters"
                    ),
                ));
            }
            Some(msg_type.into_owned())
        }
    };

    match (message_id, from, to, ts) {
        (Some(message_id), Some(from), Some(to), Some((ts, ts_raw))) if errors.is_empty() => {
            Ok(Message {
                message_id,
                from,
                to,
                ts,
                ts_raw,
                text,
                msg_type,
            })
        }
        _ => Err(ValidationErrors(errors)),
    }
}

fn missing(field: &str) -> FieldError {
    FieldError::field(field, "missing", "Field required")
}

fn check_message_id(id: &str) -> Result<(), FieldError> {
    if id.is_empty() {
        return Err(FieldError::field(
            "message_id",
            "string_too_short",
            "String should have at least 1 character",
        ));
    }
    if id.chars().count() > MAX_MESSAGE_ID_CHARS {
        return Err(FieldError::field(
            "message_id",
            "string_too_long",
            format!("String should have at most {MAX_MESSAGE_ID_CHARS} characters"),
        ));
    }
    // It travels as the Nats-Msg-Id header: a control character would corrupt the header block.
    if id.chars().any(char::is_control) {
        return Err(FieldError::field(
            "message_id",
            "value_error",
            "Value error, message_id must not contain control characters",
        ));
    }
    Ok(())
}

fn msisdn_field(
    field: &str,
    value: Option<Cow<'_, str>>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match value {
        None => {
            errors.push(missing(field));
            None
        }
        Some(v) if is_msisdn(&v) => Some(v.into_owned()),
        Some(_) => {
            errors.push(FieldError::field(
                field,
                "string_pattern_mismatch",
                format!(
                    "String should match pattern '^\\+[0-9]{{1,{MAX_MSISDN_DIGITS}}}$' (E.164: '+' then digits)"
                ),
            ));
            None
        }
    }
}

/// `+` then 1 to [`MAX_MSISDN_DIGITS`] ASCII digits.
pub fn is_msisdn(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (1..=MAX_MSISDN_DIGITS).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Strict `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, fraction 1 to 9 digits, UTC only.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20 || *b.last()? != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        part.iter()
            .try_fold(0u32, |acc, d| Some(acc * 10 + u32::from(d - b'0')))
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &b[19..b.len() - 1];
    let nanos = match rest {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            let digits = num(20..20 + frac.len())?;
            digits * 10u32.pow(9 - frac.len() as u32)
        }
        _ => return None,
    };
    if second > 59 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some(date.and_time(time).and_utc())
}

/// Turns a serde error into per-field details. Only the error path pays for the second parse.
fn explain_parse_error(body: &[u8], err: &serde_json::Error) -> Vec<FieldError> {
    use serde_json::error::Category;
    let json_invalid = |err: &serde_json::Error| {
        vec![FieldError {
            loc: vec![Loc::Key("body".into()), Loc::Index(err.column() as u64)],
            msg: format!("JSON decode error: {}", strip_position(err)),
            kind: "json_invalid".into(),
        }]
    };
    if matches!(
        err.classify(),
        Category::Syntax | Category::Eof | Category::Io
    ) {
        return json_invalid(err);
    }
    // The typed parse can stop at the first wrong type; the generic one finds what else is wrong
    // with the document (deep nesting included).
    let value = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => value,
        Err(err) => return json_invalid(&err),
    };
    let Some(object) = value.as_object() else {
        return vec![FieldError::body(
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        )];
    };
    let mut errors: Vec<FieldError> = FIELDS
        .iter()
        .chain([&"text", &"type"])
        .filter_map(|field| match object.get(*field) {
            Some(serde_json::Value::String(_)) => None,
            Some(serde_json::Value::Null) if matches!(*field, "text" | "type") => None,
            Some(_) => Some(FieldError::field(
                field,
                "string_type",
                "Input should be a valid string",
            )),
            None => None,
        })
        .collect();
    if errors.is_empty() {
        // Every field has the right type, so serde objected to the shape itself (a repeated key).
        errors.push(FieldError::body("value_error", strip_position(err)));
    }
    errors
}

/// serde's message without its "at line 1 column 7" tail, which says nothing to a sender.
pub(crate) fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"{"message_id":"m1","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T10:00:00Z","text":"Hello"}"#;

    fn kinds(body: &str) -> Vec<(String, String)> {
        parse(body.as_bytes())
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| {
                let field = match e.loc.last().unwrap() {
                    Loc::Key(k) => k.clone(),
                    Loc::Index(_) => "<pos>".into(),
                };
                (field, e.kind)
            })
            .collect()
    }

    #[test]
    fn valid_message_parses() {
        let m = parse(VALID.as_bytes()).unwrap();
        assert_eq!(m.message_id, "m1");
        assert_eq!(m.from, "+919876543210");
        assert_eq!(m.text.as_deref(), Some("Hello"));
        assert_eq!(m.ts_raw, "2025-01-15T10:00:00Z");
        assert_eq!(m.ts.timestamp(), 1_736_935_200);
    }

    #[test]
    fn text_is_optional_and_may_be_null() {
        let body = r#"{"message_id":"m","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z"}"#;
        assert_eq!(parse(body.as_bytes()).unwrap().text, None);
        let body =
            r#"{"message_id":"m","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z","text":null}"#;
        assert_eq!(parse(body.as_bytes()).unwrap().text, None);
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let body = r#"{"message_id":"m\u00e9","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z","text":"a\"b"}"#;
        let m = parse(body.as_bytes()).unwrap();
        assert_eq!(m.message_id, "mé");
        assert_eq!(m.text.as_deref(), Some("a\"b"));
    }

    #[test]
    fn every_missing_field_is_reported() {
        let got = kinds("{}");
        let fields: Vec<_> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["message_id", "from", "to", "ts"]);
        assert!(got.iter().all(|(_, k)| k == "missing"));
    }

    #[test]
    fn field_rules() {
        let with = |k: &str, v: &str| {
            let mut m: serde_json::Value = serde_json::from_str(VALID).unwrap();
            m[k] = serde_json::from_str(v).unwrap();
            m.to_string()
        };
        assert_eq!(kinds(&with("message_id", r#""""#))[0].1, "string_too_short");
        assert_eq!(
            kinds(&with("message_id", &format!("\"{}\"", "x".repeat(257))))[0].1,
            "string_too_long"
        );
        assert_eq!(kinds(&with("message_id", r#""a\nb""#))[0].1, "value_error");
        for bad in [
            r#""919876543210""#,
            r#""+""#,
            r#""+12a""#,
            r#""+ 1""#,
            r#""++1""#,
        ] {
            assert_eq!(
                kinds(&with("from", bad)),
                [("from".into(), "string_pattern_mismatch".into())],
                "{bad}"
            );
        }
        assert_eq!(kinds(&with("to", "123"))[0].1, "string_type");
        assert_eq!(
            kinds(&with("text", &format!("\"{}\"", "é".repeat(4097))))[0].1,
            "string_too_long"
        );
        assert!(parse(with("text", &format!("\"{}\"", "é".repeat(4096))).as_bytes()).is_ok());
        assert_eq!(kinds(&with("text", r#""a\u0000b""#))[0].1, "value_error");
        assert_eq!(kinds(&with("ts", r#""yesterday""#))[0].1, "value_error");
    }

    #[test]
    fn timestamps_are_strict_utc() {
        for ok in [
            "2025-01-15T10:00:00Z",
            "2025-01-15T10:00:00.5Z",
            "2025-01-15T10:00:00.123456789Z",
            "2024-02-29T23:59:59Z",
        ] {
            assert!(parse_ts(ok).is_some(), "{ok}");
        }
        for bad in [
            "2025-01-15T10:00:00",
            "2025-01-15T10:00:00+00:00",
            "2025-01-15 10:00:00Z",
            "2025-01-15T10:00Z",
            "2025-01-15T10:00:00.Z",
            "2025-01-15T10:00:00.1234567890Z",
            "2025-02-29T10:00:00Z",
            "2025-01-15T24:00:00Z",
            "2025-01-15T10:00:60Z",
            "2025-1-15T10:00:00Z",
            "2025-01-15t10:00:00z",
            "+2025-01-15T10:00:00Z",
            "２０２５-01-15T10:00:00Z",
        ] {
            assert!(parse_ts(bad).is_none(), "{bad}");
        }
        let ts = parse_ts("2025-01-15T10:00:00.25Z").unwrap();
        assert_eq!(ts.timestamp_subsec_millis(), 250);
    }

    #[test]
    fn not_json_not_an_object_and_repeated_keys_are_errors() {
        assert_eq!(kinds("not json")[0].1, "json_invalid");
        assert_eq!(kinds("")[0].1, "json_invalid");
        assert_eq!(kinds("[1,2]")[0].1, "model_attributes_type");
        let dup = r#"{"message_id":"a","message_id":"b","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z"}"#;
        assert_eq!(kinds(dup)[0].1, "value_error");
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(kinds(&deep)[0].1, "json_invalid");
    }

    #[test]
    fn errors_never_echo_the_input() {
        let body = r#"{"message_id":"secret-id","from":"secret-from","to":"+2","ts":"x"}"#;
        let text = serde_json::to_string(&parse(body.as_bytes()).unwrap_err().0).unwrap();
        assert!(!text.contains("secret"), "{text}");
    }
}
