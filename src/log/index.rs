//! The sparse indexes of one segment: offset → file position, and timestamp → offset.
//!
//! `OffsetIndex` holds one entry per `INDEX_INTERVAL_BYTES` of log (relative offset → file
//! position of the batch starting there); `TimeIndex` holds (largest timestamp so far → relative
//! offset of the batch that raised it), added at the same points when the timestamp grew. Both
//! are in memory and sorted; they are written to `.index` / `.timeindex` (fixed-width
//! little-endian entries, no header) when a segment rolls and at clean close, and rebuilt by
//! scanning otherwise. Entries are never checksummed: a file that does not parse is rebuilt.
//!
//! Callers must add entries in increasing offset (and file position) order (debug-asserted), and
//! must treat a lookup result as a place to *start scanning*, never as an exact answer.

/// Bytes of log between two offset-index entries (Kafka's `index.interval.bytes` default). A
/// fetch reads at most this much (plus one batch) before reaching its offset; smaller means a
/// bigger index (8 bytes per entry in memory and on disk).
pub const INDEX_INTERVAL_BYTES: u64 = 4096;

/// Bytes of one offset-index entry on disk: relative offset u32, file position u32.
pub const OFFSET_INDEX_ENTRY_BYTES: usize = 8;

/// Bytes of one time-index entry on disk: timestamp i64, relative offset u32.
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;

/// One offset-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Offset minus the segment's base offset.
    pub relative_offset: u32,
    /// Where the batch starting at that offset begins in the `.log` file.
    pub file_position: u32,
}

/// One time-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// The largest batch max timestamp up to and including this batch.
    pub timestamp_ms: i64,
    /// Offset (minus the segment's base offset) of the batch that raised it.
    pub relative_offset: u32,
}

/// The sparse offset index of one segment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    /// Adds an entry; entries must come in increasing order.
    pub fn push(&mut self, entry: OffsetEntry) {
        if let Some(last) = self.entries.last() {
            debug_assert!(entry.relative_offset > last.relative_offset);
            debug_assert!(entry.file_position > last.file_position);
        }
        self.entries.push(entry);
    }

    /// The greatest entry at or below `relative_offset`, if any.
    pub fn lookup(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let after = self
            .entries
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry.
    pub fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps the first `len` entries (entries of batches dropped before they were written go).
    pub fn truncate(&mut self, len: usize) {
        self.entries.truncate(len);
    }

    /// The on-disk form: each entry as relative offset u32 LE, file position u32 LE.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_INDEX_ENTRY_BYTES);
        for entry in &self.entries {
            out.extend_from_slice(&entry.relative_offset.to_le_bytes());
            out.extend_from_slice(&entry.file_position.to_le_bytes());
        }
        out
    }

    /// Parses the on-disk form; `None` if it is not a sorted whole number of entries below
    /// `file_size_bytes` (the index is then rebuilt).
    pub fn decode(bytes: &[u8], file_size_bytes: u64) -> Option<Self> {
        if !bytes.len().is_multiple_of(OFFSET_INDEX_ENTRY_BYTES) {
            return None;
        }
        let mut index = OffsetIndex::default();
        for chunk in bytes.chunks_exact(OFFSET_INDEX_ENTRY_BYTES) {
            let entry = OffsetEntry {
                relative_offset: u32::from_le_bytes(chunk[0..4].try_into().ok()?),
                file_position: u32::from_le_bytes(chunk[4..8].try_into().ok()?),
            };
            let sorted = index.entries.last().is_none_or(|last| {
                entry.relative_offset > last.relative_offset
                    && entry.file_position > last.file_position
            });
            if !sorted || u64::from(entry.file_position) >= file_size_bytes {
                return None;
            }
            index.entries.push(entry);
        }
        Some(index)
    }
}

/// The sparse time index of one segment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    /// Adds an entry if its timestamp is larger than the last one's (the index holds a running
    /// maximum, so smaller timestamps add nothing).
    pub fn push(&mut self, entry: TimeEntry) {
        if let Some(last) = self.entries.last() {
            if entry.timestamp_ms <= last.timestamp_ms {
                return;
            }
            debug_assert!(entry.relative_offset > last.relative_offset);
        }
        self.entries.push(entry);
    }

    /// The first entry whose timestamp is at or above `timestamp_ms`.
    pub fn lookup_time(&self, timestamp_ms: i64) -> Option<TimeEntry> {
        let first = self
            .entries
            .partition_point(|entry| entry.timestamp_ms < timestamp_ms);
        self.entries.get(first).copied()
    }

    /// Where a scan for the first batch with max timestamp ≥ `timestamp_ms` must start: the
    /// relative offset of the last entry below it (every batch up to that one has a smaller
    /// timestamp; unindexed batches after it may not), or 0.
    pub fn scan_start(&self, timestamp_ms: i64) -> u32 {
        let first = self
            .entries
            .partition_point(|entry| entry.timestamp_ms < timestamp_ms);
        first
            .checked_sub(1)
            .map_or(0, |i| self.entries[i].relative_offset)
    }

    /// The last entry.
    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps the first `len` entries (entries of batches dropped before they were written go).
    pub fn truncate(&mut self, len: usize) {
        self.entries.truncate(len);
    }

    /// The on-disk form: each entry as timestamp i64 LE, relative offset u32 LE.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_INDEX_ENTRY_BYTES);
        for entry in &self.entries {
            out.extend_from_slice(&entry.timestamp_ms.to_le_bytes());
            out.extend_from_slice(&entry.relative_offset.to_le_bytes());
        }
        out
    }

    /// Parses the on-disk form; `None` if it is not a sorted whole number of entries.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(TIME_INDEX_ENTRY_BYTES) {
            return None;
        }
        let mut index = TimeIndex::default();
        for chunk in bytes.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
            let entry = TimeEntry {
                timestamp_ms: i64::from_le_bytes(chunk[0..8].try_into().ok()?),
                relative_offset: u32::from_le_bytes(chunk[8..12].try_into().ok()?),
            };
            let sorted = index.entries.last().is_none_or(|last| {
                entry.timestamp_ms > last.timestamp_ms
                    && entry.relative_offset > last.relative_offset
            });
            if !sorted {
                return None;
            }
            index.entries.push(entry);
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_index() -> OffsetIndex {
        let mut index = OffsetIndex::default();
        for (relative_offset, file_position) in [(0, 0), (10, 4100), (25, 8300), (40, 12_400)] {
            index.push(OffsetEntry {
                relative_offset,
                file_position,
            });
        }
        index
    }

    #[test]
    fn offset_lookup_finds_the_greatest_entry_at_or_below() {
        // Proves lookup returns the entry at or just below the target, and None below the first.
        let index = offset_index();
        assert_eq!(index.lookup(0).unwrap().file_position, 0);
        assert_eq!(index.lookup(9).unwrap().file_position, 0);
        assert_eq!(index.lookup(10).unwrap().file_position, 4100);
        assert_eq!(index.lookup(24).unwrap().file_position, 4100);
        assert_eq!(index.lookup(39).unwrap().file_position, 8300);
        assert_eq!(index.lookup(u32::MAX).unwrap().file_position, 12_400);
        let mut late = OffsetIndex::default();
        late.push(OffsetEntry {
            relative_offset: 5,
            file_position: 100,
        });
        assert_eq!(late.lookup(4), None);
        assert_eq!(OffsetIndex::default().lookup(3), None);
    }

    #[test]
    fn offset_index_round_trips_and_rejects_damage() {
        // Proves the on-disk form decodes to the same index, and damaged files are refused.
        let index = offset_index();
        let bytes = index.encode();
        assert_eq!(bytes.len(), 4 * OFFSET_INDEX_ENTRY_BYTES);
        assert_eq!(OffsetIndex::decode(&bytes, 1 << 20), Some(index));
        assert_eq!(OffsetIndex::decode(&bytes[..7], 1 << 20), None);
        assert_eq!(OffsetIndex::decode(&bytes, 12_000), None);
        let mut unsorted = bytes.clone();
        unsorted[8..16].copy_from_slice(&bytes[0..8]);
        assert_eq!(OffsetIndex::decode(&unsorted, 1 << 20), None);
    }

    #[test]
    fn time_lookup_finds_the_first_entry_at_or_above() {
        // Proves lookup_time returns the first entry reaching the timestamp, scan_start the last
        // entry below it, and that non-increasing timestamps are not indexed.
        let mut index = TimeIndex::default();
        for (timestamp_ms, relative_offset) in [(100, 0), (100, 3), (250, 7), (90, 9), (400, 12)] {
            index.push(TimeEntry {
                timestamp_ms,
                relative_offset,
            });
        }
        assert_eq!(index.lookup_time(50).unwrap().relative_offset, 0);
        assert_eq!(index.lookup_time(100).unwrap().relative_offset, 0);
        assert_eq!(index.lookup_time(101).unwrap().relative_offset, 7);
        assert_eq!(index.lookup_time(400).unwrap().relative_offset, 12);
        assert_eq!(index.lookup_time(401), None);
        assert_eq!(index.scan_start(100), 0);
        assert_eq!(index.scan_start(300), 7);
        assert_eq!(index.scan_start(1000), 12);
        assert_eq!(TimeIndex::decode(&index.encode()), Some(index));
    }
}
