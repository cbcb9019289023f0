//! Producer snapshots: `<20-digit base offset>.snapshot` in the partition directory, the
//! idempotent-producer state just before the segment starting at that offset. One is written at
//! every segment roll, as Kafka does, so recovery after an unclean stop rebuilds the state from
//! the newest snapshot plus the batches after it, instead of losing the producers whose last
//! batches are in closed segments. Format: `ProducerState::encode`, then a CRC-32C (u32 LE).
//!
//! Guarantees: a snapshot file under its final name is complete (written atomically) and
//! checked when read. It is taken when the roll is decided, before the batches ahead of it are
//! durable, so recovery trusts a snapshot only if a segment starts at its offset (the writer
//! creates that segment's file only after the segment before it is written and synced), and
//! removes those beyond the recovered log end (they may count batches a crash took back).
//! Callers must not write snapshots of a log that is not theirs (one writer per directory).

use std::io;
use std::path::{Path, PathBuf};

use super::crc_sealed;
use super::producer_state::ProducerState;
use super::segment;

/// Extension of a producer snapshot file (Kafka's).
pub const SNAPSHOT_EXTENSION: &str = "snapshot";

/// Path of the snapshot taken before offset `base_offset`.
pub fn path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(segment::file_name(base_offset, SNAPSHOT_EXTENSION))
}

/// The base offset of a snapshot file name, if it is one.
pub fn parse_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".snapshot")?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Writes the snapshot taken before `base_offset`. Blocking: call off the executor.
pub fn write(dir: &Path, base_offset: i64, state: &ProducerState) -> io::Result<()> {
    let bytes = crc_sealed::seal(state.encode());
    segment::write_file_atomically(&path(dir, base_offset), &bytes)
}

/// Reads the snapshot taken before `base_offset`; `None` if it is missing or damaged. Blocking.
pub fn read(dir: &Path, base_offset: i64) -> Option<ProducerState> {
    let bytes = std::fs::read(path(dir, base_offset)).ok()?;
    ProducerState::decode(crc_sealed::unseal(&bytes)?)
}

/// Base offsets of the snapshots in `dir`, sorted. Blocking.
pub fn list(dir: &Path) -> io::Result<Vec<i64>> {
    let mut base_offsets = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(base_offset) = parse_file_name(&entry?.file_name().to_string_lossy()) {
            base_offsets.push(base_offset);
        }
    }
    base_offsets.sort_unstable();
    Ok(base_offsets)
}

/// Removes the snapshots below `keep_from` or above `keep_to`. Blocking.
pub fn remove_outside(dir: &Path, keep_from: i64, keep_to: i64) -> io::Result<()> {
    for base_offset in list(dir)? {
        if base_offset < keep_from || base_offset > keep_to {
            match std::fs::remove_file(path(dir, base_offset)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Records the snapshot taken at a roll to `base_offset` in a task of its own (a file write and
/// two fsyncs must not stall the produce path), then removes snapshots older than
/// `previous_base_offset` (the segment rolled from keeps its own, in case the new segment's file
/// never appears). A failure only costs a longer replay at the next unclean start.
pub fn spawn_write(
    dir: PathBuf,
    base_offset: i64,
    state: ProducerState,
    previous_base_offset: i64,
) {
    glommio::spawn_local(async move {
        let result = glommio::executor()
            .spawn_blocking(move || {
                write(&dir, base_offset, &state)?;
                remove_outside(&dir, previous_base_offset, i64::MAX)
            })
            .await;
        if let Err(error) = result {
            tracing::warn!(base_offset, %error, "producer snapshot not written");
        }
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::producer_state::ProducerBatch;

    #[test]
    fn snapshots_round_trip_by_name_and_damage_is_refused() {
        // Proves a snapshot reads back as written, names parse back to their offset, pruning
        // keeps only the range asked for, and a damaged file reads as missing.
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerState::default();
        let batch = ProducerBatch {
            producer_id: 4,
            producer_epoch: 1,
            base_sequence: 0,
            last_offset_delta: 2,
        };
        state.record(&batch, 30, 1_000);
        for base_offset in [10, 20, 33] {
            write(dir.path(), base_offset, &state).unwrap();
        }
        assert_eq!(list(dir.path()).unwrap(), vec![10, 20, 33]);
        assert_eq!(read(dir.path(), 33).unwrap().len(), 1);
        assert_eq!(parse_file_name("00000000000000000033.snapshot"), Some(33));
        assert_eq!(parse_file_name("00000000000000000033.log"), None);
        remove_outside(dir.path(), 20, 25).unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![20]);
        let file = path(dir.path(), 20);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[5] ^= 0x01;
        std::fs::write(&file, &bytes).unwrap();
        assert!(read(dir.path(), 20).is_none());
        assert!(read(dir.path(), 99).is_none());
    }
}
