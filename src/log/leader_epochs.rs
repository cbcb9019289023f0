//! The leader-epoch cache (Kafka's `leader-epoch-checkpoint`): for each leader epoch of a
//! partition, the first offset written in it.
//!
//! OffsetForLeaderEpoch answers from it (KIP-101, KIP-320): a consumer or a replica that read up
//! to some epoch learns where that epoch ended here, and so whether its own copy diverged. The
//! rules are Kafka's (`LeaderEpochFileCache`): epochs only grow along the log, an assignment
//! removes entries it conflicts with, truncation trims from either end.
//!
//! On disk: `leader-epoch-checkpoint` in the partition directory, Kafka's text layout (version,
//! count, then `epoch start_offset` lines) sealed with a CRC-32C (`crc_sealed`), replaced
//! atomically. A log with no file was written before epochs were kept: all its batches are
//! epoch 0.

use std::io;
use std::path::Path;

use super::crc_sealed;
use super::segment::write_file_atomically;

/// The cache file's name in the partition directory.
pub const LEADER_EPOCH_FILE_NAME: &str = "leader-epoch-checkpoint";

/// Kafka's "no epoch" answer.
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's "no offset" answer that goes with `UNDEFINED_EPOCH`.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// The file layout's version (Kafka's is 0 too).
const VERSION: u32 = 0;

/// One epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// The first offset of the epoch.
    pub start_offset: i64,
}

/// The epochs of one partition's log, oldest first, epochs and start offsets both increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochs {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochs {
    /// The cache of a log written before epochs were kept: epoch 0 from `log_start`.
    pub fn epoch_zero_from(log_start: i64) -> Self {
        Self {
            entries: vec![EpochEntry {
                epoch: 0,
                start_offset: log_start,
            }],
        }
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch.
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`. Entries it conflicts with (a newer or
    /// equal epoch, or one starting at or after it) go, as in Kafka. False when nothing changed
    /// (the epoch is already the latest and started no later).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if let Some(latest) = self.latest()
            && latest.epoch == epoch
            && latest.start_offset <= start_offset
        {
            return false;
        }
        self.entries
            .retain(|entry| entry.epoch < epoch && entry.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Forgets the epochs that start at or after `end_offset` (the log was cut there). True if
    /// any went.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.start_offset < end_offset);
        self.entries.len() != before
    }

    /// Moves the cache's start to `start_offset` (retention or DeleteRecords moved the log
    /// start): the epochs wholly before it go, the one holding it now starts there. True if
    /// anything changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let holder = self
            .entries
            .iter()
            .rposition(|entry| entry.start_offset <= start_offset);
        let Some(holder) = holder else {
            return false;
        };
        let changed = holder > 0 || self.entries[0].start_offset != start_offset;
        self.entries.drain(..holder);
        self.entries[0].start_offset = start_offset;
        changed
    }

    /// OffsetForLeaderEpoch: the largest epoch at or below `requested` this log has, and the
    /// offset where it ended (the next epoch's start, or `log_end` for the latest). Undefined
    /// for an epoch above every known one, or when the cache is empty.
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if requested == UNDEFINED_EPOCH {
            return undefined;
        }
        if self
            .latest()
            .is_some_and(|latest| latest.epoch == requested)
        {
            return (requested, log_end);
        }
        let Some(higher) = self.entries.iter().find(|entry| entry.epoch > requested) else {
            return undefined;
        };
        match self
            .entries
            .iter()
            .rev()
            .find(|entry| entry.epoch <= requested)
        {
            Some(floor) => (floor.epoch, higher.start_offset),
            // Older than every epoch here: it ended where the first one began.
            None => (requested, higher.start_offset),
        }
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("{VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        crc_sealed::seal(text.into_bytes())
    }

    /// Decodes the file's bytes; None if they are damaged or not in this layout, or if the
    /// epochs or offsets do not increase.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(crc_sealed::unseal(bytes)?).ok()?;
        let mut lines = text.lines();
        if lines.next()?.parse::<u32>().ok()? != VERSION {
            return None;
        }
        let count: usize = lines.next()?.parse().ok()?;
        let mut entries: Vec<EpochEntry> = Vec::with_capacity(count.min(1024));
        for line in lines {
            let (epoch, start_offset) = line.split_once(' ')?;
            let entry = EpochEntry {
                epoch: epoch.parse().ok()?,
                start_offset: start_offset.parse().ok()?,
            };
            if let Some(last) = entries.last()
                && !(entry.epoch > last.epoch && entry.start_offset >= last.start_offset)
            {
                return None;
            }
            entries.push(entry);
        }
        (entries.len() == count).then_some(Self { entries })
    }
}

/// Reads the cache of the log in `dir`: `Ok(None)` when there is no file. Blocking.
pub fn read(dir: &Path) -> io::Result<Option<LeaderEpochs>> {
    let path = dir.join(LEADER_EPOCH_FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    LeaderEpochs::decode(&bytes).map(Some).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is damaged", path.display()),
        )
    })
}

/// Replaces the cache file of the log in `dir`, durably. Blocking.
pub fn write(dir: &Path, epochs: &LeaderEpochs) -> io::Result<()> {
    write_file_atomically(&dir.join(LEADER_EPOCH_FILE_NAME), &epochs.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(entries: &[(i32, i64)]) -> LeaderEpochs {
        let mut cache = LeaderEpochs::default();
        for &(epoch, start_offset) in entries {
            assert!(cache.assign(epoch, start_offset));
        }
        cache
    }

    #[test]
    fn end_offsets_follow_kafkas_rules() {
        // Proves OffsetForLeaderEpoch's answers: the latest epoch ends at the log end; an older
        // one at the next epoch's start; a gap epoch answers the floor epoch; older than all
        // answers itself ending at the first start; newer than all, or -1, is undefined.
        let cache = epochs(&[(2, 10), (4, 30), (7, 55)]);
        assert_eq!(cache.end_offset_for(7, 80), (7, 80));
        assert_eq!(cache.end_offset_for(4, 80), (4, 55));
        assert_eq!(cache.end_offset_for(2, 80), (2, 30));
        assert_eq!(cache.end_offset_for(5, 80), (4, 55));
        assert_eq!(cache.end_offset_for(1, 80), (1, 10));
        assert_eq!(cache.end_offset_for(8, 80), (-1, -1));
        assert_eq!(cache.end_offset_for(-1, 80), (-1, -1));
        assert_eq!(LeaderEpochs::default().end_offset_for(0, 80), (-1, -1));
    }

    #[test]
    fn assignment_keeps_epochs_and_offsets_increasing() {
        // Proves assign: the same epoch again changes nothing; a new epoch at an older offset
        // (after a truncation) replaces the entries it conflicts with.
        let mut cache = epochs(&[(1, 0), (3, 20)]);
        assert!(!cache.assign(3, 25));
        assert!(cache.assign(4, 40));
        assert!(cache.assign(5, 20));
        assert_eq!(
            cache.entries(),
            [
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 5,
                    start_offset: 20
                }
            ]
        );
    }

    #[test]
    fn truncation_trims_either_end() {
        // Proves truncate_from_end drops epochs starting at or after the cut (an epoch begun at
        // the log end with nothing written goes with a cut there), and truncate_from_start
        // moves the first kept epoch's start up to the new log start.
        let mut cache = epochs(&[(1, 0), (3, 20), (4, 40)]);
        assert!(cache.truncate_from_end(40));
        assert!(!cache.truncate_from_end(40));
        assert_eq!(cache.latest().unwrap().epoch, 3);
        assert!(cache.truncate_from_start(25));
        assert_eq!(
            cache.entries(),
            [EpochEntry {
                epoch: 3,
                start_offset: 25
            }]
        );
        assert!(!cache.truncate_from_start(25));
    }

    #[test]
    fn the_file_round_trips_and_damage_is_refused() {
        // Proves the file layout decodes back, and a flipped byte, a wrong count or decreasing
        // epochs are refused rather than believed.
        let cache = epochs(&[(0, 0), (2, 100), (9, 12345)]);
        let bytes = cache.encode();
        assert_eq!(LeaderEpochs::decode(&bytes), Some(cache));
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x04;
            assert_eq!(LeaderEpochs::decode(&damaged), None, "flip at {position}");
        }
        let wrong_count = crc_sealed::seal(b"0\n3\n1 0\n2 5\n".to_vec());
        assert_eq!(LeaderEpochs::decode(&wrong_count), None);
        let decreasing = crc_sealed::seal(b"0\n2\n3 0\n2 5\n".to_vec());
        assert_eq!(LeaderEpochs::decode(&decreasing), None);
    }
}
