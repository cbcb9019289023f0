//! Truncation: cutting a partition log back to an offset, as a replica must when its
//! uncommitted tail conflicts with a new leader's log (Raft's log repair; Kafka's truncation to
//! the leader epoch).
//!
//! The log is closed, cut on disk, and opened again: the open's recovery rebuilds the indexes,
//! the idempotent-producer state and the in-memory tail from what is left, by the rules every
//! start already follows, instead of rewinding a running writer, its aligned tail block and its
//! pending batches in place. Truncation is rare (a short uncommitted tail after a leader
//! change), so the close and the open are paid rarely.
//!
//! Crash safety: the cut runs from the end of the log backwards. The clean-shutdown marker and
//! the recovery checkpoint go first (the next open then scans the last segment), then whole
//! segments, newest first, then the tail of the segment holding the offset, and the directory is
//! synced. After every step the files hold a prefix of the original log at least as long as the
//! target, so a crash anywhere leaves a log the next open recovers, and the caller cuts again.
//!
//! Emptying a log to start it at a new offset (`truncate_fully`, for a replica its leader can
//! no longer repair batch by batch) is rarer still and follows its own order (`plan_restart`).

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::protocol::record_batch::BATCH_LENGTH_PREFIX_BYTES;

use super::checkpoint::CHECKPOINT_FILE_NAME;
use super::error::LogError;
use super::partition::PartitionLog;
use super::producer_snapshot;
use super::retention;
use super::segment::{self, Segment};
use super::shutdown_marker::SHUTDOWN_MARKER_FILE_NAME;

/// One step of a cut, in the order they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CutStep {
    /// Remove a file (a missing one is fine: an earlier cut may have removed it).
    Remove(PathBuf),
    /// Shorten a segment file to `len` bytes, and make that durable.
    Shorten { path: PathBuf, len: u64 },
    /// Make the removals durable.
    SyncDir(PathBuf),
    /// Persist the log start offset of the log in `dir`.
    WriteLogStart { dir: PathBuf, offset: i64 },
    /// Create an empty segment file (its directory entry is made durable by a later step).
    Create(PathBuf),
    /// Remove every idempotent-producer snapshot of the log in the directory.
    RemoveProducerSnapshots(PathBuf),
}

impl PartitionLog {
    /// Removes every batch at or after `offset` (a batch boundary in
    /// `[log_start_offset, log_end_offset]`) and returns the log opened again: this handle is
    /// closed by the cut, so every other holder of it gets `LogError::Closed` and must take the
    /// returned one. Batches below `offset` are kept byte for byte; the log end becomes `offset`.
    pub async fn truncate(self: Rc<Self>, offset: i64) -> Result<Rc<PartitionLog>, LogError> {
        self.health()?;
        let log_start = self.log_start_offset();
        let log_end = self.log_end_offset();
        if offset < log_start || offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark: log_end,
            });
        }
        if offset == log_end {
            return Ok(self);
        }
        let dir = self.dir().to_path_buf();
        let topic = self.config().topic;
        let cache = self.cache.clone();
        self.close().await?;
        drop(self);
        cut_closed_log(&dir, offset).await?;
        tracing::info!(dir = %dir.display(), offset, "log truncated");
        PartitionLog::open(dir, topic, cache).await
    }

    /// Kafka's truncate-fully-and-start-at: removes every batch and returns the log opened
    /// again, empty, starting and ending at `offset` (any offset, below or beyond the old
    /// end), as a replica must when its leader no longer holds the log where it stopped. This
    /// handle is closed, as by `truncate`.
    pub async fn truncate_fully(self: Rc<Self>, offset: i64) -> Result<Rc<PartitionLog>, LogError> {
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset(),
                high_watermark: self.log_end_offset(),
            });
        }
        let dir = self.dir().to_path_buf();
        let topic = self.config().topic;
        let cache = self.cache.clone();
        self.close().await?;
        drop(self);
        let plan_dir = dir.clone();
        let steps = glommio::executor()
            .spawn_blocking(move || plan_restart(&plan_dir, offset))
            .await?;
        glommio::executor()
            .spawn_blocking(move || steps.iter().try_for_each(run_step))
            .await?;
        tracing::info!(dir = %dir.display(), offset, "log emptied to start at a new offset");
        PartitionLog::open(dir, topic, cache).await
    }
}

/// The steps that empty the closed log in `dir` and start it at `offset`. Crash safety: the log
/// start offset is written first, then the segments from `offset` on go, the empty segment at
/// `offset` is made, and only then the segments below it go; at every step the next open
/// finds either the old log (its start moved up) or the segment at `offset` with only
/// segments wholly below the log start before it, which recovery removes.
pub(super) fn plan_restart(dir: &Path, offset: i64) -> io::Result<Vec<CutStep>> {
    let base_offsets = segment_bases(dir)?;
    let mut steps = vec![
        CutStep::Remove(dir.join(SHUTDOWN_MARKER_FILE_NAME)),
        CutStep::Remove(dir.join(CHECKPOINT_FILE_NAME)),
        CutStep::SyncDir(dir.to_path_buf()),
        CutStep::WriteLogStart {
            dir: dir.to_path_buf(),
            offset,
        },
    ];
    let remove = |steps: &mut Vec<CutStep>, base: i64| {
        let segment = Segment::new(dir, base);
        steps.extend([
            CutStep::Remove(segment.index_path()),
            CutStep::Remove(segment.time_index_path()),
            CutStep::Remove(segment.log_path()),
        ]);
    };
    for &base in base_offsets.iter().rev().filter(|base| **base >= offset) {
        remove(&mut steps, base);
    }
    steps.extend([
        CutStep::SyncDir(dir.to_path_buf()),
        CutStep::Create(Segment::new(dir, offset).log_path()),
        CutStep::SyncDir(dir.to_path_buf()),
    ]);
    for &base in base_offsets.iter().filter(|base| **base < offset) {
        remove(&mut steps, base);
    }
    steps.push(CutStep::RemoveProducerSnapshots(dir.to_path_buf()));
    steps.push(CutStep::SyncDir(dir.to_path_buf()));
    Ok(steps)
}

/// Cuts the closed log in `dir` so that it ends at `offset`, which must be a batch boundary at or
/// below its end. Runs on the blocking pool (the log's files are closed, so no shard I/O waits).
pub(super) async fn cut_closed_log(dir: &Path, offset: i64) -> Result<(), LogError> {
    let dir = dir.to_path_buf();
    let steps = glommio::executor()
        .spawn_blocking(move || plan_cut(&dir, offset))
        .await?;
    glommio::executor()
        .spawn_blocking(move || steps.iter().try_for_each(run_step))
        .await?;
    Ok(())
}

/// The base offsets of the segment files in `dir`, sorted.
fn segment_bases(dir: &Path) -> io::Result<Vec<i64>> {
    let mut base_offsets = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(base_offset) = segment::parse_log_file_name(&name.to_string_lossy()) {
            base_offsets.push(base_offset);
        }
    }
    base_offsets.sort_unstable();
    Ok(base_offsets)
}

/// The steps that cut the log in `dir` at `offset` (see the module's crash-safety rule).
pub(super) fn plan_cut(dir: &Path, offset: i64) -> io::Result<Vec<CutStep>> {
    let base_offsets = segment_bases(dir)?;
    let Some(holder) = base_offsets.iter().rposition(|&base| base <= offset) else {
        return Err(invalid(format!(
            "offset {offset} is below every segment of {}",
            dir.display()
        )));
    };
    let mut steps = vec![
        CutStep::Remove(dir.join(SHUTDOWN_MARKER_FILE_NAME)),
        CutStep::Remove(dir.join(CHECKPOINT_FILE_NAME)),
        CutStep::SyncDir(dir.to_path_buf()),
    ];
    // A segment that starts at the offset goes whole, unless it is the first: the log keeps
    // one (empty) segment, whose name says where the next batch goes.
    let holder_base = base_offsets[holder];
    let keep_holder = holder_base < offset || holder == 0;
    let first_removed = if keep_holder { holder + 1 } else { holder };
    for &base in base_offsets[first_removed..].iter().rev() {
        let segment = Segment::new(dir, base);
        // Index files first, as retention does: a .log without them is scanned at open.
        steps.extend([
            CutStep::Remove(segment.index_path()),
            CutStep::Remove(segment.time_index_path()),
            CutStep::Remove(segment.log_path()),
        ]);
    }
    if keep_holder {
        let segment = Segment::new(dir, holder_base);
        let len = batch_position(&segment.log_path(), holder_base, offset)?;
        steps.extend([
            // Its indexes may point past the cut; without them the open scans what is left.
            CutStep::Remove(segment.index_path()),
            CutStep::Remove(segment.time_index_path()),
            CutStep::Shorten {
                path: segment.log_path(),
                len,
            },
        ]);
    }
    steps.push(CutStep::SyncDir(dir.to_path_buf()));
    Ok(steps)
}

/// The file position of the batch that starts at `offset` in the segment file at `path` (whose
/// first batch starts at `base_offset`), or the end of its data when `offset` is one past its
/// last batch. Reads only the 12-byte prefix of each batch.
fn batch_position(path: &Path, base_offset: i64, offset: i64) -> io::Result<u64> {
    let mut file = fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut position = 0u64;
    let mut expected = base_offset;
    let mut prefix = [0u8; BATCH_LENGTH_PREFIX_BYTES];
    loop {
        if expected == offset {
            return Ok(position);
        }
        if position + BATCH_LENGTH_PREFIX_BYTES as u64 > size {
            break;
        }
        file.seek(SeekFrom::Start(position))?;
        file.read_exact(&mut prefix)?;
        let batch_base = i64::from_be_bytes(prefix[..8].try_into().expect("8 bytes"));
        let batch_length = i32::from_be_bytes(prefix[8..].try_into().expect("4 bytes"));
        // Zeros are the preallocated tail: the data ended before the offset.
        if batch_length <= 0 || batch_base != expected {
            break;
        }
        let next = next_offset_after(&mut file, position)?;
        if next <= batch_base || next > offset {
            return Err(invalid(format!(
                "offset {offset} is inside the batch at offset {batch_base} of {}",
                path.display()
            )));
        }
        position += BATCH_LENGTH_PREFIX_BYTES as u64 + batch_length as u64;
        expected = next;
    }
    Err(invalid(format!(
        "offset {offset} is beyond the data of {} (it ends at offset {expected})",
        path.display()
    )))
}

/// One past the last offset of the batch at `position` (its base offset plus its
/// `last_offset_delta` plus one).
fn next_offset_after(file: &mut fs::File, position: u64) -> io::Result<i64> {
    // base_offset (8), batch_length (4), partition_leader_epoch (4), magic (1), crc (4),
    // attributes (2), then last_offset_delta (4).
    const LAST_OFFSET_DELTA_POSITION: u64 = 23;
    let mut fields = [0u8; LAST_OFFSET_DELTA_POSITION as usize + 4];
    file.seek(SeekFrom::Start(position))?;
    file.read_exact(&mut fields)?;
    let base = i64::from_be_bytes(fields[..8].try_into().expect("8 bytes"));
    let delta = i32::from_be_bytes(fields[23..27].try_into().expect("4 bytes"));
    Ok(base + i64::from(delta) + 1)
}

/// Runs one step.
pub(super) fn run_step(step: &CutStep) -> io::Result<()> {
    match step {
        CutStep::Remove(path) => match fs::remove_file(path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        },
        CutStep::Shorten { path, len } => {
            let file = fs::OpenOptions::new().write(true).open(path)?;
            file.set_len(*len)?;
            file.sync_all()
        }
        CutStep::SyncDir(dir) => fs::File::open(dir)?.sync_all(),
        CutStep::WriteLogStart { dir, offset } => retention::write_log_start_offset(dir, *offset),
        CutStep::Create(path) => fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?
            .sync_all(),
        CutStep::RemoveProducerSnapshots(dir) => {
            producer_snapshot::remove_outside(dir, i64::MAX, i64::MIN)
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
