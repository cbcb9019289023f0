//! The RecordBatch v2 view: Kafka's unit of produce, storage and fetch, and so Spate's disk format.
//!
//! A batch is a 61-byte big-endian header followed by its records (one compressed blob when the
//! codec bits are set). The broker never re-encodes a batch: it validates the header and the
//! CRC-32C, patches `base_offset` and `partition_leader_epoch` in place (both outside the CRC), and
//! for LogAppendTime topics sets `max_timestamp` and recomputes the CRC. Callers must validate a
//! batch before patching it, and must never serve one whose CRC did not check.

use bytes::Bytes;
use zerocopy::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Bytes in the batch header, before the records.
pub const RECORD_BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `batch_length` counts: `base_offset` (8) and `batch_length` itself (4).
pub const BATCH_LENGTH_PREFIX_BYTES: usize = 12;
/// Where the CRC-32C coverage starts (the `attributes` field).
pub const CRC_START: usize = 21;
/// The only batch format Spate accepts.
pub const MAGIC_V2: i8 = 2;
/// Attribute bit: timestamps are the broker's append time.
pub const ATTRIBUTE_LOG_APPEND_TIME: i16 = 1 << 3;
/// Attribute bit: part of a transaction.
pub const ATTRIBUTE_TRANSACTIONAL: i16 = 1 << 4;
/// Attribute bit: a control batch (transaction markers).
pub const ATTRIBUTE_CONTROL: i16 = 1 << 5;
/// Attribute bits 0-2: the compression codec.
pub const ATTRIBUTE_COMPRESSION_MASK: i16 = 0b111;
/// Where `magic` sits, so a batch's format can be checked before its header is trusted.
const MAGIC_POSITION: usize = 16;

/// The 61-byte RecordBatch v2 header, read in place from the batch bytes.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RecordBatchHeader {
    /// First offset in the batch; assigned by the broker.
    pub base_offset: I64,
    /// Bytes after this field: total batch size minus 12.
    pub batch_length: I32,
    /// Leader epoch at append; set by the broker.
    pub partition_leader_epoch: I32,
    /// Format version, 2.
    pub magic: i8,
    /// CRC-32C of the bytes from `attributes` to the end.
    pub crc: U32,
    /// Compression codec, timestamp type, transactional and control bits.
    pub attributes: I16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: I32,
    /// Timestamp of the first record.
    pub base_timestamp: I64,
    /// Largest timestamp in the batch (or the append time).
    pub max_timestamp: I64,
    /// Idempotent producer id, or -1.
    pub producer_id: I64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: I16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: I32,
    /// Number of records in the batch.
    pub records_count: I32,
}

const _: () = assert!(size_of::<RecordBatchHeader>() == RECORD_BATCH_HEADER_BYTES);

/// A batch's compression codec (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Compression {
    /// Records stored as they are.
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The codec's attribute bits.
    pub fn attribute(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Kafka's name for the codec in `compression.type`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Why a batch was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a header, or than the batch's own length claims.
    #[error("batch truncated: {available} bytes available, {needed} needed")]
    Truncated { available: usize, needed: usize },
    /// `batch_length` is smaller than a header or disagrees with the bytes given.
    #[error("invalid batch length {batch_length}")]
    InvalidLength { batch_length: i32 },
    /// magic is not 2 (v0/v1 message sets are not accepted).
    #[error("unsupported record batch magic {magic}")]
    UnsupportedMagic { magic: i8 },
    /// The stored CRC does not match the bytes.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// `last_offset_delta + 1 != records_count`, or no records.
    #[error("records count {records_count} does not match last offset delta {last_offset_delta}")]
    InvalidRecordsCount {
        records_count: i32,
        last_offset_delta: i32,
    },
    /// Compression bits 5-7, which no codec uses.
    #[error("unknown compression codec {codec}")]
    UnknownCompression { codec: i16 },
}

/// CRC-32C (Castagnoli) as RecordBatch v2 uses it.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(bytes)
}

/// The total size of the batch starting at `bytes`, from its length prefix, if the prefix is
/// there. The size is not checked against the bytes available.
pub fn batch_size(bytes: &[u8]) -> Result<Option<usize>, BatchError> {
    let Some(prefix) = bytes.get(8..BATCH_LENGTH_PREFIX_BYTES) else {
        return Ok(None);
    };
    let batch_length = i32::from_be_bytes(prefix.try_into().expect("slice of 4"));
    let total = usize::try_from(batch_length)
        .ok()
        .map(|n| n + BATCH_LENGTH_PREFIX_BYTES)
        .filter(|&n| n >= RECORD_BATCH_HEADER_BYTES)
        .ok_or(BatchError::InvalidLength { batch_length })?;
    Ok(Some(total))
}

/// Reads the header of a batch without checking anything but its size.
pub fn header(batch: &[u8]) -> Result<&RecordBatchHeader, BatchError> {
    RecordBatchHeader::ref_from_prefix(batch)
        .map(|(header, _)| header)
        .map_err(|_| BatchError::Truncated {
            available: batch.len(),
            needed: RECORD_BATCH_HEADER_BYTES,
        })
}

/// Validates one whole batch: exact length, magic 2, CRC-32C, a known codec, and a records count
/// that matches `last_offset_delta`. Returns the header on success.
pub fn validate(batch: &[u8]) -> Result<&RecordBatchHeader, BatchError> {
    if let Some(&magic) = batch.get(MAGIC_POSITION) {
        // Check magic first: a v0/v1 message has a different layout, so its "length" and "crc"
        // would be misread and the error would say CORRUPT instead of INVALID_RECORD.
        let magic = magic as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
    }
    let header = header(batch)?;
    let batch_length = header.batch_length.get();
    if batch_size(batch)? != Some(batch.len()) {
        return Err(BatchError::InvalidLength { batch_length });
    }
    let stored = header.crc.get();
    let computed = crc32c(&batch[CRC_START..]);
    if stored != computed {
        return Err(BatchError::CrcMismatch { stored, computed });
    }
    compression(header)?;
    let records_count = header.records_count.get();
    let last_offset_delta = header.last_offset_delta.get();
    if records_count < 1 || i64::from(last_offset_delta) + 1 != i64::from(records_count) {
        return Err(BatchError::InvalidRecordsCount {
            records_count,
            last_offset_delta,
        });
    }
    Ok(header)
}

/// The batch's compression codec.
pub fn compression(header: &RecordBatchHeader) -> Result<Compression, BatchError> {
    let codec = header.attributes.get() & ATTRIBUTE_COMPRESSION_MASK;
    Ok(match codec {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => return Err(BatchError::UnknownCompression { codec }),
    })
}

fn header_mut(batch: &mut [u8]) -> Result<&mut RecordBatchHeader, BatchError> {
    let available = batch.len();
    RecordBatchHeader::mut_from_prefix(batch)
        .map(|(header, _)| header)
        .map_err(|_| BatchError::Truncated {
            available,
            needed: RECORD_BATCH_HEADER_BYTES,
        })
}

/// Sets the broker-assigned fields outside the CRC: the base offset and the leader epoch.
pub fn assign(
    batch: &mut [u8],
    base_offset: i64,
    partition_leader_epoch: i32,
) -> Result<(), BatchError> {
    let header = header_mut(batch)?;
    header.base_offset.set(base_offset);
    header.partition_leader_epoch.set(partition_leader_epoch);
    Ok(())
}

/// Marks the batch as LogAppendTime with `append_time_ms` as its max timestamp, and recomputes
/// the CRC those fields are covered by.
pub fn set_log_append_time(batch: &mut [u8], append_time_ms: i64) -> Result<(), BatchError> {
    let header = header_mut(batch)?;
    let attributes = header.attributes.get() | ATTRIBUTE_LOG_APPEND_TIME;
    header.attributes.set(attributes);
    header.max_timestamp.set(append_time_ms);
    let crc = crc32c(&batch[CRC_START..]);
    header_mut(batch)?.crc.set(crc);
    Ok(())
}

/// A new batch with the fields of `header` (a batch's first 61 bytes) around `records`, a records
/// region compressed with `codec`: the codec bits, length and CRC are set to match. Offsets,
/// timestamps and the producer fields are kept, as the records inside are the same.
pub fn with_records(
    header: &[u8],
    codec: Compression,
    records: &[u8],
) -> Result<Bytes, BatchError> {
    let total = RECORD_BATCH_HEADER_BYTES + records.len();
    let batch_length = i32::try_from(total - BATCH_LENGTH_PREFIX_BYTES)
        .map_err(|_| BatchError::InvalidLength { batch_length: -1 })?;
    let mut batch = Vec::with_capacity(total);
    batch.extend_from_slice(header.get(..RECORD_BATCH_HEADER_BYTES).ok_or(
        BatchError::Truncated {
            available: header.len(),
            needed: RECORD_BATCH_HEADER_BYTES,
        },
    )?);
    batch.extend_from_slice(records);
    let fields = header_mut(&mut batch)?;
    fields.batch_length.set(batch_length);
    let attributes = fields.attributes.get() & !ATTRIBUTE_COMPRESSION_MASK;
    fields.attributes.set(attributes | codec.attribute());
    let crc = crc32c(&batch[CRC_START..]);
    header_mut(&mut batch)?.crc.set(crc);
    Ok(Bytes::from(batch))
}

/// Iterates over the whole batches of a record set (a fetch response's records, a segment's bytes),
/// as zero-copy slices. A trailing partial batch (fetch responses may end in one) ends the
/// iteration and is left in [`BatchIter::remainder`]; a length that cannot be right is an error.
#[derive(Debug, Clone)]
pub struct BatchIter {
    rest: Bytes,
    failed: bool,
}

impl BatchIter {
    /// Iterates over `records`.
    pub fn new(records: Bytes) -> Self {
        Self {
            rest: records,
            failed: false,
        }
    }

    /// The bytes after the last whole batch returned.
    pub fn remainder(&self) -> &Bytes {
        &self.rest
    }
}

impl Iterator for BatchIter {
    type Item = Result<Bytes, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match batch_size(&self.rest) {
            Ok(Some(size)) if size <= self.rest.len() => Some(Ok(self.rest.split_to(size))),
            Ok(_) => None,
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::records::{BatchBuilder, Record};

    fn sample_batch() -> Vec<u8> {
        let mut builder = BatchBuilder::new(1_700_000_000_000);
        builder.push(&Record {
            timestamp_delta: 0,
            key: Some(&b"k"[..]),
            value: Some(&b"value"[..]),
            headers: &[],
        });
        builder.push(&Record {
            timestamp_delta: 5,
            key: None,
            value: Some(&b"second"[..]),
            headers: &[(&b"h"[..], Some(&b"v"[..]))],
        });
        builder.finish().to_vec()
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // Proves we compute Castagnoli, not IEEE: "123456789" -> 0xe3069283.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn valid_batch_passes_and_patching_keeps_the_crc() {
        // Proves assign() touches only bytes outside the CRC, and LogAppendTime recomputes it.
        let mut batch = sample_batch();
        validate(&batch).unwrap();
        assign(&mut batch, 42, 3).unwrap();
        let header = validate(&batch).unwrap();
        assert_eq!(header.base_offset.get(), 42);
        assert_eq!(header.partition_leader_epoch.get(), 3);
        set_log_append_time(&mut batch, 1_800_000_000_000).unwrap();
        let header = validate(&batch).unwrap();
        assert_eq!(header.max_timestamp.get(), 1_800_000_000_000);
        assert_ne!(header.attributes.get() & ATTRIBUTE_LOG_APPEND_TIME, 0);
    }

    #[test]
    fn every_corruption_is_a_typed_error() {
        // Proves bad CRC, bad magic, bad length and bad count are each reported, never accepted.
        let batch = sample_batch();
        let mut flipped = batch.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            validate(&flipped),
            Err(BatchError::CrcMismatch { .. })
        ));
        let mut old = batch.clone();
        old[MAGIC_POSITION] = 1;
        assert!(matches!(
            validate(&old),
            Err(BatchError::UnsupportedMagic { magic: 1 })
        ));
        for len in 0..batch.len() {
            assert!(validate(&batch[..len]).is_err(), "truncated to {len}");
        }
        let mut count = batch.clone();
        count[57..61].copy_from_slice(&9i32.to_be_bytes());
        let crc = crc32c(&count[CRC_START..]);
        count[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate(&count),
            Err(BatchError::InvalidRecordsCount { .. })
        ));
    }

    #[test]
    fn batch_iter_stops_at_a_partial_tail() {
        // Proves a record set ending in half a batch yields the whole ones and keeps the rest.
        let batch = sample_batch();
        let mut set = batch.clone();
        set.extend_from_slice(&batch);
        set.extend_from_slice(&batch[..30]);
        let mut iter = BatchIter::new(Bytes::from(set));
        assert_eq!(iter.next().unwrap().unwrap().len(), batch.len());
        assert_eq!(iter.next().unwrap().unwrap().len(), batch.len());
        assert!(iter.next().is_none());
        assert_eq!(iter.remainder().len(), 30);
        let mut hostile = vec![0u8; 12];
        hostile[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        let mut iter = BatchIter::new(Bytes::from(hostile));
        assert!(iter.next().unwrap().is_err());
        assert!(iter.next().is_none());
    }
}
