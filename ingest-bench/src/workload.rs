//! The requests of a run, built and signed before the clock starts so that generating them never
//! competes with the system under test.

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct Spec {
    /// Requests sent, re-sends included.
    pub requests: usize,
    /// Fraction of requests that are byte-identical re-sends of an earlier one.
    pub dup_fraction: f64,
    pub senders: usize,
    /// Zipf exponent of the sender pool: a few senders send most messages, as on real traffic.
    pub sender_skew: f64,
    pub seed: u64,
    /// Prefix of every message id, so rows of one run can be told apart.
    pub run_id: String,
    /// Text lengths: the chat-like mix, or short texts only.
    pub text: TextMix,
    /// Unix seconds of the first message's `ts`; each next unique message is a second later.
    pub ts_base: i64,
    /// How message ids are spelled.
    pub ids: IdOrder,
}

/// `--ids`: where a run's ids fall in the `message_id` index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdOrder {
    /// `<run_id>-<n>`: one run's ids are neighbours, so inserting them touches one end of the
    /// index; rows of a run can be found by prefix (the e2e measurement does).
    Sequential,
    /// `<hash>-<run_id>-<n>`: spread over the whole index like real senders' ids, so a large
    /// table's index pages are touched at random. No prefix lookup, so no e2e measurement.
    Hashed,
}

impl std::str::FromStr for IdOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sequential" => Ok(Self::Sequential),
            "hashed" => Ok(Self::Hashed),
            _ => Err(format!("{s:?}: expected sequential or hashed")),
        }
    }
}

/// The first message's `ts` when `--ts-base` is not given (2025-01-15T10:00:00Z).
pub const DEFAULT_TS_BASE: i64 = 1_736_935_200;

/// `--text` / `BENCH_TEXT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMix {
    /// 5% absent, 70% 5-160 characters, 22% 160-1,000, 3% 1,000-4,000.
    Chat,
    /// 5% absent, 95% 5-160 characters (one SMS).
    Short,
}

impl std::str::FromStr for TextMix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "chat" => Ok(Self::Chat),
            "short" => Ok(Self::Short),
            _ => Err(format!("{s:?}: expected chat or short")),
        }
    }
}

pub struct Workload {
    /// One body per unique message.
    pub bodies: Vec<Bytes>,
    /// Hex HMAC of each body.
    pub signatures: Vec<String>,
    /// The unique message each request sends; a repeated index is a re-send.
    pub order: Vec<u32>,
    /// The message id of each unique message.
    pub ids: Vec<String>,
}

impl Workload {
    pub fn unique(&self) -> usize {
        self.bodies.len()
    }

    pub fn message_id(run_id: &str, unique: usize) -> String {
        format!("{run_id}-{unique:09}")
    }

    fn id_of(spec: &Spec, unique: usize) -> String {
        match spec.ids {
            IdOrder::Sequential => Self::message_id(&spec.run_id, unique),
            IdOrder::Hashed => format!(
                "{:016x}-{}",
                splitmix64(spec.seed ^ unique as u64),
                Self::message_id(&spec.run_id, unique)
            ),
        }
    }

    /// The unique index encoded in a message id of this run.
    pub fn unique_of(run_id: &str, message_id: &str) -> Option<usize> {
        message_id
            .strip_prefix(run_id)?
            .strip_prefix('-')?
            .parse()
            .ok()
    }
}

#[derive(Serialize)]
struct Body<'a> {
    message_id: &'a str,
    from: &'a str,
    to: &'a str,
    ts: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

pub fn build(spec: &Spec, secret: &[u8]) -> Workload {
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    let dups = ((spec.requests as f64) * spec.dup_fraction.clamp(0.0, 0.99)).round() as usize;
    let order_is_dup = resend_positions(spec.requests, dups, &mut rng);
    let unique = spec.requests - dups;
    let senders = SkewedPool::new(spec.senders.max(1), spec.sender_skew);

    let mut bodies = Vec::with_capacity(unique);
    let mut signatures = Vec::with_capacity(unique);
    let mut ids = Vec::with_capacity(unique);
    for u in 0..unique {
        let id = Workload::id_of(spec, u);
        let from = format!("+9198{:08}", senders.sample(&mut rng));
        let to = format!("+1415555{:04}", rng.random_range(0..50));
        let secs = spec.ts_base + u as i64;
        let mut ts = chrono::DateTime::from_timestamp(secs, 0)
            .expect("in range")
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        if rng.random_bool(0.2) {
            ts.push_str(&format!(".{:03}", rng.random_range(0..1000)));
        }
        ts.push('Z');
        let text = random_text(&mut rng, spec.text);
        let body = serde_json::to_vec(&Body {
            message_id: &id,
            from: &from,
            to: &to,
            ts: &ts,
            text: text.as_deref(),
        })
        .expect("serialisable");
        signatures.push(ingest_shared::signature::sign(secret, &body));
        bodies.push(Bytes::from(body));
        ids.push(id);
    }

    let mut order = Vec::with_capacity(spec.requests);
    let mut next = 0u32;
    for is_dup in order_is_dup {
        if is_dup {
            // A re-send repeats a recent message, as a sender retrying after a timeout does;
            // recent also keeps it inside JetStream's duplicate window.
            let lo = next.saturating_sub(10_000);
            order.push(rng.random_range(lo..next));
        } else {
            order.push(next);
            next += 1;
        }
    }
    Workload {
        bodies,
        signatures,
        order,
        ids,
    }
}

/// A fixed, well-mixed 64-bit hash (splitmix64's finaliser).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Exactly `dups` positions out of `n` are re-sends, never the first (nothing to repeat yet).
fn resend_positions(n: usize, dups: usize, rng: &mut SmallRng) -> Vec<bool> {
    let mut v: Vec<bool> = (0..n).map(|i| i < dups).collect();
    v.shuffle(rng);
    if v.first() == Some(&true)
        && let Some(j) = v.iter().position(|d| !d)
    {
        v.swap(0, j);
    }
    v
}

/// Zipf-distributed indexes in `0..n`: index 0 is the busiest sender.
pub struct SkewedPool {
    cdf: Vec<f64>,
}

impl SkewedPool {
    pub fn new(n: usize, exponent: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (0..n)
            .map(|k| {
                acc += 1.0 / ((k + 1) as f64).powf(exponent);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Self { cdf }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let x: f64 = rng.random();
        self.cdf.partition_point(|&c| c < x).min(self.cdf.len() - 1)
    }
}

const WORDS: &[&str] = &[
    "hi",
    "hello",
    "order",
    "shipped",
    "thanks",
    "payment",
    "received",
    "please",
    "call",
    "me",
    "tomorrow",
    "at",
    "the",
    "office",
    "your",
    "OTP",
    "is",
    "delivery",
    "confirmed",
    "ok",
    "see",
    "you",
    "soon",
    "namaste",
    "café",
    "price",
    "₹499",
    "👍",
    "🙏",
    "\"quoted\"",
    "line\nbreak",
];

/// Chat-like lengths: mostly short, a long tail up to the 4,096-character limit, some absent.
fn random_text(rng: &mut SmallRng, mix: TextMix) -> Option<String> {
    let roll: f64 = rng.random();
    let target = if roll < 0.05 {
        return None;
    } else if roll < 0.75 || mix == TextMix::Short {
        rng.random_range(5..160)
    } else if roll < 0.97 {
        rng.random_range(160..1000)
    } else {
        rng.random_range(1000..4000)
    };
    let mut text = String::with_capacity(target + 16);
    let mut chars = 0;
    while chars < target {
        let word = WORDS[rng.random_range(0..WORDS.len())];
        if chars > 0 {
            text.push(' ');
            chars += 1;
        }
        text.push_str(word);
        chars += word.chars().count();
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(requests: usize, dup_fraction: f64) -> Spec {
        Spec {
            requests,
            dup_fraction,
            senders: 1000,
            sender_skew: 1.0,
            seed: 7,
            run_id: "t".into(),
            text: TextMix::Chat,
            ts_base: DEFAULT_TS_BASE,
            ids: IdOrder::Sequential,
        }
    }

    #[test]
    fn hashed_ids_are_unique_and_not_in_send_order() {
        let mut s = spec(1000, 0.0);
        s.ids = IdOrder::Hashed;
        s.ts_base = 1_800_000_000;
        let w = build(&s, b"k");
        let mut sorted = w.ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000);
        assert_ne!(sorted, w.ids, "hashed ids sort in send order");
        let m = ingest_shared::message::parse(&w.bodies[3]).expect("valid body");
        assert_eq!(m.message_id, w.ids[3]);
        assert!(m.message_id.ends_with("-t-000000003"), "{}", m.message_id);
        let first = ingest_shared::message::parse(&w.bodies[0]).expect("valid body");
        assert_eq!(first.ts.timestamp(), 1_800_000_000);
    }

    #[test]
    fn resends_are_exact_earlier_messages_in_the_asked_proportion() {
        let w = build(&spec(2000, 0.2), b"k");
        assert_eq!(w.order.len(), 2000);
        assert_eq!(w.unique(), 1600);
        let mut seen = vec![false; w.unique()];
        let mut resends = 0;
        for &u in &w.order {
            let u = u as usize;
            if seen[u] {
                resends += 1;
            } else {
                // A unique message is always sent for the first time before it is repeated.
                assert!(u == 0 || seen[u - 1], "first send of {u} out of order");
                seen[u] = true;
            }
        }
        assert_eq!(resends, 400);
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn every_body_is_valid_and_correctly_signed() {
        let w = build(&spec(500, 0.0), b"secret");
        let keys = ingest_shared::signature::WebhookSecrets::from_list("secret");
        for (u, (body, sig)) in w.bodies.iter().zip(&w.signatures).enumerate() {
            let m = ingest_shared::message::parse(body).expect("valid body");
            assert_eq!(Workload::unique_of("t", &m.message_id), Some(u));
            assert_eq!(keys.verify(body, Some(sig.as_bytes())), Some(0));
        }
        let lens: Vec<usize> = w.bodies.iter().map(|b| b.len()).collect();
        assert!(lens.iter().any(|&l| l > 1000), "no long text at all");
        assert!(lens.iter().filter(|&&l| l < 400).count() > lens.len() / 2);
    }

    #[test]
    fn sender_pool_is_skewed_towards_the_first_senders() {
        let pool = SkewedPool::new(1000, 1.0);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = vec![0usize; 1000];
        for _ in 0..100_000 {
            counts[pool.sample(&mut rng)] += 1;
        }
        // Zipf(1) over 1000: the top sender has ~13% of traffic, the top 10 ~39%.
        let top10: usize = counts[..10].iter().sum();
        assert!((10_000..16_000).contains(&counts[0]), "{}", counts[0]);
        assert!((35_000..44_000).contains(&top10), "{top10}");
        assert!(counts[900..].iter().sum::<usize>() > 0, "tail never drawn");
    }
}
