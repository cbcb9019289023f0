//! The records inside an uncompressed RecordBatch v2: reading them and building batches.
//!
//! The broker never looks inside a batch on the produce or fetch path; this is for the places that
//! must (tests, the CLI consumer, the load generator's producer, compaction later). A compressed
//! batch's records region must be decompressed by the caller first. Reading is bounded: every
//! length is checked against the bytes that remain, and a malformed record is an error.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::CodecError;
use super::record_batch::{
    ATTRIBUTE_COMPRESSION_MASK, ATTRIBUTE_CONTROL, CRC_START, MAGIC_V2, RECORD_BATCH_HEADER_BYTES,
    crc32c,
};
use super::wire::{Reader, Writer};

/// One record to append to a batch, borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Milliseconds after the batch's base timestamp.
    pub timestamp_delta: i64,
    /// The key, or null.
    pub key: Option<&'a [u8]>,
    /// The value, or null (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Header keys and (nullable) values.
    pub headers: &'a [(&'a [u8], Option<&'a [u8]>)],
}

/// One record read from a batch; its byte fields are slices of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    /// Record attributes (unused by Kafka today).
    pub attributes: i8,
    /// Milliseconds after the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Position after the batch's base offset.
    pub offset_delta: i32,
    /// The key, or null.
    pub key: Option<Bytes>,
    /// The value, or null.
    pub value: Option<Bytes>,
    /// Header keys and (nullable) values.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// Reads the records of an uncompressed records region (the bytes after the 61-byte header).
#[derive(Debug, Clone)]
pub struct RecordIter {
    reader: Reader,
    remaining_count: usize,
}

impl RecordIter {
    /// Iterates over `records_count` records in `region`.
    pub fn new(region: Bytes, records_count: i32) -> Self {
        Self {
            reader: Reader::new(region),
            remaining_count: usize::try_from(records_count).unwrap_or(0),
        }
    }

    fn read_nullable(reader: &mut Reader) -> Result<Option<Bytes>, CodecError> {
        let length = reader.varint()?;
        if length == -1 {
            return Ok(None);
        }
        let length = reader.check_length(i64::from(length), 1)?;
        reader.take(length).map(Some)
    }

    fn read_record(&mut self) -> Result<RecordView, CodecError> {
        let length = self.reader.varint()?;
        let length = self.reader.check_length(i64::from(length), 1)?;
        let mut reader = Reader::new(self.reader.take(length)?);
        let attributes = reader.i8()?;
        let timestamp_delta = reader.varlong()?;
        let offset_delta = reader.varint()?;
        let key = Self::read_nullable(&mut reader)?;
        let value = Self::read_nullable(&mut reader)?;
        let header_count = reader.varint()?;
        // A header is at least two bytes: two varint lengths.
        let header_count = reader.check_length(i64::from(header_count), 2)?;
        let mut headers = Vec::with_capacity(header_count.min(16));
        for _ in 0..header_count {
            let key = Self::read_nullable(&mut reader)?.ok_or(CodecError::UnexpectedNull)?;
            let value = Self::read_nullable(&mut reader)?;
            headers.push((key, value));
        }
        Ok(RecordView {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        })
    }
}

impl Iterator for RecordIter {
    type Item = Result<RecordView, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining_count == 0 {
            return None;
        }
        self.remaining_count -= 1;
        let result = self.read_record();
        if result.is_err() {
            self.remaining_count = 0;
        }
        Some(result)
    }
}

/// Builds one uncompressed RecordBatch v2, CRC included.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    base_timestamp_ms: i64,
    timestamp_delta_max: i64,
    records_count: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl BatchBuilder {
    /// A builder whose records' timestamps are relative to `base_timestamp_ms`.
    pub fn new(base_timestamp_ms: i64) -> Self {
        Self::with_capacity(base_timestamp_ms, RECORD_BATCH_HEADER_BYTES + 256)
    }

    /// A builder with room for `capacity_bytes` of batch reserved up front, so a batch of
    /// about that size is built without the buffer growing (and being copied) on the way.
    pub fn with_capacity(base_timestamp_ms: i64, capacity_bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(capacity_bytes.max(RECORD_BATCH_HEADER_BYTES));
        buf.put_bytes(0, RECORD_BATCH_HEADER_BYTES);
        Self {
            buf,
            base_timestamp_ms,
            timestamp_delta_max: 0,
            records_count: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }

    /// Marks the batch as from an idempotent producer.
    pub fn idempotent(&mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
    }

    /// Records appended so far.
    pub fn records_count(&self) -> i32 {
        self.records_count
    }

    /// Bytes the batch would take if finished now.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Appends a record, writing it straight into the batch: its length is computed first, so
    /// the value is copied once (this is the load generator's hot loop).
    pub fn push(&mut self, record: &Record<'_>) {
        let headers_len: usize = record
            .headers
            .iter()
            .map(|(key, value)| nullable_len(Some(key)) + nullable_len(*value))
            .sum();
        let body_len = 1
            + varlong_len(record.timestamp_delta)
            + varlong_len(i64::from(self.records_count))
            + nullable_len(record.key)
            + nullable_len(record.value)
            + varlong_len(record.headers.len() as i64)
            + headers_len;
        let buf = &mut self.buf;
        buf.reserve(varlong_len(body_len as i64) + body_len);
        put_varlong(buf, body_len as i64);
        buf.put_u8(0);
        put_varlong(buf, record.timestamp_delta);
        put_varlong(buf, i64::from(self.records_count));
        put_nullable(buf, record.key);
        put_nullable(buf, record.value);
        put_varlong(buf, record.headers.len() as i64);
        for (key, value) in record.headers {
            put_nullable(buf, Some(key));
            put_nullable(buf, *value);
        }
        self.timestamp_delta_max = self.timestamp_delta_max.max(record.timestamp_delta);
        self.records_count += 1;
    }

    /// Finishes the batch: header filled in, CRC computed, base offset 0.
    pub fn finish(mut self) -> Bytes {
        self.seal(0);
        self.buf.freeze()
    }

    /// Finishes the batch around an already encoded (for example compressed) records region,
    /// with the codec in the low attribute bits.
    pub fn finish_with_records(mut self, compression_codec: i16, records: &[u8]) -> Bytes {
        self.buf.truncate(RECORD_BATCH_HEADER_BYTES);
        self.buf.put_slice(records);
        self.seal(compression_codec & ATTRIBUTE_COMPRESSION_MASK);
        self.buf.freeze()
    }

    /// Finishes the batch as a control batch (the attribute Kafka's transaction markers carry).
    pub fn finish_control(mut self) -> Bytes {
        self.seal(ATTRIBUTE_CONTROL);
        self.buf.freeze()
    }

    /// Writes the header over the reserved first bytes, then the CRC of what follows it.
    fn seal(&mut self, attributes: i16) {
        let batch_length = (self.buf.len() - 12) as i32;
        let mut header = Writer::with_capacity(RECORD_BATCH_HEADER_BYTES);
        header.i64(0);
        header.i32(batch_length);
        header.i32(-1);
        header.i8(MAGIC_V2);
        header.u32(0);
        header.i16(attributes);
        header.i32(self.records_count - 1);
        header.i64(self.base_timestamp_ms);
        header.i64(self.base_timestamp_ms + self.timestamp_delta_max);
        header.i64(self.producer_id);
        header.i16(self.producer_epoch);
        header.i32(self.base_sequence);
        header.i32(self.records_count);
        self.buf[..RECORD_BATCH_HEADER_BYTES].copy_from_slice(&header.into_bytes());
        let crc = crc32c(&self.buf[CRC_START..]);
        self.buf[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Bytes of a zig-zag varlong (a varint's encoding is the same for the same value).
fn varlong_len(value: i64) -> usize {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    (64 - (zigzag | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varlong(buf: &mut BytesMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        buf.put_u8((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    buf.put_u8(zigzag as u8);
}

fn nullable_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varlong_len(-1),
        Some(bytes) => varlong_len(bytes.len() as i64) + bytes.len(),
    }
}

fn put_nullable(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(buf, -1),
        Some(bytes) => {
            put_varlong(buf, bytes.len() as i64);
            buf.put_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record_batch::{header, validate};

    #[test]
    fn direct_varlongs_match_the_codec_writer() {
        // Proves the builder's inline varlong encoding and its length formula agree with the
        // codec's Writer at every width edge, negative values included.
        let mut values = vec![
            0i64,
            1,
            -1,
            i64::MAX,
            i64::MIN,
            i64::from(i32::MAX),
            -64,
            63,
            64,
        ];
        for shift in 0..63 {
            values.extend([1i64 << shift, (1i64 << shift) - 1, -(1i64 << shift)]);
        }
        for value in values {
            let mut direct = BytesMut::new();
            put_varlong(&mut direct, value);
            let mut writer = Writer::new();
            writer.varlong(value);
            assert_eq!(&direct[..], &writer.into_bytes()[..], "{value}");
            assert_eq!(direct.len(), varlong_len(value), "{value}");
        }
    }

    #[test]
    fn built_records_read_back_identically() {
        // Proves the builder and the iterator agree on every field, nulls included.
        let headers: &[(&[u8], Option<&[u8]>)] = &[(b"trace", Some(b"abc")), (b"empty", None)];
        let mut builder = BatchBuilder::new(1000);
        for i in 0..50u8 {
            let value = vec![i; usize::from(i) * 3];
            builder.push(&Record {
                timestamp_delta: i64::from(i),
                key: (!i.is_multiple_of(3)).then_some(&[i][..]),
                value: (!i.is_multiple_of(7)).then_some(&value[..]),
                headers: if i % 2 == 0 { headers } else { &[] },
            });
        }
        let batch = builder.finish();
        let header = validate(&batch).unwrap();
        assert_eq!(header.records_count.get(), 50);
        assert_eq!(header.max_timestamp.get(), 1049);
        let records: Vec<_> = RecordIter::new(batch.slice(RECORD_BATCH_HEADER_BYTES..), 50)
            .collect::<Result<_, _>>()
            .unwrap();
        for (i, record) in records.iter().enumerate() {
            let i = i as u8;
            assert_eq!(record.offset_delta, i32::from(i));
            assert_eq!(
                record.key.as_deref(),
                (!i.is_multiple_of(3)).then_some(&[i][..])
            );
            assert_eq!(
                record.value.as_ref().map(Bytes::len),
                (!i.is_multiple_of(7)).then_some(usize::from(i) * 3)
            );
            assert_eq!(
                record.headers.len(),
                if i.is_multiple_of(2) { 2 } else { 0 }
            );
        }
    }

    #[test]
    fn truncated_records_are_errors() {
        // Proves a records region cut anywhere yields an error, never a panic or a bogus record.
        let mut builder = BatchBuilder::new(0);
        builder.push(&Record {
            timestamp_delta: 0,
            key: Some(b"key"),
            value: Some(b"value"),
            headers: &[(b"h", Some(b"v"))],
        });
        let batch = builder.finish();
        let region = batch.slice(RECORD_BATCH_HEADER_BYTES..);
        for len in 0..region.len() {
            let mut iter = RecordIter::new(region.slice(..len), 1);
            assert!(iter.next().unwrap().is_err(), "length {len}");
        }
        assert_eq!(header(&batch).unwrap().records_count.get(), 1);
    }
}
