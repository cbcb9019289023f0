//! The clean-shutdown marker: `<partition dir>/.clean-shutdown`, written last by a clean close.
//!
//! It records what a clean close knows and a crash would lose: where the active segment's data
//! ends and the idempotent-producer state, so a clean restart loads the index files and this
//! snapshot instead of scanning the active segment. Format (little-endian): version u32, log end
//! offset i64, active segment base offset i64, active segment size u64, the producer snapshot
//! (`ProducerState::encode`), and a CRC-32C u32 of everything before it.
//!
//! Guarantees: `decode` accepts only an intact marker of this version; anything else means
//! "not clean", and the log is scanned. Callers must write the marker only after the data, the
//! fdatasync and the index files are complete, and must remove it (durably) at open before any
//! new append, so a crash after the open is never mistaken for a clean shutdown.

use super::crc_sealed::{self, CRC_BYTES};

use super::producer_state::ProducerState;

/// The marker's file name in the partition directory.
pub const SHUTDOWN_MARKER_FILE_NAME: &str = ".clean-shutdown";

/// 2: the producer snapshot carries each producer's last timestamp.
const VERSION: u32 = 2;
/// Bytes before the producer snapshot: version, log end, active base offset, active size.
const FIXED_BYTES: usize = 4 + 8 + 8 + 8;

/// What a clean close recorded.
#[derive(Debug)]
pub struct ShutdownMarker {
    /// The next offset the log would have assigned.
    pub log_end_offset: i64,
    /// Base offset of the active (last) segment.
    pub active_base_offset: i64,
    /// Where the active segment's data ends.
    pub active_size_bytes: u64,
    /// Idempotent-producer state at close.
    pub producers: ProducerState,
}

impl ShutdownMarker {
    /// The marker's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let snapshot = self.producers.encode();
        let mut out = Vec::with_capacity(FIXED_BYTES + snapshot.len() + CRC_BYTES);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.log_end_offset.to_le_bytes());
        out.extend_from_slice(&self.active_base_offset.to_le_bytes());
        out.extend_from_slice(&self.active_size_bytes.to_le_bytes());
        out.extend_from_slice(&snapshot);
        crc_sealed::seal(out)
    }

    /// Parses a marker; `None` unless it is intact and of this version.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let body = crc_sealed::unseal(bytes)?;
        if body.len() < FIXED_BYTES {
            return None;
        }
        let field = |at: usize| -> [u8; 8] { body[at..at + 8].try_into().expect("in bounds") };
        if u32::from_le_bytes(body[0..4].try_into().ok()?) != VERSION {
            return None;
        }
        Some(Self {
            log_end_offset: i64::from_le_bytes(field(4)),
            active_base_offset: i64::from_le_bytes(field(12)),
            active_size_bytes: u64::from_le_bytes(field(20)),
            producers: ProducerState::decode(&body[FIXED_BYTES..])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::producer_state::ProducerBatch;

    #[test]
    fn marker_round_trips_and_any_damage_means_unclean() {
        // Proves the marker decodes to what was encoded, and a flipped byte or a cut marker is
        // refused (the log is then scanned).
        let mut producers = ProducerState::default();
        let batch = ProducerBatch {
            producer_id: 3,
            producer_epoch: 1,
            base_sequence: 0,
            last_offset_delta: 4,
        };
        producers.record(&batch, 10, 0);
        let marker = ShutdownMarker {
            log_end_offset: 15,
            active_base_offset: 8,
            active_size_bytes: 4242,
            producers,
        };
        let bytes = marker.encode();
        let decoded = ShutdownMarker::decode(&bytes).unwrap();
        assert_eq!(decoded.log_end_offset, 15);
        assert_eq!(decoded.active_base_offset, 8);
        assert_eq!(decoded.active_size_bytes, 4242);
        assert_eq!(decoded.producers.len(), 1);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            assert!(ShutdownMarker::decode(&damaged).is_none(), "byte {i}");
        }
        assert!(ShutdownMarker::decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(ShutdownMarker::decode(&[]).is_none());
    }
}
