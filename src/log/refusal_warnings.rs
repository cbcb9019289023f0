//! `RefusalWarnings`: the rate-limited WARN an offline partition logs when it refuses a request.
//!
//! A client retrying against an offline partition can send thousands of requests a second; one
//! line per request would bury the ERROR that took the partition offline. Guarantees: at most one
//! line per `REFUSAL_WARN_INTERVAL`, carrying how many refusals it stands for; the first refusal
//! is always logged.

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

/// Shortest time between two refusal warnings of one partition.
pub const REFUSAL_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// One partition's refusal warnings.
#[derive(Debug, Default)]
pub struct RefusalWarnings {
    last_warned: Cell<Option<Instant>>,
    /// Refusals since the last warning (not yet reported).
    unreported: Cell<u64>,
}

impl RefusalWarnings {
    /// Counts one refusal of the partition in `dir`, offline for `reason`; logs a WARN if the
    /// last one is `REFUSAL_WARN_INTERVAL` old. Returns whether it logged.
    pub fn refused(&self, dir: &Path, reason: &str) -> bool {
        let refusals = self.unreported.get() + 1;
        let now = Instant::now();
        let due = self
            .last_warned
            .get()
            .is_none_or(|last| now.duration_since(last) >= REFUSAL_WARN_INTERVAL);
        if !due {
            self.unreported.set(refusals);
            return false;
        }
        tracing::warn!(
            dir = %dir.display(),
            refusals,
            %reason,
            "refusing requests for an offline partition (KAFKA_STORAGE_ERROR)"
        );
        self.last_warned.set(Some(now));
        self.unreported.set(0);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_refusal_in_an_interval_is_logged() {
        // Proves the rate limit: of many refusals in a burst, only the first logs.
        let warnings = RefusalWarnings::default();
        assert!(warnings.refused(Path::new("t-0"), "corrupt"));
        for _ in 0..1000 {
            assert!(!warnings.refused(Path::new("t-0"), "corrupt"));
        }
        assert_eq!(warnings.unreported.get(), 1000);
    }
}
