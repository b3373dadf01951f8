//! The keyset cursor of `GET /messages`: where the previous page ended, opaque to clients.

use chrono::{DateTime, Utc};

/// The last row's sort key `(ts, message_id)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub ts: DateTime<Utc>,
    pub message_id: String,
}

const CURSOR_VERSION: &str = "v1";

impl Cursor {
    /// Hex keeps it URL-safe without encoding; the version lets the format change later.
    pub fn encode(&self) -> String {
        hex::encode(format!(
            "{CURSOR_VERSION}|{}|{}",
            self.ts.timestamp_micros(),
            self.message_id
        ))
    }

    pub fn decode(s: &str) -> Option<Self> {
        let bytes = hex::decode(s).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let rest = text.strip_prefix(CURSOR_VERSION)?.strip_prefix('|')?;
        let (micros, message_id) = rest.split_once('|')?;
        // No stored id holds NUL (Postgres text cannot), and it cannot be bound as a parameter.
        if message_id.contains('\0') {
            return None;
        }
        Some(Self {
            ts: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            message_id: message_id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest_shared::message::parse_ts;

    #[test]
    fn cursor_round_trips() {
        let c = Cursor {
            ts: parse_ts("2025-01-15T10:00:00.123456Z").unwrap(),
            message_id: "id|with|pipes é".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("76317c31"), None);
    }
}
