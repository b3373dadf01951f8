//! Property tests of the webhook body path: signature check, parsing and validation.
//!
//! The acceptance oracle here is written independently of `message.rs` (from docs/api.md's
//! table of rules), so a drift between the two fails a test.

use chrono::{DateTime, TimeZone, Utc};
use ingest_shared::message::{self, MAX_MESSAGE_ID_CHARS, MAX_TEXT_CHARS, is_msisdn, parse_ts};
use ingest_shared::signature::{WebhookSecrets, sign};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const KEY: &str = "prop-secret";

/// One field's value and whether docs/api.md's rules allow it.
#[derive(Debug, Clone)]
struct Field {
    value: Option<Value>,
    valid: bool,
}

fn valid_msisdn() -> impl Strategy<Value = String> {
    "[0-9]{1,20}".prop_map(|d| format!("+{d}"))
}

fn msisdn_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        4 => valid_msisdn().prop_map(|s| Field { value: Some(json!(s)), valid: true }),
        1 => "[0-9]{1,20}".prop_map(|d| Field { value: Some(json!(d)), valid: false }),
        1 => "[0-9]{21,25}".prop_map(|d| Field { value: Some(json!(format!("+{d}"))), valid: false }),
        1 => "\\+[0-9]{0,5}[^0-9][0-9]{0,5}".prop_map(|s| Field { value: Some(json!(s)), valid: false }),
        1 => Just(Field { value: Some(json!("+")), valid: false }),
        1 => any::<u64>().prop_map(|n| Field { value: Some(json!(n)), valid: false }),
        1 => Just(Field { value: None, valid: false }),
    ]
}

fn utc_time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_102_444_800, 0u32..1_000_000_000)
        .prop_map(|(s, n)| Utc.timestamp_opt(s, n).single().expect("in range"))
}

fn ts_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        3 => utc_time().prop_map(|t| Field {
            value: Some(json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())),
            valid: true,
        }),
        2 => (utc_time(), 1usize..=9).prop_map(|(t, digits)| {
            let frac = format!("{:09}", t.timestamp_subsec_nanos());
            Field {
                value: Some(json!(format!("{}.{}Z", t.format("%Y-%m-%dT%H:%M:%S"), &frac[..digits]))),
                valid: true,
            }
        }),
        1 => utc_time().prop_map(|t| Field {
            value: Some(json!(t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())),
            valid: false,
        }),
        1 => utc_time().prop_map(|t| Field {
            value: Some(json!(t.format("%Y-%m-%d %H:%M:%SZ").to_string())),
            valid: false,
        }),
        1 => ".{0,30}".prop_filter("not a timestamp", |s| parse_like_readme(s).is_none())
            .prop_map(|s| Field { value: Some(json!(s)), valid: false }),
        1 => Just(Field { value: None, valid: false }),
    ]
}

/// docs/api.md's ts rule, for the arbitrary-string case: `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`.
fn parse_like_readme(s: &str) -> Option<()> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|p| p.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    (shape && chrono::NaiveDateTime::parse_from_str(&s[..19], "%Y-%m-%dT%H:%M:%S").is_ok())
        .then_some(())
}

fn message_id_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        4 => "[^\\p{Cc}]{1,40}".prop_map(|s| Field { value: Some(json!(s)), valid: true }),
        1 => Just(Field { value: Some(json!("x".repeat(MAX_MESSAGE_ID_CHARS))), valid: true }),
        1 => Just(Field { value: Some(json!("é".repeat(MAX_MESSAGE_ID_CHARS + 1))), valid: false }),
        1 => Just(Field { value: Some(json!("")), valid: false }),
        1 => "[a-z]{0,5}[\\x00-\\x1f\\x7f][a-z]{0,5}".prop_map(|s| Field { value: Some(json!(s)), valid: false }),
        1 => any::<i32>().prop_map(|n| Field { value: Some(json!(n)), valid: false }),
        1 => Just(Field { value: None, valid: false }),
    ]
}

fn text_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        3 => "[^\\x00]{0,60}".prop_map(|s| Field { value: Some(json!(s)), valid: true }),
        1 => Just(Field { value: None, valid: true }),
        1 => Just(Field { value: Some(Value::Null), valid: true }),
        1 => Just(Field { value: Some(json!("ü".repeat(MAX_TEXT_CHARS))), valid: true }),
        1 => Just(Field { value: Some(json!("ü".repeat(MAX_TEXT_CHARS + 1))), valid: false }),
        1 => "[a-z]{0,5}\\x00[a-z]{0,5}".prop_map(|s| Field { value: Some(json!(s)), valid: false }),
        1 => any::<bool>().prop_map(|b| Field { value: Some(json!(b)), valid: false }),
    ]
}

#[derive(Debug, Clone)]
enum Signing {
    Right,
    RightUppercasePrefixed,
    WrongKey,
    Tampered,
    Missing,
    Garbage(Vec<u8>),
}

fn signing() -> impl Strategy<Value = Signing> {
    prop_oneof![
        4 => Just(Signing::Right),
        1 => Just(Signing::RightUppercasePrefixed),
        1 => Just(Signing::WrongKey),
        1 => Just(Signing::Tampered),
        1 => Just(Signing::Missing),
        1 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Signing::Garbage),
    ]
}

/// What the gateway decides, in the order it decides: signature first, then the body.
fn accepted(secrets: &WebhookSecrets, body: &[u8], header: Option<&[u8]>) -> bool {
    secrets.verify(body, header).is_some() && message::parse(body).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = message::parse(&body);
    }

    #[test]
    fn parse_never_panics_on_json_shaped_text(body in "[{}\\[\\]\",:0-9a-z_+\\-.TZ\\\\ ]{0,200}") {
        let _ = message::parse(body.as_bytes());
    }

    #[test]
    fn verify_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        header in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
        keys in "[a-z,]{0,20}",
    ) {
        let _ = WebhookSecrets::from_list(&keys).verify(&body, header.as_deref());
    }

    /// A body is accepted iff every field is valid and the signature is right.
    #[test]
    fn accepted_iff_valid_and_correctly_signed(
        id in message_id_field(),
        from in msisdn_field(),
        to in msisdn_field(),
        ts in ts_field(),
        text in text_field(),
        extra in proptest::option::of(("[a-z]{1,8}", any::<i64>())),
        how in signing(),
    ) {
        let mut object = Map::new();
        for (name, field) in [("message_id", &id), ("from", &from), ("to", &to), ("ts", &ts), ("text", &text)] {
            if let Some(value) = &field.value {
                object.insert(name.to_owned(), value.clone());
            }
        }
        if let Some((key, value)) = &extra {
            // Unknown fields are ignored; known names are left alone.
            if !object.contains_key(key) && !["message_id", "from", "to", "ts", "text"].contains(&key.as_str()) {
                object.insert(key.clone(), json!(value));
            }
        }
        let body = Value::Object(object).to_string().into_bytes();
        let valid = id.valid && from.valid && to.valid && ts.valid && text.valid;
        let secrets = WebhookSecrets::from_list(&format!("old-key,{KEY}"));
        let right = sign(KEY.as_bytes(), &body);
        let (header, signed_right, checked_body) = match &how {
            Signing::Right => (Some(right.into_bytes()), true, body.clone()),
            Signing::RightUppercasePrefixed => {
                (Some(format!("SHA256={}", right.to_uppercase()).into_bytes()), true, body.clone())
            }
            Signing::WrongKey => (Some(sign(b"not-the-key", &body).into_bytes()), false, body.clone()),
            Signing::Tampered => {
                let mut tampered = body.clone();
                tampered.push(b' ');
                (Some(right.into_bytes()), false, tampered)
            }
            Signing::Missing => (None, false, body.clone()),
            Signing::Garbage(bytes) => (Some(bytes.clone()), false, body.clone()),
        };
        prop_assert_eq!(
            accepted(&secrets, &checked_body, header.as_deref()),
            valid && signed_right,
            "valid={} signing={:?} body={}", valid, how, String::from_utf8_lossy(&body)
        );
        // The validator alone agrees with the oracle, signature aside.
        prop_assert_eq!(message::parse(&body).is_ok(), valid);
    }

    /// Whatever parses re-serialises to a body that parses to the same message.
    #[test]
    fn a_parsed_message_round_trips(
        id in "[^\\p{Cc}]{1,40}",
        from in valid_msisdn(),
        to in valid_msisdn(),
        t in utc_time(),
        text in proptest::option::of("[^\\x00]{0,60}"),
    ) {
        let ts = t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string();
        let body = json!({"message_id": id, "from": from, "to": to, "ts": ts, "text": text}).to_string();
        let first = message::parse(body.as_bytes()).expect("valid by construction");
        prop_assert_eq!(first.ts, t);
        prop_assert_eq!(&first.ts_raw, &ts);
        let again = json!({
            "message_id": first.message_id, "from": first.from, "to": first.to,
            "ts": first.ts_raw, "text": first.text,
        }).to_string();
        prop_assert_eq!(message::parse(again.as_bytes()).expect("still valid"), first);
    }

    /// `from=` as curl sends it: `+` unencoded in a query string decodes as a space. No
    /// normalisation function exists in `shared` yet (the read API owns it); this pins the
    /// rule it must follow: a leading space restored to `+` gives back exactly a valid MSISDN,
    /// and no other character can stand in for the `+`.
    #[test]
    fn msisdn_plus_as_space_round_trips(msisdn in valid_msisdn(), other in "[^+ ]") {
        prop_assert!(is_msisdn(&msisdn));
        let as_decoded = msisdn.replacen('+', " ", 1);
        prop_assert!(!is_msisdn(&as_decoded));
        let restored = match as_decoded.strip_prefix(' ') {
            Some(rest) => format!("+{rest}"),
            None => as_decoded.clone(),
        };
        prop_assert_eq!(&restored, &msisdn);
        prop_assert!(!is_msisdn(&msisdn.replacen('+', &other, 1)));
    }

    /// Timestamps: every UTC instant formatted the documented way parses back to itself, at
    /// nanosecond precision.
    #[test]
    fn timestamps_round_trip(t in utc_time()) {
        let text = t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string();
        prop_assert_eq!(parse_ts(&text), Some(t));
        let text = t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        prop_assert_eq!(parse_ts(&text).map(|p| p.timestamp()), Some(t.timestamp()));
    }
}
