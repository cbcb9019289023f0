//! Recovery: finding a partition log's segments and where its data really ends, at open.
//!
//! A segment file is preallocated beyond its data, and a crash can leave a torn last write, so
//! the logical end is found by scanning: batch by batch (length prefix, magic, CRC-32C via
//! `record_batch::validate`, and offsets contiguous with the batch before). The end is the end of
//! the last valid batch. Zeros after it are the normal preallocated tail; anything else there is
//! a torn write and is cut off (the file is truncated to the logical end, so stale bytes can never
//! be mistaken for data later). Scanning rebuilds the segment's indexes and the idempotent
//! producer state.
//!
//! Guarantees: a batch is adopted only if its CRC checks; a valid batch found well beyond the
//! damage (farther than one write could have reached, so not a torn write) makes the open fail
//! with `LogError::Corrupt` instead of truncating acknowledged data away, unless the executor was
//! told to truncate at corruption (`set_truncate_corrupt`, the broker's
//! `--unsafe-truncate-corrupt-logs`), which then cuts the log at the damage.
//!
//! Which segments are scanned: the last (active) one, unless a clean-shutdown marker says where
//! its data ends (its index files and the producer state are then loaded instead); an intact
//! recovery checkpoint for it (`checkpoint`) lets the scan start after its durable prefix. A closed
//! segment was trimmed to its size, synced, and had its index files written (atomically) when it
//! rolled, so one with both index files is trusted; one without (a crash during the roll) is
//! scanned too, and since it was complete, any damage in it is corruption: with forced
//! truncation it is cut there and every later segment is deleted, so offsets stay contiguous.
//!
//! The idempotent-producer state after an unclean stop: the checkpoint's, plus the scan after it;
//! else the newest producer snapshot (`producer_snapshot`, written at each roll) at a segment
//! start, plus a replay of every segment from there (usually none but the active one, however
//! often the log rolled), so retries of batches acknowledged before the stop stay duplicates.
//! Callers must not use the directory's files while recovery runs.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::io::DirectFile;
use crate::protocol::record_batch::{
    self, BATCH_LENGTH_PREFIX_BYTES, MAGIC_V2, RECORD_BATCH_HEADER_BYTES, RecordBatchHeader,
};

use super::checkpoint::{CHECKPOINT_FILE_NAME, Checkpoint};
use super::error::LogError;
use super::producer_snapshot;
use super::producer_state::{ProducerBatch, ProducerState};
use super::retention;
use super::segment::{self, Segment, TEMP_SUFFIX};
use super::shutdown_marker::{SHUTDOWN_MARKER_FILE_NAME, ShutdownMarker};

/// Bytes read per step while scanning a segment.
pub const SCAN_READ_BYTES: usize = 1024 * 1024;

/// The largest batch a scan will read to check it. A torn length field can claim up to 2 GiB;
/// Kafka's `max.message.bytes` is far below this in practice, and a larger "batch" is treated as
/// the end of the data (then checked for corruption like any other damage).
pub const SCAN_BATCH_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Where `magic` sits in a batch (see `record_batch`).
const MAGIC_POSITION: usize = 16;

thread_local! {
    /// Whether recoveries on this executor truncate at corruption instead of failing.
    static TRUNCATE_CORRUPT: Cell<bool> = const { Cell::new(false) };
}

/// Sets whether recoveries on this executor from now on truncate a log at corruption (losing the
/// valid data after it) instead of failing with `LogError::Corrupt`. A broker-wide choice made
/// once at shard start; per executor because logs are opened on their shard's thread.
pub fn set_truncate_corrupt(truncate: bool) {
    TRUNCATE_CORRUPT.set(truncate);
}

/// What recovery found.
#[derive(Debug)]
pub struct Recovered {
    /// Segments in base-offset order; the last one is active, its file open and trimmed to its
    /// logical size.
    pub segments: Vec<Rc<Segment>>,
    /// Idempotent producer state rebuilt from the scanned segments.
    pub producers: ProducerState,
    /// Whether the previous run closed the log cleanly.
    pub clean_shutdown: bool,
}

/// Lists, checks and opens the segments in `dir` (created if missing). `write_bytes_max` bounds
/// how far a single torn write can reach (see `find_valid_batch_after`).
pub async fn recover(dir: &Path, write_bytes_max: u64) -> Result<Recovered, LogError> {
    let (base_offsets, mut marker, mut checkpoint) = list_segments(dir).await?;
    let clean_shutdown = marker.is_some();
    let mut producers = None;
    let mut segments: Vec<Rc<Segment>> = Vec::with_capacity(base_offsets.len().max(1));
    for (i, &base_offset) in base_offsets.iter().enumerate() {
        glommio::yield_if_needed().await;
        let segment = Segment::new(dir, base_offset);
        let Some(&next_base) = base_offsets.get(i + 1) else {
            // The marker and the checkpoint describe the last segment only.
            let found = Found {
                marker: marker.take(),
                checkpoint: checkpoint.take(),
            };
            producers = Some(recover_active(&segment, found, &segments, write_bytes_max).await?);
            segments.push(segment);
            break;
        };
        let whole = recover_closed(&segment, next_base, write_bytes_max).await?;
        segments.push(segment);
        if !whole {
            // Cut at corruption: the later segments go, so the offsets stay contiguous (as
            // Kafka deletes the segments after a truncation point). This one is now the last.
            remove_segments_after_cut(dir, &base_offsets[i + 1..]).await?;
            break;
        }
        // Not the last: it was rolled (a segment after it exists), so retention may take it.
        segments.last().expect("just pushed").seal();
    }
    if segments.is_empty() {
        let segment = Segment::new(dir, 0);
        let file = DirectFile::open_or_create(&segment.log_path()).await?;
        segment::sync_dir(dir).await?;
        segment.set_file(Rc::new(file));
        segments.push(segment);
    }
    let producers = match producers {
        Some(producers) => producers,
        None => rebuild_producers(dir, &segments, None).await?,
    };
    let log_end_offset = segments.last().expect("a segment").next_offset();
    let snapshot_dir = dir.to_owned();
    // Snapshots beyond the end may count batches the crash took back; a segment could start
    // there again later, and must not be matched with them.
    glommio::executor()
        .spawn_blocking(move || {
            producer_snapshot::remove_outside(&snapshot_dir, i64::MIN, log_end_offset)
        })
        .await?;
    tracing::debug!(dir = %dir.display(), segments = segments.len(), clean_shutdown, "log recovered");
    Ok(Recovered {
        segments,
        producers,
        clean_shutdown,
    })
}

/// What the partition directory says about the last segment.
struct Found {
    /// The clean-shutdown marker.
    marker: Option<ShutdownMarker>,
    /// The recovery checkpoint.
    checkpoint: Option<Checkpoint>,
}

/// Opens a closed segment (`next_base` is where the segment after it starts) and finds its data:
/// from its index files, or by scanning when they are missing (a crash during its roll). False
/// when its data ends before `next_base`: it was cut at corruption as
/// `--unsafe-truncate-corrupt-logs` asks. A closed segment was written whole and synced before
/// the next one was created, so any damage in it is corruption, never a torn write.
async fn recover_closed(
    segment: &Segment,
    next_base: i64,
    write_bytes_max: u64,
) -> Result<bool, LogError> {
    let file = Rc::new(DirectFile::open(&segment.log_path()).await?);
    segment.set_file(file.clone());
    let size_bytes = file.file_size().await?;
    if let Some((index, time_index)) = segment.load_indexes(size_bytes).await {
        segment.restore(size_bytes, next_base, index, time_index);
        return Ok(true);
    }
    // The producer state is rebuilt from snapshots and replays once the segments are known.
    let mut scanned_producers = ProducerState::default();
    let end = scan_segment(segment, &file, &mut scanned_producers, write_bytes_max).await?;
    let whole = segment.next_offset() == next_base;
    if !whole {
        let error = LogError::Corrupt {
            offset: segment.next_offset(),
            file_position: end,
            path: file.path().display().to_string(),
            reason: format!("a closed segment's data ends before offset {next_base}"),
        };
        if !TRUNCATE_CORRUPT.get() {
            return Err(error);
        }
        tracing::error!(
            %error,
            "truncating a corrupt log as --unsafe-truncate-corrupt-logs asks; the segments \
             after it are deleted"
        );
    }
    if end < size_bytes {
        file.truncate(end).await?;
    }
    Ok(whole)
}

/// Opens the last segment and finds its data and the producer state: from the clean-shutdown
/// marker and its index files, or by scanning (from its recovery checkpoint if one fits, else
/// from the start, on top of the state `closed` left).
async fn recover_active(
    segment: &Segment,
    found: Found,
    closed: &[Rc<Segment>],
    write_bytes_max: u64,
) -> Result<ProducerState, LogError> {
    let file = Rc::new(DirectFile::open(&segment.log_path()).await?);
    segment.set_file(file.clone());
    let size_bytes = file.file_size().await?;
    if let Some(marker) = found.marker {
        if restore_active(segment, size_bytes, &marker).await {
            return Ok(marker.producers);
        }
        let path = segment.log_path();
        tracing::warn!(path = %path.display(), "clean-shutdown marker does not match; scanning");
    }
    let checkpoint = found.checkpoint.filter(|checkpoint| {
        let marker = &checkpoint.marker;
        marker.active_base_offset == segment.base_offset()
            && marker.active_size_bytes <= size_bytes
            && marker.log_end_offset >= segment.base_offset()
    });
    let mut producers = match checkpoint {
        Some(checkpoint) => {
            let marker = checkpoint.marker;
            segment.restore(
                marker.active_size_bytes,
                marker.log_end_offset,
                checkpoint.index,
                checkpoint.time_index,
            );
            tracing::debug!(
                path = %segment.log_path().display(),
                file_position = segment.written_bytes(),
                "scanning from the recovery checkpoint"
            );
            marker.producers
        }
        None => rebuild_producers(segment.dir(), closed, Some(segment.base_offset())).await?,
    };
    let end = scan_segment(segment, &file, &mut producers, write_bytes_max).await?;
    if end < size_bytes {
        // Cut the torn tail and the stale preallocated bytes: the file ends at the data.
        file.truncate(end).await?;
    }
    Ok(producers)
}

/// The producer state after the batches of `segments` (opened, data ends known): the newest
/// intact producer snapshot taken where one of them (or the segment `next_base` after them)
/// starts, plus a replay of the segments from there. Without one, all of them are replayed, and
/// the result is saved as the snapshot at `next_base`, so the next unclean start replays nothing.
async fn rebuild_producers(
    dir: &Path,
    segments: &[Rc<Segment>],
    next_base: Option<i64>,
) -> Result<ProducerState, LogError> {
    let mut candidates: Vec<i64> = segments
        .iter()
        .map(|segment| segment.base_offset())
        .collect();
    candidates.extend(next_base);
    let snapshot_dir = dir.to_owned();
    let snapshot = glommio::executor()
        .spawn_blocking(move || {
            candidates.iter().rev().find_map(|&base_offset| {
                producer_snapshot::read(&snapshot_dir, base_offset)
                    .map(|state| (base_offset, state))
            })
        })
        .await;
    let (from_offset, mut producers) = snapshot.unwrap_or((i64::MIN, ProducerState::default()));
    let mut replayed = 0;
    for segment in segments
        .iter()
        .filter(|segment| segment.base_offset() >= from_offset)
    {
        replay_segment(segment, &mut producers).await?;
        replayed += 1;
    }
    if let Some(next_base) = next_base
        && replayed > 0
    {
        tracing::info!(
            dir = %dir.display(),
            segments = replayed,
            "producer state rebuilt from closed segments"
        );
        let snapshot_dir = dir.to_owned();
        let state = producers.clone();
        let written = glommio::executor()
            .spawn_blocking(move || producer_snapshot::write(&snapshot_dir, next_base, &state))
            .await;
        if let Err(error) = written {
            tracing::warn!(dir = %dir.display(), %error, "producer snapshot not written");
        }
    }
    Ok(producers)
}

/// Records the idempotent batches of a segment whose data is known (`written_bytes`) into
/// `producers`. Stops with a warning at a batch that does not check (the state then misses what
/// follows; fetches report that damage).
async fn replay_segment(segment: &Segment, producers: &mut ProducerState) -> Result<(), LogError> {
    let Some(file) = segment.file() else {
        return Ok(());
    };
    let end = segment.written_bytes();
    let mut position = 0u64;
    let mut buffer = BytesMut::new();
    let mut end_of_file = false;
    while position < end {
        glommio::yield_if_needed().await;
        let size = match record_batch::batch_size(&buffer) {
            Ok(Some(size)) if size <= buffer.len() => size,
            Ok(Some(size)) if !end_of_file && size <= SCAN_BATCH_BYTES_MAX => {
                read_more(&file, position, &mut buffer, &mut end_of_file, size).await?;
                continue;
            }
            Ok(None) if !end_of_file => {
                read_more(&file, position, &mut buffer, &mut end_of_file, 0).await?;
                continue;
            }
            _ => break,
        };
        let batch = buffer.split_to(size);
        let Ok(header) = record_batch::validate(&batch) else {
            break;
        };
        if let Some(identity) = producer_identity(header) {
            producers.record(
                &identity,
                header.base_offset.get(),
                header.max_timestamp.get(),
            );
        }
        position += size as u64;
    }
    if position < end {
        tracing::warn!(
            path = %file.path().display(),
            file_position = position,
            "producer state replay stopped at a damaged batch"
        );
    }
    Ok(())
}

/// Deletes the segments starting at `base_offsets` (all after a segment cut at corruption) and
/// the recovery checkpoint (it describes one of them, and a segment may start at that offset
/// again), syncing the directory.
async fn remove_segments_after_cut(dir: &Path, base_offsets: &[i64]) -> Result<(), LogError> {
    let dir = dir.to_owned();
    let base_offsets = base_offsets.to_vec();
    glommio::executor()
        .spawn_blocking(move || -> std::io::Result<()> {
            let mut paths = vec![dir.join(CHECKPOINT_FILE_NAME)];
            for base_offset in base_offsets {
                let segment = Segment::new(&dir, base_offset);
                // Index files first: a crash in between leaves a .log without indexes, which
                // the next open scans (and cuts again).
                paths.extend([
                    segment.index_path(),
                    segment.time_index_path(),
                    segment.log_path(),
                ]);
            }
            for path in paths {
                match std::fs::remove_file(&path) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        return Err(error);
                    }
                    _ => {}
                }
            }
            std::fs::File::open(&dir)?.sync_all()
        })
        .await?;
    Ok(())
}

/// Restores the active segment from a clean-shutdown marker and its index files. False if they
/// do not fit together (the segment is then scanned).
async fn restore_active(segment: &Segment, size_bytes: u64, marker: &ShutdownMarker) -> bool {
    if marker.active_base_offset != segment.base_offset()
        || marker.active_size_bytes > size_bytes
        || marker.log_end_offset < segment.base_offset()
    {
        return false;
    }
    let Some((index, time_index)) = segment.load_indexes(marker.active_size_bytes).await else {
        return false;
    };
    segment.restore(
        marker.active_size_bytes,
        marker.log_end_offset,
        index,
        time_index,
    );
    true
}

/// The base offsets of the `.log` files in `dir` (sorted), the clean-shutdown marker if an intact
/// one was there, and the recovery checkpoint if an intact one is there (it stays). Creates the directory, removes temp files and the marker (syncing the
/// directory, so a crash from now on is never mistaken for a clean shutdown).
async fn list_segments(dir: &Path) -> Result<Listed, LogError> {
    let dir: PathBuf = dir.to_owned();
    let (base_offsets, marker_bytes, checkpoint_bytes) = glommio::executor()
        .spawn_blocking(move || -> std::io::Result<ListedBytes> {
            if !dir.exists() {
                std::fs::create_dir_all(&dir)?;
                // The partition directory's own name lives in its parent.
                if let Some(parent) = dir.parent() {
                    std::fs::File::open(parent)?.sync_all()?;
                }
            }
            let mut base_offsets = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(TEMP_SUFFIX) {
                    std::fs::remove_file(entry.path())?;
                } else if let Some(base_offset) = segment::parse_log_file_name(&name) {
                    base_offsets.push(base_offset);
                }
            }
            base_offsets.sort_unstable();
            remove_segments_below_log_start(&dir, &mut base_offsets)?;
            let marker = dir.join(SHUTDOWN_MARKER_FILE_NAME);
            let marker_bytes = match std::fs::read(&marker) {
                Ok(bytes) => {
                    std::fs::remove_file(&marker)?;
                    Some(bytes)
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => return Err(error),
            };
            std::fs::File::open(&dir)?.sync_all()?;
            let checkpoint_bytes = std::fs::read(dir.join(CHECKPOINT_FILE_NAME)).ok();
            Ok((base_offsets, marker_bytes, checkpoint_bytes))
        })
        .await?;
    Ok((
        base_offsets,
        marker_bytes.and_then(|bytes| ShutdownMarker::decode(&bytes)),
        checkpoint_bytes.and_then(|bytes| Checkpoint::decode(&bytes)),
    ))
}

/// Removes the segments wholly below the persisted log start offset (those before the last
/// segment starting at or below it), as a crash may leave them while retention, DeleteRecords
/// or a replica's reset (`truncate_fully`) removes them: they are deleted data, and a reset
/// leaves a gap in offsets after them. Blocking.
fn remove_segments_below_log_start(dir: &Path, base_offsets: &mut Vec<i64>) -> std::io::Result<()> {
    let Some(log_start) = retention::read_log_start_offset(dir) else {
        return Ok(());
    };
    let below = base_offsets
        .iter()
        .rposition(|&base| base <= log_start)
        .unwrap_or(0);
    if below == 0 {
        return Ok(());
    }
    for base_offset in base_offsets.drain(..below) {
        let segment = Segment::new(dir, base_offset);
        for path in [
            segment.index_path(),
            segment.time_index_path(),
            segment.log_path(),
        ] {
            match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        tracing::info!(path = %segment.log_path().display(), log_start, "removed a segment below the log start");
    }
    Ok(())
}

/// Base offsets, marker bytes and checkpoint bytes, as read from the directory.
type ListedBytes = (Vec<i64>, Option<Vec<u8>>, Option<Vec<u8>>);

/// Base offsets, the clean-shutdown marker and the recovery checkpoint.
type Listed = (Vec<i64>, Option<ShutdownMarker>, Option<Checkpoint>);

/// Scans `segment`'s file from the start, adopting every valid, contiguous batch into the
/// segment (indexes, sizes) and `producers`. Returns the logical end (file position after the
/// last valid batch).
async fn scan_segment(
    segment: &Segment,
    file: &DirectFile,
    producers: &mut ProducerState,
    write_bytes_max: u64,
) -> Result<u64, LogError> {
    let file_size_bytes = file.file_size().await?;
    // After the checkpointed prefix, if one was restored; else from the start.
    let mut position = segment.written_bytes();
    // Bytes of the file from `position` on, read ahead.
    let mut buffer = BytesMut::new();
    let mut end_of_file = false;
    loop {
        glommio::yield_if_needed().await;
        let size = match record_batch::batch_size(&buffer) {
            Ok(Some(size)) => size,
            Ok(None) if !end_of_file => {
                read_more(file, position, &mut buffer, &mut end_of_file, 0).await?;
                continue;
            }
            Ok(None) => break,
            Err(_) => break, // Zeros (the preallocated tail) or a torn length.
        };
        if position + size as u64 > file_size_bytes || size > SCAN_BATCH_BYTES_MAX {
            break; // A length no write could have produced here.
        }
        if buffer
            .get(MAGIC_POSITION)
            .is_some_and(|&magic| magic as i8 != MAGIC_V2)
        {
            break; // Not a v2 batch: do not read a garbage length's worth of bytes to find out.
        }
        if buffer.len() < size {
            read_more(file, position, &mut buffer, &mut end_of_file, size).await?;
            if buffer.len() < size {
                break;
            }
            continue;
        }
        let batch = buffer.split_to(size).freeze();
        if !adopt_batch(segment, &batch, producers) {
            buffer = BytesMut::from(&batch[..]); // Keep the damaged bytes for the report below.
            break;
        }
        position += size as u64;
    }
    let damaged = !buffer.is_empty() && buffer.iter().take(BLOCK_PROBE_BYTES).any(|&b| b != 0);
    if damaged {
        if let Some(found) =
            find_valid_batch_after(file, position, file_size_bytes, write_bytes_max).await?
        {
            let error = LogError::Corrupt {
                offset: segment.next_offset(),
                file_position: position,
                path: file.path().display().to_string(),
                reason: format!("invalid batch followed by a valid batch at file position {found}"),
            };
            if !TRUNCATE_CORRUPT.get() {
                return Err(error);
            }
            tracing::error!(%error, "truncating a corrupt log as --unsafe-truncate-corrupt-logs asks");
        }
        tracing::warn!(
            path = %file.path().display(),
            file_position = position,
            next_offset = segment.next_offset(),
            "truncating a torn tail"
        );
    }
    segment.set_written_bytes(position);
    Ok(position)
}

/// Bytes after the last valid batch checked for being the zeroed (preallocated) tail.
const BLOCK_PROBE_BYTES: usize = BATCH_LENGTH_PREFIX_BYTES;

/// Appends the file's bytes after what `buffer` holds (it holds the file from `position`), at
/// least `SCAN_READ_BYTES` or what is needed to reach `needed_bytes`.
async fn read_more(
    file: &DirectFile,
    position: u64,
    buffer: &mut BytesMut,
    end_of_file: &mut bool,
    needed_bytes: usize,
) -> Result<(), LogError> {
    let want = SCAN_READ_BYTES.max(needed_bytes.saturating_sub(buffer.len()));
    let read = file.read_at(position + buffer.len() as u64, want).await?;
    if read.len() < want {
        *end_of_file = true;
    }
    buffer.extend_from_slice(&read);
    Ok(())
}

/// Adopts one batch found by a scan if it is valid and continues the offsets. Returns false at
/// the end of the valid data.
fn adopt_batch(segment: &Segment, batch: &Bytes, producers: &mut ProducerState) -> bool {
    let Ok(header) = record_batch::validate(batch) else {
        return false;
    };
    let base_offset = header.base_offset.get();
    if base_offset != segment.next_offset() {
        // A valid batch from an older write at this position (stale bytes), not the next one.
        return false;
    }
    let last_offset = base_offset + i64::from(header.last_offset_delta.get());
    if let Some(identity) = producer_identity(header) {
        producers.record(&identity, base_offset, header.max_timestamp.get());
    }
    let max_timestamp_ms = header.max_timestamp.get();
    segment.on_sequenced(
        base_offset,
        last_offset,
        max_timestamp_ms,
        batch.len() as u64,
    );
    true
}

/// The idempotent-producer identity of a stored batch, if it has one.
fn producer_identity(header: &RecordBatchHeader) -> Option<ProducerBatch> {
    let producer_id = header.producer_id.get();
    (producer_id >= 0).then(|| ProducerBatch {
        producer_id,
        producer_epoch: header.producer_epoch.get(),
        base_sequence: header.base_sequence.get(),
        last_offset_delta: header.last_offset_delta.get(),
    })
}

/// Looks for a valid batch starting beyond the reach of a torn write: the last write before a
/// crash starts at most one block before the damage and is at most `write_bytes_max` long, so a
/// valid batch starting after that was written earlier and acknowledged, and the damage is
/// corruption, not a torn tail. Checks every byte position (batches are not aligned); zeros fail
/// at the length check, so the preallocated tail scans quickly.
async fn find_valid_batch_after(
    file: &DirectFile,
    damage_position: u64,
    file_size_bytes: u64,
    write_bytes_max: u64,
) -> Result<Option<u64>, LogError> {
    let mut position = damage_position + write_bytes_max + crate::config::BLOCK_BYTES;
    while position + (RECORD_BATCH_HEADER_BYTES as u64) <= file_size_bytes {
        glommio::yield_if_needed().await;
        let window = file.read_at(position, SCAN_READ_BYTES).await?;
        if window.is_empty() {
            break;
        }
        for start in 0..window.len() {
            let Ok(Some(size)) = record_batch::batch_size(&window[start..]) else {
                continue;
            };
            let batch_position = position + start as u64;
            let magic = window.get(start + MAGIC_POSITION).map(|&magic| magic as i8);
            let plausible = magic.is_none_or(|magic| magic == MAGIC_V2)
                && size <= SCAN_BATCH_BYTES_MAX
                && batch_position + size as u64 <= file_size_bytes;
            if !plausible {
                continue;
            }
            let candidate = if start + size <= window.len() {
                window.slice(start..start + size)
            } else {
                file.read_at(batch_position, size).await?
            };
            if record_batch::validate(&candidate).is_ok() {
                return Ok(Some(batch_position));
            }
        }
        position += window.len() as u64;
    }
    Ok(None)
}
