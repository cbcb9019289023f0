//! Latency histograms (hdrhistogram, microseconds, 3 significant digits) and their percentiles.
//!
//! Each generator shard records into its own histograms and ships them to the main thread, which
//! adds them up; merging is exact because every histogram has the same bounds. A value above the
//! highest trackable one is clamped to it rather than lost, so `max` says "at least an hour".

use hdrhistogram::Histogram;

/// Highest latency tracked: one hour, in µs.
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// Significant digits kept: 0.1% relative error.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A histogram of latencies in µs.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts, so this cannot fail.
        let histogram = Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        Self { histogram }
    }

    /// Records one latency in ns (rounded to µs, at least 1 µs).
    pub fn record_ns(&mut self, latency_ns: u64) {
        self.histogram
            .saturating_record((latency_ns / 1_000).clamp(1, LATENCY_US_MAX));
    }

    /// Records `count` latencies of the same value.
    pub fn record_ns_n(&mut self, latency_ns: u64, count: u64) {
        let value = (latency_ns / 1_000).clamp(1, LATENCY_US_MAX);
        // Cannot fail: the value is clamped into the histogram's range.
        let _ = self.histogram.record_n(value, count);
    }

    /// Adds every value of `other` (same bounds, so this cannot fail).
    pub fn add(&mut self, other: &LatencyHistogram) {
        let _ = self.histogram.add(&other.histogram);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Empties the histogram, keeping its memory.
    pub fn reset(&mut self) {
        self.histogram.reset();
    }

    /// The percentiles the reports show, or `None` if nothing was recorded.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.histogram.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1_000.0;
        let at = |q: f64| ms(self.histogram.value_at_quantile(q));
        Some(Percentiles {
            count: self.histogram.len(),
            mean_ms: self.histogram.mean() / 1_000.0,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p99_9_ms: at(0.999),
            p99_99_ms: at(0.9999),
            max_ms: ms(self.histogram.max()),
        })
    }

    /// The 99th percentile in ms, or `None` if empty.
    pub fn p99_ms(&self) -> Option<f64> {
        (!self.histogram.is_empty())
            .then(|| self.histogram.value_at_quantile(0.99) as f64 / 1_000.0)
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p99_9_ms: f64,
    /// 99.99th percentile.
    pub p99_99_ms: f64,
    /// Largest value.
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves merged histograms give the percentiles of all values, in order.
    #[test]
    fn merged_percentiles_are_ordered() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        for ms in 1..=50u64 {
            a.record_ns(ms * 1_000_000);
        }
        for ms in 51..=100u64 {
            b.record_ns(ms * 1_000_000);
        }
        a.add(&b);
        let p = a.percentiles().unwrap();
        assert_eq!(p.count, 100);
        assert!((p.p50_ms - 50.0).abs() < 0.1);
        assert!(p.p50_ms <= p.p90_ms);
        assert!(p.p99_ms <= p.max_ms);
        assert!((p.max_ms - 100.0).abs() < 0.1);
    }

    // Proves an empty histogram reports nothing rather than zeros.
    #[test]
    fn empty_has_no_percentiles() {
        assert!(LatencyHistogram::new().percentiles().is_none());
    }
}
