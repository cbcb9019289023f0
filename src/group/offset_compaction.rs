//! The files of a running offset-store compaction: the compacted temp file written from a
//! durable prefix of the log, then completed with the records written since and renamed over
//! the log.
//!
//! Guarantees: the log is only read until `finish_compaction` renames the temp file over it, and
//! the temp file is complete and fdatasync'ed before that rename, so a crash at any point leaves
//! a log holding every acknowledged commit (the old one before the rename, the new one after).
//! Both functions block: callers run them on glommio's blocking pool. Callers must not write the
//! log between reading the catch-up records and the rename (the store's flush loop, which alone
//! writes, runs the rename).

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::config::BLOCK_BYTES;
use crate::io::align_down;

use super::offset_store::{COMPACTION_FILE_NAME, OffsetStoreError, compact, replay};

/// A compacted temp file, fdatasync'ed, holding the live records of the snapshot.
#[derive(Debug)]
pub(super) struct PreparedCompaction {
    /// The temp file.
    pub(super) temp_path: PathBuf,
    /// Its length.
    pub(super) len_bytes: u64,
    /// The live records in it.
    pub(super) records: u64,
}

/// Why installing a compaction failed, and whether the old file is still the log.
#[derive(Debug)]
pub(super) enum CompactionFailure {
    /// The old file is untouched and still the log.
    BeforeRename(std::io::Error),
    /// The new file is the log, but its rename may not be durable.
    AfterRename(std::io::Error),
}

/// Replays the durable first `snapshot_end` bytes of the log and writes their live records to
/// the temp file, fdatasync'ed. Blocking; the log itself is only read.
pub(super) fn prepare_compaction(
    path: &Path,
    snapshot_end: u64,
) -> Result<PreparedCompaction, OffsetStoreError> {
    let io = |error: std::io::Error| OffsetStoreError::Io {
        path: path.to_owned(),
        reason: error.to_string(),
    };
    let mut bytes = Vec::with_capacity(snapshot_end as usize);
    std::fs::File::open(path)
        .map_err(io)?
        .take(snapshot_end)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let replayed = replay(&bytes);
    if replayed.end_position != bytes.len() || bytes.len() as u64 != snapshot_end {
        return Err(OffsetStoreError::Io {
            path: path.to_owned(),
            reason: format!(
                "compaction read {} intact bytes of the {snapshot_end} written",
                replayed.end_position
            ),
        });
    }
    let compacted = compact(&replayed.offsets);
    let temp_path = path.with_file_name(COMPACTION_FILE_NAME);
    let temp_io = |error: std::io::Error| OffsetStoreError::Io {
        path: temp_path.clone(),
        reason: error.to_string(),
    };
    let mut temp = std::fs::File::create(&temp_path).map_err(temp_io)?;
    temp.write_all(&compacted).map_err(temp_io)?;
    temp.sync_data().map_err(temp_io)?;
    let records = replayed.offsets.values().map(|g| g.len() as u64).sum();
    Ok(PreparedCompaction {
        temp_path,
        len_bytes: compacted.len() as u64,
        records,
    })
}

/// Appends `catch_up` to the prepared file, fdatasyncs it, renames it over the log and syncs
/// the directory. Returns the new file's length and its partial last block. Blocking.
pub(super) fn finish_compaction(
    prepared: &PreparedCompaction,
    path: &Path,
    catch_up: &[u8],
) -> Result<(u64, Vec<u8>), CompactionFailure> {
    let before = CompactionFailure::BeforeRename;
    let temp = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&prepared.temp_path)
        .map_err(before)?;
    temp.write_all_at(catch_up, prepared.len_bytes)
        .map_err(before)?;
    temp.sync_data().map_err(before)?;
    let len_bytes = prepared.len_bytes + catch_up.len() as u64;
    let mut tail = vec![0; (len_bytes % BLOCK_BYTES) as usize];
    temp.read_exact_at(&mut tail, align_down(len_bytes))
        .map_err(before)?;
    std::fs::rename(&prepared.temp_path, path).map_err(before)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(CompactionFailure::AfterRename)?;
    }
    Ok((len_bytes, tail))
}
