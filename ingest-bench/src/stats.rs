//! Latency histograms (microseconds) and the summary every result carries.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Up to 10 minutes at 3 significant digits: a stall is recorded as a stall, never clipped.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// When request `i` of an open-loop run is due, counted from the start: evenly spaced at `rate`
/// per second. Latency is measured from this instant, not from when a connection got free, so a
/// stall delays (and is charged to) every request scheduled during it.
pub fn intended_offset(i: u64, rate: f64) -> Duration {
    Duration::from_nanos(((i as f64) * 1e9 / rate).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_distribution() {
        let mut h = histogram();
        for ms in 1..=1000u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let s = Summary::of(&h);
        assert_eq!(s.count, 1000);
        // hdrhistogram keeps 3 significant digits: values are within 0.1%.
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 0.001;
        assert!(close(s.p50_ms, 500.0), "{}", s.p50_ms);
        assert!(close(s.p99_ms, 990.0), "{}", s.p99_ms);
        assert!(close(s.p999_ms, 999.0), "{}", s.p999_ms);
        assert!(close(s.max_ms, 1000.0), "{}", s.max_ms);
    }

    #[test]
    fn a_single_stall_shows_in_the_tail_not_the_median() {
        let mut h = histogram();
        for _ in 0..9980 {
            record(&mut h, Duration::from_micros(500));
        }
        // 0.2% of requests stalled: more than the 0.1% that p99.9 may ignore.
        for _ in 0..20 {
            record(&mut h, Duration::from_secs(2));
        }
        let s = Summary::of(&h);
        assert!(s.p50_ms < 1.0);
        assert!(s.p999_ms >= 1999.0, "{}", s.p999_ms);
    }

    #[test]
    fn open_loop_schedule_is_evenly_spaced_and_does_not_drift() {
        assert_eq!(intended_offset(0, 5000.0), Duration::ZERO);
        assert_eq!(intended_offset(1, 5000.0), Duration::from_micros(200));
        // Computed from the index, not accumulated, so a long run ends exactly on time.
        assert_eq!(intended_offset(300_000, 5000.0), Duration::from_secs(60));
        assert_eq!(
            intended_offset(599_999, 10_000.0),
            Duration::from_micros(59_999_900)
        );
    }
}
