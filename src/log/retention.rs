//! Retention: which of a partition's oldest segments may go, and the persisted log start offset.
//!
//! Segments are deleted whole, oldest first, by `retention.ms` (the segment's largest timestamp
//! is older than that) and `retention.bytes` (the log minus the segment is still at least that
//! big), as Kafka does. DeleteRecords moves the log start offset inside a segment; that offset is
//! kept in `.log-start-offset` (written atomically, checksummed) so a restart does not bring the
//! deleted records back.
//!
//! Guarantees: only sealed segments (rolled: trimmed, synced, indexed, and not the active one)
//! are ever chosen, and only a prefix of them. Callers must delete exactly the chosen prefix and
//! move the log start offset to the next segment's base offset (or beyond).

use std::io;
use std::path::Path;

use super::crc_sealed;
use super::segment::write_file_atomically;

/// The file holding a log start offset set by DeleteRecords.
pub const LOG_START_FILE_NAME: &str = ".log-start-offset";

/// What retention needs to know of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Bytes of data.
    pub size_bytes: u64,
    /// Largest batch max timestamp, or -1.
    pub max_timestamp_ms: i64,
    /// Rolled and finished (never the active segment).
    pub sealed: bool,
}

/// How many of the oldest `segments` retention deletes at `now_ms`.
pub fn expired_segment_count(
    segments: &[SegmentInfo],
    retention_ms: i64,
    retention_bytes: i64,
    now_ms: i64,
) -> usize {
    let by_time = if retention_ms < 0 {
        0
    } else {
        segments
            .iter()
            .take_while(|s| s.sealed && now_ms.saturating_sub(s.max_timestamp_ms) > retention_ms)
            .count()
    };
    let by_size = if retention_bytes < 0 {
        0
    } else {
        let total_bytes: u64 = segments.iter().map(|s| s.size_bytes).sum();
        let mut excess_bytes = total_bytes.saturating_sub(retention_bytes as u64);
        segments
            .iter()
            .take_while(|s| {
                let goes = s.sealed && excess_bytes >= s.size_bytes;
                if goes {
                    excess_bytes -= s.size_bytes;
                }
                goes
            })
            .count()
    };
    by_time.max(by_size)
}

/// Writes the log start offset set by DeleteRecords (i64 LE, then CRC-32C u32 LE). Blocking:
/// run it off the executor.
pub fn write_log_start_offset(dir: &Path, log_start_offset: i64) -> io::Result<()> {
    let bytes = crc_sealed::seal(log_start_offset.to_le_bytes().to_vec());
    write_file_atomically(&dir.join(LOG_START_FILE_NAME), &bytes)
}

/// Reads the log start offset set by DeleteRecords, if an intact one is there. Blocking.
pub fn read_log_start_offset(dir: &Path) -> Option<i64> {
    let bytes = std::fs::read(dir.join(LOG_START_FILE_NAME)).ok()?;
    let offset: [u8; 8] = crc_sealed::unseal(&bytes)?.try_into().ok()?;
    Some(i64::from_le_bytes(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(size_bytes: u64, max_timestamp_ms: i64, sealed: bool) -> SegmentInfo {
        SegmentInfo {
            size_bytes,
            max_timestamp_ms,
            sealed,
        }
    }

    #[test]
    fn oldest_sealed_segments_expire_by_time_and_by_size() {
        // Proves retention picks a prefix of sealed segments: by age of the largest timestamp,
        // by size keeping at least retention.bytes, never the active segment, and nothing when
        // both limits are -1.
        let segments = [
            segment(100, 1_000, true),
            segment(100, 5_000, true),
            segment(100, 2_000, true),
            segment(100, 9_000, false),
        ];
        assert_eq!(expired_segment_count(&segments, -1, -1, 100_000), 0);
        assert_eq!(expired_segment_count(&segments, 3_500, -1, 6_000), 1);
        assert_eq!(expired_segment_count(&segments, 500, -1, 6_000), 3);
        assert_eq!(expired_segment_count(&segments, 0, -1, i64::MAX), 3);
        assert_eq!(expired_segment_count(&segments, -1, 250, 0), 1);
        assert_eq!(expired_segment_count(&segments, -1, 200, 0), 2);
        assert_eq!(expired_segment_count(&segments, -1, 0, 0), 3);
        assert_eq!(expired_segment_count(&segments, 3_500, 250, 6_000), 1);
    }
}
