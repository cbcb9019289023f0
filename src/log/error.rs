//! `LogError`: every way a partition-log operation can fail.
//!
//! Guarantees: no Kafka error codes here; `src/api/` maps each variant to one, with an exhaustive
//! match. Errors that happen in normal operation (out-of-range fetches, producer fencing,
//! duplicates are not errors) are typed, so callers never parse strings.

use std::io;

use crate::protocol::record_batch::BatchError;

/// Why a partition-log operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// A fetch or read asked for an offset outside `[log_start, high_watermark]`.
    #[error("offset {offset} out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    },
    /// An I/O operation failed; nothing it covered was acknowledged.
    #[error("i/o error: {0}")]
    Io(String),
    /// A write failed because the device is full. Nothing it covered was acknowledged; the
    /// partition keeps retrying the write and recovers by itself once space returns.
    #[error("no space left on device: {0}")]
    NoSpace(String),
    /// A failed fdatasync (or a failed write other than ENOSPC) poisoned the partition: the
    /// kernel may have dropped dirty data, so the partition answers this until it is reopened and
    /// recovered. The sync is never retried.
    #[error("partition poisoned by an earlier storage failure: {0}")]
    Poisoned(String),
    /// Recovery, or a read, found the log corrupt (see `Corrupt`) and left it untouched: the
    /// partition is offline until an operator repairs it or restarts with forced truncation.
    #[error("partition offline: {0}")]
    Offline(String),
    /// The batch is not a valid RecordBatch v2 (the caller should have validated it).
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The batch is larger than the topic's `max.message.bytes`.
    #[error("batch of {batch_bytes} bytes exceeds max.message.bytes {max_message_bytes}")]
    MessageTooLarge {
        batch_bytes: usize,
        max_message_bytes: u64,
    },
    /// The producer's epoch is older than the one this partition has seen.
    #[error("producer {producer_id} epoch {epoch} is older than current epoch {current_epoch}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    /// The batch's base sequence is not the next one expected for its producer.
    #[error("producer {producer_id}: sequence {base_sequence} out of order (expected {expected})")]
    OutOfOrderSequence {
        producer_id: i64,
        base_sequence: i32,
        expected: i32,
    },
    /// Stored data failed validation where a torn write cannot explain it. `offset` is the first
    /// offset not trusted (at recovery), or the damaged batch's base offset (a batch read back for
    /// a fetch failed its CRC; the segment's base offset if the header itself is damaged).
    #[error("corrupt log at offset {offset} (file position {file_position} of {path}): {reason}")]
    Corrupt {
        offset: i64,
        file_position: u64,
        path: String,
        reason: String,
    },
    /// The partition log was closed or deleted.
    #[error("partition log closed")]
    Closed,
    /// A replica was sent a batch that does not start at its log end (its log diverged or has a
    /// gap: the leader must send from the end, or truncate it first).
    #[error("batch at offset {base_offset} does not start at the log end {log_end}")]
    NotAtLogEnd { base_offset: i64, log_end: i64 },
    /// A replica was sent a batch of an older leader epoch than one it already holds: epochs
    /// only grow along a log.
    #[error("batch of leader epoch {epoch} after epoch {latest}")]
    StaleLeaderEpoch { epoch: i32, latest: i32 },
    /// A replica was sent the first batch of a leader epoch it has not started
    /// (`PartitionLog::begin_epoch` records the epoch first).
    #[error("batch of leader epoch {epoch}, which is not started (the latest is {latest})")]
    EpochNotBegun { epoch: i32, latest: i32 },
}

impl LogError {
    /// Wraps an I/O error, keeping ENOSPC apart (it is retried, not poisoning).
    pub fn from_io(error: &io::Error) -> Self {
        if error.kind() == io::ErrorKind::StorageFull {
            LogError::NoSpace(error.to_string())
        } else {
            LogError::Io(error.to_string())
        }
    }
}

impl From<io::Error> for LogError {
    fn from(error: io::Error) -> Self {
        LogError::from_io(&error)
    }
}
