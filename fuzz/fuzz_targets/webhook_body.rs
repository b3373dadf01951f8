//! The webhook body path as the gateway runs it: signature check over the raw bytes, then parse
//! and validate. The input is split at the first newline into an `X-Signature` header value and
//! a body. Properties: nothing panics; a correct signature is always recognised; whatever the
//! validator accepts satisfies the documented rules.
#![no_main]

use ingest_shared::message::{self, MAX_MESSAGE_ID_CHARS, MAX_TEXT_CHARS, is_msisdn};
use ingest_shared::signature::{WebhookSecrets, sign};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "fuzz-key";

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let secrets = WebhookSecrets::from_list(KEY);

    // Arbitrary header bytes: never panics; accepted only if it is the right signature.
    if secrets.verify(body, Some(header)).is_some() {
        let header = std::str::from_utf8(header).expect("a matching signature is ASCII hex");
        let hex = header.trim();
        let hex = hex.get(7..).filter(|_| hex[..7].eq_ignore_ascii_case("sha256=")).unwrap_or(hex);
        assert!(hex.eq_ignore_ascii_case(&sign(KEY.as_bytes(), body)));
    }
    // The right signature is always recognised.
    assert_eq!(secrets.verify(body, Some(sign(KEY.as_bytes(), body).as_bytes())), Some(0));

    if let Ok(m) = message::parse(body) {
        let id_chars = m.message_id.chars().count();
        assert!((1..=MAX_MESSAGE_ID_CHARS).contains(&id_chars));
        assert!(!m.message_id.chars().any(char::is_control));
        assert!(is_msisdn(&m.from) && is_msisdn(&m.to));
        assert!(m.ts_raw.ends_with('Z'));
        if let Some(text) = &m.text {
            assert!(text.chars().count() <= MAX_TEXT_CHARS && !text.contains('\0'));
        }
    }
});
