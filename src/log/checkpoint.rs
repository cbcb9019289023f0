//! The recovery checkpoint: `<partition dir>/.recovery-checkpoint`, a durable prefix of the active
//! segment, so recovery after an unclean stop scans only what was written after it.
//!
//! The writer records one every `CHECKPOINT_INTERVAL_BYTES` of the active segment, from a snapshot
//! taken when nothing else was pending (so the producer state it holds matches its prefix
//! exactly), once the write holding the prefix completed and the file was fdatasync'ed. It holds
//! the clean-shutdown marker's fields (prefix end, next offset, producer state; see
//! `shutdown_marker`) and the prefix's offset and time indexes. Format: u32 LE length + marker
//! bytes, u32 LE length + offset index bytes, u32 LE length + time index bytes, CRC-32C u32 LE of
//! everything before.
//!
//! Guarantees: a checkpoint describes bytes that are durable and never rewritten (segments are
//! append-only and recovery truncates only after the prefix), so even an old one is a valid prefix
//! of its segment; one naming another segment (the log rolled since) is ignored, and a damaged one
//! means a full scan. Trade-off: like a closed segment, the prefix is trusted at start-up, so bit
//! rot inside it is found when it is read (CRC checks on fetch), not by recovery.

use super::crc_sealed;
use super::index::{OffsetIndex, TimeIndex};
use super::shutdown_marker::ShutdownMarker;

/// The checkpoint's file name in the partition directory.
pub const CHECKPOINT_FILE_NAME: &str = ".recovery-checkpoint";

/// Bytes of the active segment between checkpoints: bounds the scan after an unclean stop to about
/// this much per partition, for one fdatasync and one small file write per interval.
pub const CHECKPOINT_INTERVAL_BYTES: u64 = 64 * 1024 * 1024;

/// A durable prefix of the active segment and the state recovery needs to resume after it.
#[derive(Debug)]
pub struct Checkpoint {
    /// Where the prefix ends, the next offset after it, and the producer state at that point.
    pub marker: ShutdownMarker,
    /// The prefix's offset index.
    pub index: OffsetIndex,
    /// The prefix's time index.
    pub time_index: TimeIndex,
}

impl Checkpoint {
    /// The checkpoint's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in [
            self.marker.encode(),
            self.index.encode(),
            self.time_index.encode(),
        ] {
            let len = u32::try_from(part.len()).expect("a checkpoint part fits in u32");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&part);
        }
        crc_sealed::seal(out)
    }

    /// Parses a checkpoint; `None` unless it is intact.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut body = crc_sealed::unseal(bytes)?;
        let mut parts = Vec::with_capacity(3);
        for _ in 0..3 {
            let (len, rest) = body.split_first_chunk::<4>()?;
            let len = u32::from_le_bytes(*len) as usize;
            parts.push(rest.get(..len)?);
            body = &rest[len..];
        }
        let marker = ShutdownMarker::decode(parts[0])?;
        Some(Self {
            index: OffsetIndex::decode(parts[1], marker.active_size_bytes)?,
            time_index: TimeIndex::decode(parts[2])?,
            marker,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::index::{OffsetEntry, TimeEntry};
    use crate::log::producer_state::{ProducerBatch, ProducerState};

    #[test]
    fn checkpoint_round_trips_and_any_damage_means_a_full_scan() {
        // Proves a checkpoint decodes to what was encoded (marker fields, producer state, both
        // indexes), and a flipped byte or a cut file is refused, so recovery scans from the start.
        let mut producers = ProducerState::default();
        let batch = ProducerBatch {
            producer_id: 9,
            producer_epoch: 0,
            base_sequence: 0,
            last_offset_delta: 1,
        };
        producers.record(&batch, 100, 0);
        let mut index = OffsetIndex::default();
        index.push(OffsetEntry {
            relative_offset: 7,
            file_position: 4096,
        });
        let mut time_index = TimeIndex::default();
        time_index.push(TimeEntry {
            timestamp_ms: 1_700_000_000_000,
            relative_offset: 7,
        });
        let checkpoint = Checkpoint {
            marker: ShutdownMarker {
                log_end_offset: 102,
                active_base_offset: 90,
                active_size_bytes: 8192,
                producers,
            },
            index: index.clone(),
            time_index: time_index.clone(),
        };
        let bytes = checkpoint.encode();
        let decoded = Checkpoint::decode(&bytes).unwrap();
        assert_eq!(decoded.marker.log_end_offset, 102);
        assert_eq!(decoded.marker.active_base_offset, 90);
        assert_eq!(decoded.marker.active_size_bytes, 8192);
        assert_eq!(decoded.marker.producers.len(), 1);
        assert_eq!(decoded.index, index);
        assert_eq!(decoded.time_index, time_index);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            assert!(Checkpoint::decode(&damaged).is_none(), "flipped byte {i}");
        }
        for len in 0..bytes.len() {
            assert!(Checkpoint::decode(&bytes[..len]).is_none(), "cut at {len}");
        }
    }
}
