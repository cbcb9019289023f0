//! Validating the records inside a RecordBatch v2, as Kafka's LogValidator does on produce.
//!
//! A batch's CRC proves only that the bytes arrived as the client sent them; a buggy or hostile
//! client can seal garbage records with a valid CRC, and every consumer of the partition then
//! fails on that batch for good. So before a batch reaches the log, every record is walked: its
//! length varint, attributes, timestamp and offset deltas, key, value and headers, each bounded by
//! the record's length and the record by the batch; offset deltas must be 0, 1, ... in order and
//! the records exactly `records_count`, with no bytes after the last. A compressed batch is
//! decompressed as a stream and walked the same way, never holding more than one piece of it.
//!
//! [`RecordWalker`] is a push parser: it takes the records region in pieces of any size (a record
//! may straddle two pieces), so [`RecordsValidation::step`] can do a bounded piece of work and a
//! caller on a shard can yield between steps. Nothing here allocates per record. Callers must
//! validate the batch header first (`record_batch::validate`), which guarantees `records_count`
//! is at least 1.

use std::io::Read;

use super::compression::{CompressionError, decoder};
use super::record_batch::{
    BatchError, Compression, RECORD_BATCH_HEADER_BYTES, RecordBatchHeader, compression,
};

/// Bytes walked (or decompressed) per [`RecordsValidation::step`]: about 15 µs of walking, so a
/// caller that yields between steps keeps the shard responsive, and few enough steps that their
/// overhead does not show.
pub const STEP_BYTES: usize = 64 * 1024;
/// A zig-zag varint (i32) takes at most 5 bytes.
const VARINT_BYTES_MAX: u32 = 5;
/// A zig-zag varlong (i64) takes at most 10 bytes.
const VARLONG_BYTES_MAX: u32 = 10;

/// What is wrong with one record (or with the records region after the last one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordFault {
    /// A varint runs on past its longest encoding.
    #[error("the {field} varint is longer than {bytes_max} bytes")]
    VarintTooLong {
        /// The field being read.
        field: &'static str,
        /// Its longest encoding.
        bytes_max: u32,
    },
    /// A length is negative where it may not be (or below -1 where -1 means null).
    #[error("invalid {field} length {length}")]
    InvalidLength {
        /// The field.
        field: &'static str,
        /// The length read.
        length: i32,
    },
    /// A field runs past the record's declared length.
    #[error("the {field} runs past the record's length of {record_bytes} bytes")]
    PastRecordEnd {
        /// The field.
        field: &'static str,
        /// The record's declared length.
        record_bytes: i32,
    },
    /// The record's fields end before its declared length.
    #[error(
        "the record's length is {record_bytes} bytes but its fields end {unused_bytes} bytes earlier"
    )]
    LengthMismatch {
        /// The declared length.
        record_bytes: i32,
        /// Declared bytes no field used.
        unused_bytes: u32,
    },
    /// The offset delta is not the record's position in the batch.
    #[error("offset delta {found}, expected {expected}")]
    OffsetDelta {
        /// The delta read.
        found: i32,
        /// The record's position.
        expected: i32,
    },
    /// The batch ends inside this record.
    #[error(
        "the record's length is {record_bytes} bytes but the batch ends {missing_bytes} bytes short of its end"
    )]
    PastBatchEnd {
        /// The declared length.
        record_bytes: i32,
        /// Bytes of the record that are not there.
        missing_bytes: u32,
    },
    /// The batch ends before `records_count` records.
    #[error("the batch holds {found} records but its header says {expected}")]
    MissingRecords {
        /// Whole records found.
        found: i32,
        /// The header's records_count.
        expected: i32,
    },
    /// Bytes follow the last record the header counts.
    #[error("bytes follow the last of the {records_count} records the header counts")]
    TrailingBytes {
        /// The header's records_count.
        records_count: i32,
    },
}

/// A malformed record and its index in the batch (Produce's `batch_index`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {batch_index}: {fault}")]
pub struct RecordError {
    /// The record's position in the batch.
    pub batch_index: i32,
    /// What is wrong with it.
    pub fault: RecordFault,
}

/// Why a batch's records were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The batch header is invalid (checked again here for callers that did not).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A record is malformed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The compressed records do not decompress, or to more than the bound.
    #[error(transparent)]
    Compression(#[from] CompressionError),
}

/// Where the walker is inside the current record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Length,
    Attributes,
    TimestampDelta,
    OffsetDelta,
    KeyLength,
    Key,
    ValueLength,
    Value,
    HeaderCount,
    HeaderKeyLength,
    HeaderKey,
    HeaderValueLength,
    HeaderValue,
}

impl Step {
    /// The field this step reads, for error messages.
    fn field(self) -> &'static str {
        match self {
            Step::Length => "record length",
            Step::Attributes => "attributes",
            Step::TimestampDelta => "timestamp delta",
            Step::OffsetDelta => "offset delta",
            Step::KeyLength => "key length",
            Step::Key => "key",
            Step::ValueLength => "value length",
            Step::Value => "value",
            Step::HeaderCount => "header count",
            Step::HeaderKeyLength => "header key length",
            Step::HeaderKey => "header key",
            Step::HeaderValueLength => "header value length",
            Step::HeaderValue => "header value",
        }
    }
}

/// Walks a records region given in pieces, checking every record's structure.
#[derive(Debug, Clone)]
pub struct RecordWalker {
    records_count: i32,
    records_seen: i32,
    step: Step,
    varint_value: u64,
    varint_bytes: u32,
    record_bytes: i32,
    body_remaining: u32,
    skip_remaining: u32,
    headers_remaining: i32,
}

impl RecordWalker {
    /// A walker expecting `records_count` records.
    pub fn new(records_count: i32) -> Self {
        Self {
            records_count,
            records_seen: 0,
            step: Step::Length,
            varint_value: 0,
            varint_bytes: 0,
            record_bytes: 0,
            body_remaining: 0,
            skip_remaining: 0,
            headers_remaining: 0,
        }
    }

    /// Walks the next piece of the region.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), RecordError> {
        while !piece.is_empty() {
            self.advance(&mut piece).map_err(|fault| RecordError {
                batch_index: self.records_seen,
                fault,
            })?;
        }
        Ok(())
    }

    /// Checks that the region ended after exactly `records_count` whole records.
    pub fn finish(&self) -> Result<(), RecordError> {
        let inside_record = self.step != Step::Length || self.varint_bytes != 0;
        let missing_bytes = self.body_remaining + self.skip_remaining;
        let fault = if inside_record && self.step != Step::Length && missing_bytes == 0 {
            // The record's declared bytes are all there; its fields claim more.
            RecordFault::PastRecordEnd {
                field: self.step.field(),
                record_bytes: self.record_bytes,
            }
        } else if inside_record {
            RecordFault::PastBatchEnd {
                record_bytes: self.record_bytes,
                missing_bytes,
            }
        } else if self.records_seen != self.records_count {
            RecordFault::MissingRecords {
                found: self.records_seen,
                expected: self.records_count,
            }
        } else {
            return Ok(());
        };
        Err(RecordError {
            batch_index: self.records_seen,
            fault,
        })
    }

    /// Takes one field (or part of one) from the front of `piece`.
    fn advance(&mut self, piece: &mut &[u8]) -> Result<(), RecordFault> {
        match self.step {
            Step::Length => {
                if self.records_seen == self.records_count {
                    return Err(RecordFault::TrailingBytes {
                        records_count: self.records_count,
                    });
                }
                if let Some(length) = self.varint(piece, "record length", false)? {
                    let body = u32::try_from(length).map_err(|_| RecordFault::InvalidLength {
                        field: "record",
                        length,
                    })?;
                    self.record_bytes = length;
                    self.body_remaining = body;
                    self.step = Step::Attributes;
                }
            }
            Step::Attributes => {
                self.consume_body(1, "attributes")?;
                *piece = &piece[1..];
                self.step = Step::TimestampDelta;
            }
            Step::TimestampDelta => {
                if self
                    .varint_raw(piece, "timestamp delta", VARLONG_BYTES_MAX, true)?
                    .is_some()
                {
                    self.step = Step::OffsetDelta;
                }
            }
            Step::OffsetDelta => {
                if let Some(delta) = self.varint(piece, "offset delta", true)? {
                    if delta != self.records_seen {
                        return Err(RecordFault::OffsetDelta {
                            found: delta,
                            expected: self.records_seen,
                        });
                    }
                    self.step = Step::KeyLength;
                }
            }
            Step::KeyLength => {
                if let Some(length) = self.varint(piece, "key length", true)? {
                    self.nullable(length, "key", Step::Key)?;
                }
            }
            Step::ValueLength => {
                if let Some(length) = self.varint(piece, "value length", true)? {
                    self.nullable(length, "value", Step::Value)?;
                }
            }
            Step::HeaderCount => {
                if let Some(count) = self.varint(piece, "header count", true)? {
                    if count < 0 {
                        return Err(RecordFault::InvalidLength {
                            field: "header count",
                            length: count,
                        });
                    }
                    self.headers_remaining = count;
                    self.next_header()?;
                }
            }
            Step::HeaderKeyLength => {
                if let Some(length) = self.varint(piece, "header key length", true)? {
                    if length < 0 {
                        return Err(RecordFault::InvalidLength {
                            field: "header key",
                            length,
                        });
                    }
                    self.nullable(length, "header key", Step::HeaderKey)?;
                }
            }
            Step::HeaderValueLength => {
                if let Some(length) = self.varint(piece, "header value length", true)? {
                    self.nullable(length, "header value", Step::HeaderValue)?;
                }
            }
            Step::Key | Step::Value | Step::HeaderKey | Step::HeaderValue => {
                let n = piece.len().min(self.skip_remaining as usize);
                *piece = &piece[n..];
                self.skip_remaining -= n as u32;
                if self.skip_remaining == 0 {
                    self.after_bytes()?;
                }
            }
        }
        Ok(())
    }

    /// Starts a nullable bytes field of `length` (-1: null) whose bytes are walked in `step`.
    fn nullable(
        &mut self,
        length: i32,
        field: &'static str,
        step: Step,
    ) -> Result<(), RecordFault> {
        if length < -1 {
            return Err(RecordFault::InvalidLength { field, length });
        }
        let bytes = length.max(0) as u32;
        self.consume_body(bytes, field)?;
        self.skip_remaining = bytes;
        self.step = step;
        if bytes == 0 {
            self.after_bytes()?;
        }
        Ok(())
    }

    /// Moves on from a bytes field that has been walked to its end.
    fn after_bytes(&mut self) -> Result<(), RecordFault> {
        match self.step {
            Step::Key => self.step = Step::ValueLength,
            Step::Value => self.step = Step::HeaderCount,
            Step::HeaderKey => self.step = Step::HeaderValueLength,
            Step::HeaderValue => {
                self.headers_remaining -= 1;
                self.next_header()?;
            }
            other => unreachable!("{other:?} is not a bytes field"),
        }
        Ok(())
    }

    /// Starts the next header, or ends the record after the last.
    fn next_header(&mut self) -> Result<(), RecordFault> {
        if self.headers_remaining > 0 {
            self.step = Step::HeaderKeyLength;
            return Ok(());
        }
        if self.body_remaining != 0 {
            return Err(RecordFault::LengthMismatch {
                record_bytes: self.record_bytes,
                unused_bytes: self.body_remaining,
            });
        }
        self.records_seen += 1;
        self.step = Step::Length;
        Ok(())
    }

    fn consume_body(&mut self, bytes: u32, field: &'static str) -> Result<(), RecordFault> {
        self.body_remaining =
            self.body_remaining
                .checked_sub(bytes)
                .ok_or(RecordFault::PastRecordEnd {
                    field,
                    record_bytes: self.record_bytes,
                })?;
        Ok(())
    }

    /// Reads a zig-zag varint (i32), possibly across pieces; `None` until its last byte.
    fn varint(
        &mut self,
        piece: &mut &[u8],
        field: &'static str,
        in_body: bool,
    ) -> Result<Option<i32>, RecordFault> {
        Ok(self
            .varint_raw(piece, field, VARINT_BYTES_MAX, in_body)?
            .map(|raw| {
                // Bits past 32 are dropped, as Kafka's ByteUtils.readVarint drops them.
                let raw = raw as u32;
                ((raw >> 1) as i32) ^ -((raw & 1) as i32)
            }))
    }

    fn varint_raw(
        &mut self,
        piece: &mut &[u8],
        field: &'static str,
        bytes_max: u32,
        in_body: bool,
    ) -> Result<Option<u64>, RecordFault> {
        while let Some((&byte, rest)) = piece.split_first() {
            if in_body {
                self.consume_body(1, field)?;
            }
            *piece = rest;
            self.varint_value |= u64::from(byte & 0x7f) << (7 * self.varint_bytes);
            self.varint_bytes += 1;
            if byte & 0x80 == 0 {
                let value = self.varint_value;
                self.varint_value = 0;
                self.varint_bytes = 0;
                return Ok(Some(value));
            }
            if self.varint_bytes == bytes_max {
                return Err(RecordFault::VarintTooLong { field, bytes_max });
            }
        }
        Ok(None)
    }
}

/// The records region of one batch, read plainly or through its codec.
enum Source<'a> {
    Plain {
        region: &'a [u8],
    },
    Compressed {
        codec: Compression,
        decoder: Box<dyn Read + 'a>,
        piece: Vec<u8>,
    },
}

/// The validation of one batch's records, a bounded step at a time.
pub struct RecordsValidation<'a> {
    source: Source<'a>,
    walker: RecordWalker,
    decompressed_bytes: usize,
    decompressed_bytes_max: usize,
    kept: Option<Vec<u8>>,
}

impl<'a> RecordsValidation<'a> {
    /// Starts validating the records of `batch` (whose header must have been validated), which
    /// may decompress to at most `decompressed_bytes_max` bytes. With `keep`, a compressed batch's
    /// decompressed records are kept for [`RecordsValidation::into_decompressed`].
    pub fn new(
        batch: &'a [u8],
        header: &RecordBatchHeader,
        decompressed_bytes_max: usize,
        keep: bool,
    ) -> Result<Self, ValidationError> {
        let codec = compression(header)?;
        let region = batch
            .get(RECORD_BATCH_HEADER_BYTES..)
            .ok_or(BatchError::Truncated {
                available: batch.len(),
                needed: RECORD_BATCH_HEADER_BYTES,
            })?;
        let source = match codec {
            Compression::None => Source::Plain { region },
            codec => Source::Compressed {
                codec,
                decoder: decoder(codec, region, decompressed_bytes_max)?,
                // One piece per batch: the decoders allocate their own windows per batch too,
                // and both are small next to decompressing the batch.
                piece: vec![0; STEP_BYTES],
            },
        };
        let kept = (keep && codec != Compression::None).then(Vec::new);
        Ok(Self {
            source,
            walker: RecordWalker::new(header.records_count.get()),
            decompressed_bytes: 0,
            decompressed_bytes_max,
            kept,
        })
    }

    /// Walks (and decompresses) up to [`STEP_BYTES`] more; `true` once every record checked out.
    pub fn step(&mut self) -> Result<bool, ValidationError> {
        match &mut self.source {
            Source::Plain { region } => {
                let (piece, rest) = region.split_at(region.len().min(STEP_BYTES));
                *region = rest;
                self.walker.feed(piece)?;
                if region.is_empty() {
                    self.walker.finish()?;
                    return Ok(true);
                }
                Ok(false)
            }
            Source::Compressed {
                codec,
                decoder,
                piece,
            } => {
                let read = decoder
                    .read(piece)
                    .map_err(|error| CompressionError::Corrupt {
                        codec: *codec,
                        reason: error.to_string(),
                    })?;
                if read == 0 {
                    self.walker.finish()?;
                    return Ok(true);
                }
                self.decompressed_bytes += read;
                if self.decompressed_bytes > self.decompressed_bytes_max {
                    return Err(CompressionError::TooLarge {
                        bytes_max: self.decompressed_bytes_max,
                    }
                    .into());
                }
                self.walker.feed(&piece[..read])?;
                if let Some(kept) = &mut self.kept {
                    kept.extend_from_slice(&piece[..read]);
                }
                Ok(false)
            }
        }
    }

    /// The decompressed records region, if this was a compressed batch validated with `keep`.
    pub fn into_decompressed(self) -> Option<Vec<u8>> {
        self.kept
    }
}

/// Validates every record of `batch` in one go (tests, benchmarks, tools; a shard steps instead).
pub fn validate_records(
    batch: &[u8],
    decompressed_bytes_max: usize,
) -> Result<(), ValidationError> {
    let header = super::record_batch::validate(batch)?;
    let mut validation = RecordsValidation::new(batch, header, decompressed_bytes_max, false)?;
    while !validation.step()? {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::compression::compress;
    use crate::protocol::record_batch::{CRC_START, crc32c};
    use crate::protocol::records::{BatchBuilder, Record};

    const BYTES_MAX: usize = 1 << 20;

    fn put_varint(out: &mut BytesMut, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            out.put_u8(zigzag as u8 | 0x80);
            zigzag >>= 7;
        }
        out.put_u8(zigzag as u8);
    }

    /// One record's body, with knobs for the fields a test breaks.
    struct RawRecord {
        offset_delta: i64,
        key_length: i64,
        value: Vec<u8>,
        header_count: i64,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        length_adjust: i64,
    }

    impl RawRecord {
        fn valid(offset_delta: i64) -> Self {
            Self {
                offset_delta,
                key_length: -1,
                value: vec![b'v'; 10 + offset_delta as usize],
                header_count: 1,
                headers: vec![(b"h".to_vec(), b"x".to_vec())],
                length_adjust: 0,
            }
        }

        fn encode(&self, out: &mut BytesMut) {
            let mut body = BytesMut::new();
            body.put_u8(0);
            put_varint(&mut body, 3);
            put_varint(&mut body, self.offset_delta);
            put_varint(&mut body, self.key_length);
            body.put_bytes(b'k', self.key_length.max(0) as usize);
            put_varint(&mut body, self.value.len() as i64);
            body.put_slice(&self.value);
            put_varint(&mut body, self.header_count);
            for (key, value) in &self.headers {
                put_varint(&mut body, key.len() as i64);
                body.put_slice(key);
                put_varint(&mut body, value.len() as i64);
                body.put_slice(value);
            }
            put_varint(out, body.len() as i64 + self.length_adjust);
            out.put_slice(&body);
        }
    }

    /// A batch around `region` claiming `records_count` records, codec bits set, CRC valid.
    fn seal(region: &[u8], records_count: i32, codec: Compression) -> Vec<u8> {
        let mut batch = BatchBuilder::new(1_700_000_000_000).finish().to_vec();
        batch.truncate(RECORD_BATCH_HEADER_BYTES);
        batch.extend_from_slice(region);
        let batch_length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        batch[21..23].copy_from_slice(&codec.attribute().to_be_bytes());
        batch[23..27].copy_from_slice(&(records_count - 1).to_be_bytes());
        batch[57..61].copy_from_slice(&records_count.to_be_bytes());
        let crc = crc32c(&batch[CRC_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    fn region(records: &[RawRecord]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for record in records {
            record.encode(&mut out);
        }
        out.to_vec()
    }

    fn valid_region(count: i64) -> Vec<u8> {
        region(&(0..count).map(RawRecord::valid).collect::<Vec<_>>())
    }

    /// The walk's verdict with the region fed in pieces of `piece_bytes`.
    fn walk(region: &[u8], records_count: i32, piece_bytes: usize) -> Result<(), RecordError> {
        let mut walker = RecordWalker::new(records_count);
        for piece in region.chunks(piece_bytes.max(1)) {
            walker.feed(piece)?;
        }
        walker.finish()
    }

    fn fault(region: &[u8], records_count: i32) -> RecordError {
        let whole = walk(region, records_count, region.len()).unwrap_err();
        assert_eq!(
            walk(region, records_count, 1),
            Err(whole.clone()),
            "bytewise"
        );
        let batch = seal(region, records_count, Compression::None);
        assert_eq!(
            validate_records(&batch, BYTES_MAX),
            Err(ValidationError::Record(whole.clone()))
        );
        whole
    }

    fn builder_batch(records: usize) -> Vec<u8> {
        let headers: &[(&[u8], Option<&[u8]>)] = &[(b"trace", Some(b"abc")), (b"null", None)];
        let mut builder = BatchBuilder::new(1_700_000_000_000);
        for i in 0..records {
            let value = vec![i as u8; i % 300];
            builder.push(&Record {
                timestamp_delta: i as i64 * 1000,
                key: (i % 3 != 0).then_some(&b"key"[..]),
                value: (i % 7 != 0).then_some(&value[..]),
                headers: if i % 2 == 0 { headers } else { &[] },
            });
        }
        builder.finish().to_vec()
    }

    #[test]
    fn builder_batches_pass_plain_and_through_every_codec() {
        // Proves valid batches from the project's encoder pass, uncompressed and with each codec,
        // including records that straddle step pieces.
        let plain = builder_batch(2_000);
        assert!(plain.len() > 3 * STEP_BYTES);
        validate_records(&plain, BYTES_MAX).unwrap();
        let region = &plain[RECORD_BATCH_HEADER_BYTES..];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = seal(&compress(codec, region).unwrap(), 2_000, codec);
            validate_records(&packed, BYTES_MAX).unwrap();
            let header = crate::protocol::record_batch::validate(&packed).unwrap();
            let mut validation = RecordsValidation::new(&packed, header, BYTES_MAX, true).unwrap();
            while !validation.step().unwrap() {}
            assert_eq!(validation.into_decompressed().unwrap(), region, "{codec:?}");
        }
    }

    #[test]
    fn each_malformation_is_refused_with_its_record() {
        // Proves every kind of broken record is refused, naming the record, the same way whether
        // the region arrives whole or a byte at a time.
        let mut bad_varint = valid_region(2);
        bad_varint.extend_from_slice(&[0xff; 6]);
        assert!(matches!(
            fault(&bad_varint, 3),
            RecordError {
                batch_index: 2,
                fault: RecordFault::VarintTooLong { .. }
            }
        ));

        let swapped = region(&[
            RawRecord::valid(0),
            RawRecord::valid(2),
            RawRecord::valid(1),
        ]);
        assert_eq!(
            fault(&swapped, 3),
            RecordError {
                batch_index: 1,
                fault: RecordFault::OffsetDelta {
                    found: 2,
                    expected: 1
                }
            }
        );

        let mut overrun = RawRecord::valid(1);
        overrun.length_adjust = 1000;
        let overrun = region(&[RawRecord::valid(0), overrun]);
        assert!(matches!(
            fault(&overrun, 2),
            RecordError {
                batch_index: 1,
                fault: RecordFault::LengthMismatch {
                    unused_bytes: 1000,
                    ..
                }
            }
        ));
        let whole = valid_region(2);
        assert!(matches!(
            fault(&whole[..whole.len() - 5], 2),
            RecordError {
                batch_index: 1,
                fault: RecordFault::PastBatchEnd {
                    missing_bytes: 5,
                    ..
                }
            }
        ));

        let mut short = RawRecord::valid(0);
        short.length_adjust = 3;
        let mut short_region = region(&[short]);
        short_region.extend_from_slice(&[0; 3]);
        assert!(matches!(
            fault(&short_region, 1),
            RecordError {
                batch_index: 0,
                fault: RecordFault::LengthMismatch {
                    unused_bytes: 3,
                    ..
                }
            }
        ));

        let mut many_headers = RawRecord::valid(0);
        many_headers.header_count = 5;
        assert!(matches!(
            fault(&region(&[many_headers]), 1),
            RecordError {
                batch_index: 0,
                fault: RecordFault::PastRecordEnd { .. }
            }
        ));
        let mut negative_headers = RawRecord::valid(0);
        negative_headers.header_count = -1;
        negative_headers.headers.clear();
        assert!(matches!(
            fault(&region(&[negative_headers]), 1),
            RecordError {
                fault: RecordFault::InvalidLength {
                    field: "header count",
                    length: -1
                },
                ..
            }
        ));
        let mut bad_key = RawRecord::valid(0);
        bad_key.key_length = -2;
        assert!(matches!(
            fault(&region(&[bad_key]), 1),
            RecordError {
                fault: RecordFault::InvalidLength {
                    field: "key",
                    length: -2
                },
                ..
            }
        ));

        assert_eq!(
            fault(&valid_region(2), 3).fault,
            RecordFault::MissingRecords {
                found: 2,
                expected: 3
            }
        );
        assert_eq!(
            fault(&valid_region(3), 2),
            RecordError {
                batch_index: 2,
                fault: RecordFault::TrailingBytes { records_count: 2 }
            }
        );
    }

    #[test]
    fn compressed_garbage_is_refused() {
        // Proves a compressed batch is walked after decompression: a stream that does not
        // decompress, one that decompresses to garbage records, and a decompression bomb are
        // each refused.
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let not_compressed = seal(&valid_region(3), 3, codec);
            assert!(
                matches!(
                    validate_records(&not_compressed, BYTES_MAX),
                    Err(ValidationError::Compression(
                        CompressionError::Corrupt { .. }
                    ))
                ),
                "{codec:?}"
            );
            let garbage = seal(&compress(codec, &[0x55; 5000]).unwrap(), 3, codec);
            assert!(
                matches!(
                    validate_records(&garbage, BYTES_MAX),
                    Err(ValidationError::Record(_))
                ),
                "{codec:?}"
            );
            let swapped = region(&[RawRecord::valid(1), RawRecord::valid(0)]);
            let swapped = seal(&compress(codec, &swapped).unwrap(), 2, codec);
            assert!(matches!(
                validate_records(&swapped, BYTES_MAX),
                Err(ValidationError::Record(RecordError {
                    fault: RecordFault::OffsetDelta { .. },
                    ..
                }))
            ));
            let big = valid_region(2_000);
            let big = seal(&compress(codec, &big).unwrap(), 2_000, codec);
            assert!(matches!(
                validate_records(&big, 10_000),
                Err(ValidationError::Compression(_))
            ));
        }
    }

    proptest! {
        #[test]
        fn any_mutation_gives_the_same_verdict_in_any_pieces(
            count in 1usize..40,
            position in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            piece_bytes in 1usize..300,
        ) {
            // Proves the push parser's verdict does not depend on how the region is cut, for
            // valid regions and for any single-byte change, and that nothing panics.
            let batch = builder_batch(count);
            let region = &batch[RECORD_BATCH_HEADER_BYTES..];
            prop_assert_eq!(walk(region, count as i32, piece_bytes), Ok(()));
            let mut mutated = region.to_vec();
            let at = position.index(mutated.len());
            mutated[at] = byte;
            let whole = walk(&mutated, count as i32, mutated.len());
            prop_assert_eq!(walk(&mutated, count as i32, piece_bytes), whole);
        }
    }
}
