//! `TailGeneration`: the batches sequenced since the log's unwritten tail was last dropped.
//!
//! A write that fails with ENOSPC drops every batch not yet written (see `writer`): their produce
//! requests are answered with the error, and the log end goes back to the high watermark, so the
//! next batches (a client's retries among them) take the same offsets again. An offset alone
//! therefore cannot tell a waiter whether *its* batch was written. Every append holds the
//! generation it was sequenced in; a drop closes the current generation, recording where the log
//! end went back to, and the log starts a new one.
//!
//! Guarantees: a batch of a closed generation that ends beyond the drop point was dropped (and
//! nothing of it reaches the disk afterwards); one ending at or below it had been written before
//! the drop. Callers must close a generation only while dropping its unwritten batches, and close
//! it once.

use std::cell::RefCell;

use super::error::LogError;

/// The batches sequenced since the last drop of the unwritten tail.
#[derive(Debug, Default)]
pub struct TailGeneration {
    /// Set by `close`: the log end offset the drop went back to, and the write's error.
    dropped: RefCell<Option<(i64, LogError)>>,
}

impl TailGeneration {
    /// Closes the generation: its batches ending beyond `log_end_offset` were dropped, failed
    /// with `error`.
    pub fn close(&self, log_end_offset: i64, error: LogError) {
        let mut dropped = self.dropped.borrow_mut();
        assert!(dropped.is_none(), "a generation is closed once");
        *dropped = Some((log_end_offset, error));
    }

    /// The error of a batch of this generation ending at `end_offset` (one past its last
    /// offset), if it was dropped.
    pub fn dropped(&self, end_offset: i64) -> Option<LogError> {
        let dropped = self.dropped.borrow();
        let (log_end_offset, error) = dropped.as_ref()?;
        (end_offset > *log_end_offset).then(|| error.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_batches_beyond_the_drop_point_were_dropped() {
        // Proves a closed generation fails exactly the batches that ended beyond the log end it
        // went back to, and an open one fails none.
        let generation = TailGeneration::default();
        assert!(generation.dropped(100).is_none());
        generation.close(10, LogError::NoSpace("full".to_owned()));
        assert!(generation.dropped(10).is_none());
        assert!(matches!(generation.dropped(11), Some(LogError::NoSpace(_))));
    }
}
