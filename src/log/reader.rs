//! Reads for fetch and ListOffsets: whole batches from segment files, located through the
//! sparse indexes.
//!
//! A read finds the segment holding the offset, starts at the index entry at or below it, reads
//! aligned O_DIRECT windows through `DirectFile`, and returns whole batches beginning with the one
//! that *holds* the offset (a batch starting before it is returned whole, as Kafka does), up to
//! `max_bytes` but always at least one whole batch even if larger (KIP-74).
//!
//! Guarantees: every batch returned from disk passed `record_batch::validate` (CRC-32C included)
//! after it was read back; nothing at or beyond the high watermark is returned; batches are
//! zero-copy slices of the read buffer. Callers must pass a high watermark they read from the log
//! (the bytes below it are written), and must check the offset range first (`PartitionLog::read`).

use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::io::DirectFile;
use crate::protocol::record_batch::{
    self, ATTRIBUTE_COMPRESSION_MASK, ATTRIBUTE_LOG_APPEND_TIME, RECORD_BATCH_HEADER_BYTES,
};
use crate::protocol::records::RecordIter;

use super::error::LogError;
use super::index::INDEX_INTERVAL_BYTES;
use super::partition::PartitionLog;
use super::segment::Segment;

/// Largest single read window of a fetch. Bounds the memory one fetch holds at once (beyond the
/// batches it returns); larger fetches take several windows.
pub const READ_WINDOW_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Reads whole batches from `segment`'s file, one at a time, in windows.
struct BatchScanner {
    /// The segment's base offset, to name it in errors.
    base_offset: i64,
    /// One past the segment's last offset, to judge the offset a damaged batch claims.
    next_offset: i64,
    file: Rc<DirectFile>,
    /// File position of `buffer[0]`.
    position: u64,
    /// The data ends here (the segment's written size).
    end_position: u64,
    buffer: Bytes,
    window_bytes: usize,
}

impl BatchScanner {
    fn new(segment: &Segment, position: u64, window_bytes: usize) -> Result<Self, LogError> {
        let file = segment.file().ok_or(LogError::Closed)?;
        Ok(Self {
            base_offset: segment.base_offset(),
            next_offset: segment.next_offset(),
            file,
            position,
            end_position: segment.written_bytes(),
            buffer: Bytes::new(),
            window_bytes: window_bytes.clamp(INDEX_INTERVAL_BYTES as usize, READ_WINDOW_BYTES_MAX),
        })
    }

    fn corrupt(&self, reason: String) -> LogError {
        self.corrupt_at(self.base_offset, reason)
    }

    /// A corruption error naming `offset` (the damaged batch's own, when it is plausible).
    fn corrupt_at(&self, offset: i64, reason: String) -> LogError {
        LogError::Corrupt {
            offset,
            file_position: self.position,
            path: self.file.path().display().to_string(),
            reason,
        }
    }

    /// The next whole, validated batch, or `None` at the end of the segment's data.
    async fn next(&mut self) -> Result<Option<Bytes>, LogError> {
        loop {
            match record_batch::batch_size(&self.buffer) {
                Ok(Some(size)) if size <= self.buffer.len() => {
                    let batch = self.buffer.split_to(size);
                    if let Err(error) = record_batch::validate(&batch) {
                        // The header may be what is damaged: use its offset only if it fits.
                        let offset = record_batch::header(&batch)
                            .map(|header| header.base_offset.get())
                            .ok()
                            .filter(|offset| (self.base_offset..self.next_offset).contains(offset))
                            .unwrap_or(self.base_offset);
                        let reason = format!("batch read back invalid: {error}");
                        return Err(self.corrupt_at(offset, reason));
                    }
                    self.position += size as u64;
                    return Ok(Some(batch));
                }
                Ok(Some(size)) => self.read_more(size - self.buffer.len()).await?,
                Ok(None) => {
                    if self.position + self.buffer.len() as u64 >= self.end_position {
                        return Ok(None);
                    }
                    self.read_more(0).await?;
                }
                Err(error) => return Err(self.corrupt(format!("bad batch length: {error}"))),
            }
        }
    }

    /// Reads the next window (at least `needed_bytes`) after the buffered bytes.
    async fn read_more(&mut self, needed_bytes: usize) -> Result<(), LogError> {
        let from = self.position + self.buffer.len() as u64;
        let available = self.end_position.saturating_sub(from) as usize;
        let want = self.window_bytes.max(needed_bytes).min(available);
        if want < needed_bytes || want == 0 {
            let reason = format!(
                "batch runs past the segment's data end {}",
                self.end_position
            );
            return Err(self.corrupt(reason));
        }
        let read = self.file.read_at(from, want).await?;
        if read.len() < want {
            return Err(self.corrupt(format!(
                "file ends before its data end {}",
                self.end_position
            )));
        }
        if self.buffer.is_empty() {
            self.buffer = read;
        } else {
            // A batch straddles two windows: join them (one copy of the partial batch).
            let mut joined = BytesMut::with_capacity(self.buffer.len() + read.len());
            joined.extend_from_slice(&self.buffer);
            joined.extend_from_slice(&read);
            self.buffer = joined.freeze();
        }
        Ok(())
    }
}

/// The segment whose offsets include `offset` (the last one starting at or below it).
fn segment_holding(log: &PartitionLog, offset: i64) -> Option<Rc<Segment>> {
    let segments = log.segments.borrow();
    let after = segments.partition_point(|segment| segment.base_offset() <= offset);
    after.checked_sub(1).map(|i| segments[i].clone())
}

/// Disk read for `PartitionLog::read` (the range is already checked and not cached).
pub(super) async fn read_from_disk(
    log: &PartitionLog,
    offset: i64,
    high_watermark: i64,
    max_bytes: usize,
) -> Result<Vec<Bytes>, LogError> {
    let mut batches = Vec::new();
    let mut total_bytes = 0usize;
    let mut next_offset = offset;
    // A fetch continues into the next segment only if the first had nothing at or after the
    // offset (the offset was the segment's end).
    while batches.is_empty() && next_offset < high_watermark {
        let Some(segment) = segment_holding(log, next_offset) else {
            break;
        };
        let relative_offset = segment.relative_offset(next_offset);
        let start = segment
            .index()
            .lookup(relative_offset)
            .map_or(0, |entry| u64::from(entry.file_position));
        let mut scanner = BatchScanner::new(&segment, start, max_bytes)?;
        while let Some(batch) = scanner.next().await? {
            glommio::yield_if_needed().await;
            let header = record_batch::header(&batch)?;
            let base_offset = header.base_offset.get();
            let last_offset = base_offset + i64::from(header.last_offset_delta.get());
            if last_offset < offset {
                continue;
            }
            if last_offset >= high_watermark {
                break;
            }
            if !batches.is_empty() && total_bytes + batch.len() > max_bytes {
                break;
            }
            total_bytes += batch.len();
            batches.push(batch);
        }
        if !batches.is_empty() {
            break;
        }
        next_offset = segment.next_offset().max(next_offset + 1);
    }
    Ok(batches)
}

/// ListOffsets by time (see `PartitionLog::offset_for_timestamp`).
pub(super) async fn offset_for_timestamp(
    log: &PartitionLog,
    timestamp_ms: i64,
    high_watermark: i64,
) -> Result<Option<(i64, i64)>, LogError> {
    let segments = log.segments.borrow().clone();
    for segment in &segments {
        if segment.base_offset() >= high_watermark {
            break;
        }
        if segment.max_timestamp_ms() < timestamp_ms {
            continue;
        }
        let scan_start = segment.time_index().scan_start(timestamp_ms);
        let start = segment
            .index()
            .lookup(scan_start)
            .map_or(0, |entry| u64::from(entry.file_position));
        let mut scanner = BatchScanner::new(segment, start, READ_WINDOW_BYTES_MAX / 8)?;
        while let Some(batch) = scanner.next().await? {
            glommio::yield_if_needed().await;
            let header = record_batch::header(&batch)?;
            let base_offset = header.base_offset.get();
            if base_offset + i64::from(header.last_offset_delta.get()) >= high_watermark {
                return Ok(None);
            }
            if header.max_timestamp.get() >= timestamp_ms {
                return Ok(Some(first_record_at_or_after(&batch, timestamp_ms)));
            }
        }
    }
    Ok(None)
}

/// The offset and timestamp of the first record in `batch` whose timestamp is ≥ `timestamp_ms`
/// (the batch's max timestamp is). Compressed and LogAppendTime batches answer with the base
/// offset and the max timestamp: the broker does not decompress.
fn first_record_at_or_after(batch: &Bytes, timestamp_ms: i64) -> (i64, i64) {
    let header = record_batch::header(batch).expect("validated batch");
    let base_offset = header.base_offset.get();
    let max_timestamp_ms = header.max_timestamp.get();
    let attributes = header.attributes.get();
    let whole_batch = (base_offset, max_timestamp_ms);
    if attributes & (ATTRIBUTE_COMPRESSION_MASK | ATTRIBUTE_LOG_APPEND_TIME) != 0 {
        return whole_batch;
    }
    let base_timestamp_ms = header.base_timestamp.get();
    let records = RecordIter::new(
        batch.slice(RECORD_BATCH_HEADER_BYTES..),
        header.records_count.get(),
    );
    for record in records {
        let Ok(record) = record else {
            return whole_batch;
        };
        let record_timestamp_ms = base_timestamp_ms + record.timestamp_delta;
        if record_timestamp_ms >= timestamp_ms {
            return (
                base_offset + i64::from(record.offset_delta),
                record_timestamp_ms,
            );
        }
    }
    whole_batch
}
