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
//! scanned too.
//! Callers must not use the directory's files while recovery runs.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::io::DirectFile;
use crate::protocol::record_batch::{
    self, BATCH_LENGTH_PREFIX_BYTES, MAGIC_V2, RECORD_BATCH_HEADER_BYTES,
};

use super::checkpoint::{CHECKPOINT_FILE_NAME, Checkpoint};
use super::error::LogError;
use super::producer_state::{ProducerBatch, ProducerState};
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
    let mut producers = ProducerState::default();
    let mut segments = Vec::with_capacity(base_offsets.len().max(1));
    for (i, &base_offset) in base_offsets.iter().enumerate() {
        glommio::yield_if_needed().await;
        let next_base = base_offsets.get(i + 1).copied();
        // The marker describes the last segment only.
        let (marker, checkpoint) = if next_base.is_none() {
            (marker.take(), checkpoint.take())
        } else {
            (None, None)
        };
        let segment = Segment::new(dir, base_offset);
        let found = Found { marker, checkpoint };
        recover_segment(&segment, next_base, found, &mut producers, write_bytes_max).await?;
        if next_base.is_some() {
            // Not the last: it was rolled (a segment after it exists), so retention may take it.
            segment.seal();
        }
        segments.push(segment);
    }
    if segments.is_empty() {
        let segment = Segment::new(dir, 0);
        let file = DirectFile::open_or_create(&segment.log_path()).await?;
        segment::sync_dir(dir).await?;
        segment.set_file(Rc::new(file));
        segments.push(segment);
    }
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

/// Opens one segment and finds its data: from the clean-shutdown marker (the last segment after
/// a clean close), from its index files (a closed segment), or by scanning (the last segment from
/// its recovery checkpoint if there is one for it, else from the start).
async fn recover_segment(
    segment: &Segment,
    next_base: Option<i64>,
    found: Found,
    producers: &mut ProducerState,
    write_bytes_max: u64,
) -> Result<(), LogError> {
    let file = Rc::new(DirectFile::open(&segment.log_path()).await?);
    segment.set_file(file.clone());
    let size_bytes = file.file_size().await?;
    if let Some(marker) = found.marker {
        if restore_active(segment, size_bytes, &marker).await {
            *producers = marker.producers;
            return Ok(());
        }
        let path = segment.log_path();
        tracing::warn!(path = %path.display(), "clean-shutdown marker does not match; scanning");
    }
    if let Some(next_offset) = next_base
        && let Some((index, time_index)) = segment.load_indexes(size_bytes).await
    {
        segment.restore(size_bytes, next_offset, index, time_index);
        return Ok(());
    }
    if let Some(checkpoint) = found.checkpoint {
        let marker = &checkpoint.marker;
        let fits = marker.active_base_offset == segment.base_offset()
            && marker.active_size_bytes <= size_bytes
            && marker.log_end_offset >= segment.base_offset();
        if fits {
            segment.restore(
                marker.active_size_bytes,
                marker.log_end_offset,
                checkpoint.index,
                checkpoint.time_index,
            );
            *producers = checkpoint.marker.producers;
            tracing::debug!(
                path = %segment.log_path().display(),
                file_position = segment.written_bytes(),
                "scanning from the recovery checkpoint"
            );
        }
    }
    let end = scan_segment(segment, &file, producers, write_bytes_max).await?;
    if end < size_bytes {
        // Cut the torn tail and the stale preallocated bytes: the file ends at the data.
        file.truncate(end).await?;
    }
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
    let producer_id = header.producer_id.get();
    if producer_id >= 0 {
        let batch_identity = ProducerBatch {
            producer_id,
            producer_epoch: header.producer_epoch.get(),
            base_sequence: header.base_sequence.get(),
            last_offset_delta: header.last_offset_delta.get(),
        };
        producers.record(&batch_identity, base_offset);
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
