//! What ListOffsets needs from a partition beyond the time index: the largest timestamp it holds
//! (MAX_TIMESTAMP, KIP-734) and Kafka's v0 answer, offsets at segment boundaries.
//!
//! Both read the in-memory segment list only (no I/O). A segment's time here is its largest batch
//! timestamp, where Kafka's v0 uses the segment file's modification time: Spate preallocates its
//! files, so their mtime says nothing about the data.

use super::partition::PartitionLog;

/// ListOffsets timestamp asking for the latest offset.
const LATEST_TIMESTAMP: i64 = -1;
/// ListOffsets timestamp asking for the earliest offset.
const EARLIEST_TIMESTAMP: i64 = -2;

impl PartitionLog {
    /// The largest record timestamp in the log (-1 when it holds no batch).
    pub fn max_timestamp_ms(&self) -> i64 {
        self.segments
            .borrow()
            .iter()
            .map(|segment| segment.max_timestamp_ms())
            .max()
            .unwrap_or(-1)
    }

    /// ListOffsets v0 (Kafka's `legacyFetchOffsetsBefore`): up to `max_count` offsets, newest
    /// first, taken from each segment's base offset (raised to the log start) and the log end
    /// offset; `timestamp` -1 starts at the end, -2 at the first segment, and a time at the newest
    /// segment whose time is at or before it. The caller clips to the high watermark.
    pub fn legacy_offsets_before(&self, timestamp: i64, max_count: i32, now_ms: i64) -> Vec<i64> {
        let log_start_offset = self.log_start_offset.get();
        let segments = self.segments.borrow();
        let mut points: Vec<(i64, i64)> = segments
            .iter()
            .map(|segment| {
                (
                    segment.base_offset().max(log_start_offset),
                    segment.max_timestamp_ms(),
                )
            })
            .collect();
        if segments
            .last()
            .is_some_and(|segment| segment.sequenced_bytes() > 0)
        {
            points.push((self.log_end_offset.get(), now_ms));
        }
        legacy_offsets(&points, timestamp, max_count)
    }
}

/// Kafka's v0 selection over (offset, time) points in log order.
fn legacy_offsets(points: &[(i64, i64)], timestamp: i64, max_count: i32) -> Vec<i64> {
    let start = match timestamp {
        LATEST_TIMESTAMP => points.len().checked_sub(1),
        EARLIEST_TIMESTAMP => (!points.is_empty()).then_some(0),
        time => points
            .iter()
            .rposition(|&(_, point_time)| point_time <= time),
    };
    let Some(start) = start else {
        return Vec::new();
    };
    let count = usize::try_from(max_count).unwrap_or(0).min(start + 1);
    let mut offsets: Vec<i64> = points[start + 1 - count..=start]
        .iter()
        .map(|&(offset, _)| offset)
        .collect();
    offsets.sort_unstable_by(|a, b| b.cmp(a));
    offsets
}

#[cfg(test)]
mod tests {
    use super::legacy_offsets;

    #[test]
    fn v0_offsets_walk_back_from_the_chosen_point() {
        // Proves Kafka's v0 choice: latest starts at the log end, earliest at the first segment,
        // a time at the newest point not after it; at most max_count offsets, newest first.
        let points = [(0, 100), (50, 200), (90, 300), (120, 400)];
        assert_eq!(legacy_offsets(&points, -1, 1), [120]);
        assert_eq!(legacy_offsets(&points, -1, 3), [120, 90, 50]);
        assert_eq!(legacy_offsets(&points, -2, 5), [0]);
        assert_eq!(legacy_offsets(&points, 250, 10), [50, 0]);
        assert_eq!(legacy_offsets(&points, 99, 10), Vec::<i64>::new());
        assert_eq!(legacy_offsets(&points, -1, 0), Vec::<i64>::new());
        assert_eq!(legacy_offsets(&[], -1, 1), Vec::<i64>::new());
    }
}
