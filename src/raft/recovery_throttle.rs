//! `RecoveryThrottle`: the per-shard limit on catch-up replication, the entries a leader reads
//! for a replica far behind it (a restarted or reset replica, a new one). Without it, a replica
//! rebuilding gigabytes would have its leader's shard read and send them as fast as the disk
//! goes, and the produce path of every other partition on that shard would wait behind them
//! (Redpanda bounds the same traffic with `raft_learner_recovery_rate`).
//!
//! A token bucket of bytes per second, holding at most a tenth of a second's worth: a read
//! takes its bytes (the balance may go below zero) and then waits until the balance is back to
//! zero, so reads of any size keep to the rate on average, and several replicas catching up at
//! once share it. A rate of 0 means no limit.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Entries a replication read may start behind the log's last one and still be live
/// replication (a few AppendEntries of 64 in flight), not catch-up.
pub const CATCH_UP_ENTRIES_BEHIND: u64 = 512;

/// The most a full bucket holds, as a share of one second's rate.
const BURST_DIVISOR: f64 = 10.0;

/// One shard's catch-up budget.
#[derive(Debug)]
pub struct RecoveryThrottle {
    bytes_per_second: u64,
    /// Bytes that may be read now without waiting (negative: owed by reads already made).
    balance: Cell<f64>,
    refilled_at: Cell<Instant>,
}

impl RecoveryThrottle {
    /// A throttle of `bytes_per_second` (0: unlimited), full.
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second,
            balance: Cell::new(bytes_per_second as f64 / BURST_DIVISOR),
            refilled_at: Cell::new(Instant::now()),
        }
    }

    /// Takes `bytes` just read for catch-up, and waits as long as the rate asks.
    pub async fn take(&self, bytes: usize) {
        let Some(wait) = self.charge(bytes, Instant::now()) else {
            return;
        };
        glommio::timer::sleep(wait).await;
    }

    /// Charges `bytes` at `now`: how long the reader must wait, if at all.
    fn charge(&self, bytes: usize, now: Instant) -> Option<Duration> {
        if self.bytes_per_second == 0 {
            return None;
        }
        let rate = self.bytes_per_second as f64;
        let elapsed = now.saturating_duration_since(self.refilled_at.get());
        self.refilled_at.set(now);
        let balance = (self.balance.get() + elapsed.as_secs_f64() * rate).min(rate / BURST_DIVISOR)
            - bytes as f64;
        self.balance.set(balance);
        (balance < 0.0).then(|| Duration::from_secs_f64(-balance / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keep_to_the_rate_after_a_burst() {
        // Proves the bucket's arithmetic on a fixed clock: a tenth of a second's bytes go at
        // once, more waits in proportion, waiting is owed by the next read too, time refills
        // the balance, and a rate of 0 never waits.
        let start = Instant::now();
        let throttle = RecoveryThrottle::new(1_000_000);
        assert_eq!(throttle.charge(100_000, start), None);
        assert_eq!(
            throttle.charge(500_000, start),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            throttle.charge(100_000, start + Duration::from_millis(500)),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            throttle.charge(50_000, start + Duration::from_secs(10)),
            None
        );
        let unlimited = RecoveryThrottle::new(0);
        assert_eq!(unlimited.charge(usize::MAX, start), None);
    }
}
