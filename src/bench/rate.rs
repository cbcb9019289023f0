//! Open-loop rate control: every record has an intended send time, fixed before the run starts.
//!
//! With `--rate R/s` a producer's k-th record is due at `start + k / r` (r = its share of R),
//! whether or not the broker kept up; a producer that falls behind sends back to back until it
//! catches up, and latency counts from the intended time (coordinated omission corrected). With
//! `max` the intended time is the moment the producer gets to the record.

use std::time::Duration;

/// Sleeping is not worth it for waits shorter than this: the timer costs about as much, so the
/// producer sends slightly early instead.
const SLEEP_MIN: Duration = Duration::from_micros(50);

/// One producer's schedule.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// When this producer starts, ns since the run's epoch.
    start_ns: u64,
    /// ns between two records, or `None` for as fast as possible.
    interval_ns: Option<f64>,
}

impl Schedule {
    /// A producer's schedule for `rate_per_second` records/s of its own (`None`: max).
    pub fn new(start_ns: u64, rate_per_second: Option<f64>) -> Self {
        Self {
            start_ns,
            interval_ns: rate_per_second.map(|rate| 1e9 / rate),
        }
    }

    /// When record `sequence` is due, given the time now (ns since the epoch).
    pub fn intended_ns(&self, sequence: u64, now_ns: u64) -> u64 {
        match self.interval_ns {
            Some(interval) => self.start_ns + (sequence as f64 * interval) as u64,
            None => now_ns,
        }
    }

    /// How long to wait before sending a record due at `intended_ns`, or `None` to send now.
    pub fn wait(intended_ns: u64, now_ns: u64) -> Option<Duration> {
        let wait = Duration::from_nanos(intended_ns.saturating_sub(now_ns));
        (wait >= SLEEP_MIN).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a fixed rate spaces intended times evenly from the start, independent of "now",
    // which is what makes the measurement open loop.
    #[test]
    fn fixed_rate_is_independent_of_now() {
        let schedule = Schedule::new(1_000, Some(1_000.0));
        assert_eq!(schedule.intended_ns(0, 999_999_999), 1_000);
        assert_eq!(schedule.intended_ns(3, 0), 3_001_000);
    }

    // Proves `max` takes the current time, and short waits are skipped.
    #[test]
    fn max_rate_uses_now() {
        let schedule = Schedule::new(0, None);
        assert_eq!(schedule.intended_ns(5, 777), 777);
        assert_eq!(Schedule::wait(1_010, 1_000), None);
        assert_eq!(
            Schedule::wait(2_000_000, 1_000_000),
            Some(Duration::from_millis(1))
        );
    }
}
