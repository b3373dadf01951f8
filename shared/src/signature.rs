//! HMAC-SHA256 over the raw body, compared in constant time, with several keys for rotation.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The webhook keys, keyed once at start-up (HMAC's key schedule is not redone per request).
/// Never printed.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    keys: Vec<HmacSha256>,
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecrets([redacted; {} key(s)])", self.keys.len())
    }
}

impl WebhookSecrets {
    /// Comma-separated keys, as in `WEBHOOK_SECRET=new,old`. Blank entries are ignored, so an
    /// unset or empty variable gives no key at all, and every signature then fails (fail closed).
    pub fn from_list(list: &str) -> Self {
        let keys = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| HmacSha256::new_from_slice(k.as_bytes()).expect("HMAC takes any key length"))
            .collect();
        Self { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Checks an `X-Signature` header value (`<hex>` or `sha256=<hex>`, any case) against the
    /// body. Returns the slot of the key that matched (0 = first in the list).
    pub fn verify(&self, body: &[u8], header: Option<&[u8]>) -> Option<usize> {
        let digest = decode_signature(header?)?;
        self.keys.iter().position(|key| {
            let mut mac = key.clone();
            mac.update(body);
            mac.verify_slice(&digest).is_ok()
        })
    }
}

fn decode_signature(header: &[u8]) -> Option<[u8; 32]> {
    let header = header.trim_ascii();
    let hex_part = match header.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case(b"sha256=") => &header[7..],
        _ => header,
    };
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut digest).ok()?;
    Some(digest)
}

/// Hex HMAC-SHA256 of `body` under `key`: what a sender puts in `X-Signature`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"message_id":"m1"}"#;

    #[test]
    fn accepts_plain_prefixed_and_uppercase_hex() {
        let secrets = WebhookSecrets::from_list("k1");
        let sig = sign(b"k1", BODY);
        assert_eq!(secrets.verify(BODY, Some(sig.as_bytes())), Some(0));
        let upper = sig.to_uppercase();
        assert_eq!(secrets.verify(BODY, Some(upper.as_bytes())), Some(0));
        let prefixed = format!("sha256={sig}");
        assert_eq!(secrets.verify(BODY, Some(prefixed.as_bytes())), Some(0));
        let prefixed = format!("SHA256={sig}");
        assert_eq!(secrets.verify(BODY, Some(prefixed.as_bytes())), Some(0));
    }

    #[test]
    fn rejects_wrong_missing_and_malformed() {
        let secrets = WebhookSecrets::from_list("k1");
        let sig = sign(b"other", BODY);
        assert_eq!(secrets.verify(BODY, Some(sig.as_bytes())), None);
        assert_eq!(secrets.verify(BODY, None), None);
        assert_eq!(secrets.verify(BODY, Some(b"")), None);
        assert_eq!(secrets.verify(BODY, Some(b"zz")), None);
        let good = sign(b"k1", BODY);
        assert_eq!(secrets.verify(BODY, Some(&good.as_bytes()[..62])), None);
        assert_eq!(secrets.verify(b"tampered", Some(good.as_bytes())), None);
    }

    #[test]
    fn rotation_reports_the_matching_slot() {
        let secrets = WebhookSecrets::from_list(" new , old ,");
        assert_eq!(secrets.len(), 2);
        let old = sign(b"old", BODY);
        assert_eq!(secrets.verify(BODY, Some(old.as_bytes())), Some(1));
    }

    #[test]
    fn no_key_fails_closed_and_debug_hides_keys() {
        let secrets = WebhookSecrets::from_list(" , ");
        assert!(secrets.is_empty());
        let sig = sign(b"", BODY);
        assert_eq!(secrets.verify(BODY, Some(sig.as_bytes())), None);
        let shown = format!("{:?}", WebhookSecrets::from_list("hunter2"));
        assert!(!shown.contains("hunter2"));
    }
}
