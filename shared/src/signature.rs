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

    /// Keys given one by one (a sources file lists them, and a key may hold a comma).
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let keys = keys
            .into_iter()
            .map(|k| HmacSha256::new_from_slice(k).expect("HMAC takes any key length"))
            .collect();
        Self { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Standard Webhooks secrets (`whsec_<base64 key>`): the key is the decoded bytes. A secret
    /// without the prefix is used as it is, so one list can serve both schemes.
    pub fn from_standard_list(list: &str) -> Self {
        use base64::Engine as _;
        let keys = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| match k.strip_prefix("whsec_") {
                Some(encoded) => base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .unwrap_or_else(|_| k.as_bytes().to_vec()),
                None => k.as_bytes().to_vec(),
            })
            .map(|k| HmacSha256::new_from_slice(&k).expect("HMAC takes any key length"))
            .collect();
        Self { keys }
    }

    /// Checks a Standard Webhooks request: `webhook-signature` holds space-separated
    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` entries, and the timestamp must lie
    /// within `tolerance_secs` of `now` in either direction, so a captured request cannot be
    /// replayed later. Returns the slot of the key that matched.
    pub fn verify_standard(
        &self,
        request: &StandardWebhookHeaders<'_>,
        body: &[u8],
        now_unix: i64,
        tolerance_secs: i64,
    ) -> Result<usize, StandardWebhookError> {
        use base64::Engine as _;
        let (Some(id), Some(timestamp), Some(signatures)) =
            (request.id, request.timestamp, request.signature)
        else {
            return Err(StandardWebhookError::InvalidSignature);
        };
        let ts: i64 = std::str::from_utf8(timestamp)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or(StandardWebhookError::InvalidSignature)?;
        let mut candidates = Vec::new();
        for entry in signatures.split(|b| *b == b' ').filter(|e| !e.is_empty()) {
            if let Some(encoded) = entry.strip_prefix(b"v1,")
                && let Ok(digest) = base64::engine::general_purpose::STANDARD.decode(encoded)
            {
                candidates.push(digest);
            }
        }
        let slot = self.keys.iter().position(|key| {
            let mut mac = key.clone();
            mac.update(id);
            mac.update(b".");
            mac.update(timestamp);
            mac.update(b".");
            mac.update(body);
            // CtOutput compares in constant time.
            let tag = mac.finalize();
            candidates.iter().any(|c| {
                c.len() == 32
                    && tag
                        == hmac::digest::CtOutput::new(
                            hmac::digest::generic_array::GenericArray::clone_from_slice(c),
                        )
            })
        });
        let slot = slot.ok_or(StandardWebhookError::InvalidSignature)?;
        // Checked after the signature, so only a genuine but old (or early) request is told so.
        if (now_unix - ts).abs() > tolerance_secs {
            return Err(StandardWebhookError::OutsideTolerance);
        }
        Ok(slot)
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

/// The three Standard Webhooks headers, raw.
#[derive(Debug, Default, Clone, Copy)]
pub struct StandardWebhookHeaders<'a> {
    pub id: Option<&'a [u8]>,
    pub timestamp: Option<&'a [u8]>,
    pub signature: Option<&'a [u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StandardWebhookError {
    #[error("invalid signature")]
    InvalidSignature,
    #[error("timestamp outside the tolerance")]
    OutsideTolerance,
}

/// `v1,<base64>` for a Standard Webhooks request: what a sender puts in `webhook-signature`.
pub fn sign_standard(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine as _;
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
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
    fn standard_webhooks_signature_and_tolerance() {
        use base64::Engine as _;
        let key = b"0123456789abcdef";
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        let secrets = WebhookSecrets::from_standard_list(&format!("other,{secret}"));
        let now = 1_700_000_000;
        let good = sign_standard(key, "msg_1", now, BODY);
        let wrong = sign_standard(b"nope", "msg_1", now, BODY);
        let both = format!("{wrong} {good}");
        let ts = now.to_string();
        let headers = |sig: &'static str| StandardWebhookHeaders {
            id: Some(b"msg_1"),
            timestamp: Some(ts.as_bytes()),
            signature: Some(sig.as_bytes()),
        };
        let both: &'static str = Box::leak(both.into_boxed_str());
        let wrong: &'static str = Box::leak(wrong.into_boxed_str());
        assert_eq!(
            secrets.verify_standard(&headers(both), BODY, now, 300),
            Ok(1)
        );
        assert_eq!(
            secrets.verify_standard(&headers(wrong), BODY, now, 300),
            Err(StandardWebhookError::InvalidSignature)
        );
        assert_eq!(
            secrets.verify_standard(&headers(both), BODY, now + 301, 300),
            Err(StandardWebhookError::OutsideTolerance)
        );
        assert_eq!(
            secrets.verify_standard(&headers(both), BODY, now - 301, 300),
            Err(StandardWebhookError::OutsideTolerance)
        );
        assert_eq!(
            secrets.verify_standard(&headers(both), b"tampered", now, 300),
            Err(StandardWebhookError::InvalidSignature)
        );
        let missing = StandardWebhookHeaders::default();
        assert_eq!(
            secrets.verify_standard(&missing, BODY, now, 300),
            Err(StandardWebhookError::InvalidSignature)
        );
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
