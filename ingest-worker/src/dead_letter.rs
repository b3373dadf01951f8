//! A message that can never be stored, and why: built by a batch (batch.rs) or by the
//! max-deliveries mover (max_deliveries.rs), written by store.rs.

use async_nats::HeaderMap;
use ingest_shared::{REQUEST_ID_HEADER, SOURCE_HEADER};
use sha2::{Digest, Sha256};

/// Why a message is a dead letter: the `kind` column of `dead_letters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The payload is not a valid message.
    Invalid,
    /// The payload is valid, and Postgres refused its row (a constraint, a value out of range).
    Refused,
    /// JetStream delivered it `MAX_DELIVER` times and no worker acked it (max_deliveries.rs).
    MaxDeliveries,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Invalid, Kind::Refused, Kind::MaxDeliveries];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Invalid => "invalid",
            Kind::Refused => "refused",
            Kind::MaxDeliveries => "max_deliveries",
        }
    }
}

/// A message that can never be stored, kept in `dead_letters` for triage.
pub struct DeadLetter {
    pub kind: Kind,
    /// Hex SHA-256 of the payload: the same bytes failing again update one row.
    pub dedup_key: String,
    pub stream_seq: i64,
    pub subject: String,
    pub payload: Vec<u8>,
    pub reason: String,
    pub request_id: Option<String>,
    /// The source it came in through (the `X-Source` header); `None` without the header.
    pub source: Option<String>,
}

impl DeadLetter {
    /// The one way a message becomes a dead letter, whether pulled (a batch) or read from the
    /// stream by sequence (max_deliveries.rs).
    pub fn new(
        kind: Kind,
        stream_seq: i64,
        subject: &str,
        payload: &[u8],
        headers: Option<&HeaderMap>,
        reason: String,
    ) -> Self {
        Self {
            kind,
            dedup_key: hex::encode(Sha256::digest(payload)),
            stream_seq,
            subject: subject.to_owned(),
            payload: payload.to_vec(),
            reason,
            request_id: headers
                .and_then(|h| h.get(REQUEST_ID_HEADER))
                .map(|v| v.as_str().to_owned()),
            source: headers
                .and_then(|h| h.get(SOURCE_HEADER))
                .map(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        }
    }
}
