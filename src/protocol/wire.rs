//! Wire primitives: a bounded reader over a `Bytes` frame and a writer that splices large byte
//! fields instead of copying them.
//!
//! The reader never allocates from a length it has not checked against the bytes that remain, and
//! byte fields it returns are `Bytes` slices of the frame (zero-copy). The writer keeps the fixed
//! parts of a message in one buffer and remembers where each large `Bytes` field goes, so a Fetch
//! response with megabytes of records is encoded as a few header bytes plus the record slices.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::CodecError;

/// Byte fields shorter than this are copied into the writer's buffer rather than spliced: a
/// separate socket write per tiny slice costs more than the copy.
pub const SPLICE_BYTES_MIN: usize = 1024;

/// A cursor over an untrusted frame. Every read checks the bytes that remain first.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    /// Wraps a frame (or the body of one).
    pub fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The unconsumed bytes, without consuming them.
    pub fn rest(&self) -> &Bytes {
        &self.buf
    }

    fn ensure(&self, needed: usize) -> Result<(), CodecError> {
        if self.buf.len() < needed {
            return Err(CodecError::Truncated {
                needed,
                remaining: self.buf.len(),
            });
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        self.ensure(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[..N]);
        bytes::Buf::advance(&mut self.buf, N);
        Ok(out)
    }

    /// Reads a big-endian i8.
    pub fn i8(&mut self) -> Result<i8, CodecError> {
        Ok(i8::from_be_bytes(self.array()?))
    }
    /// Reads a big-endian i16.
    pub fn i16(&mut self) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    /// Reads a big-endian i32.
    pub fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    /// Reads a big-endian i64.
    pub fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    /// Reads a big-endian u16.
    pub fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    /// Reads a big-endian u32.
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// Reads a big-endian IEEE 754 double.
    pub fn f64(&mut self) -> Result<f64, CodecError> {
        Ok(f64::from_be_bytes(self.array()?))
    }
    /// Reads 16 raw bytes (a UUID).
    pub fn uuid(&mut self) -> Result<[u8; 16], CodecError> {
        self.array()
    }

    /// Reads an unsigned LEB128 varint of at most 5 bytes (Kafka's UNSIGNED_VARINT).
    pub fn uvarint(&mut self) -> Result<u32, CodecError> {
        let value = self.uvarlong_max(5)?;
        u32::try_from(value).map_err(|_| CodecError::VarintTooLong { max_bytes: 5 })
    }

    /// Reads a zig-zag varint of at most 5 bytes (Kafka's VARINT).
    pub fn varint(&mut self) -> Result<i32, CodecError> {
        let raw = self.uvarint()?;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// Reads a zig-zag varlong of at most 10 bytes (Kafka's VARLONG).
    pub fn varlong(&mut self) -> Result<i64, CodecError> {
        let raw = self.uvarlong_max(10)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    fn uvarlong_max(&mut self, max_bytes: usize) -> Result<u64, CodecError> {
        let mut value: u64 = 0;
        for i in 0..max_bytes {
            let byte = self.array::<1>()?[0];
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::VarintTooLong { max_bytes })
    }

    /// Takes the next `len` bytes as a zero-copy slice of the frame.
    pub fn take(&mut self, len: usize) -> Result<Bytes, CodecError> {
        self.ensure(len)?;
        Ok(self.buf.split_to(len))
    }

    /// Skips `len` bytes.
    pub fn skip(&mut self, len: usize) -> Result<(), CodecError> {
        self.ensure(len)?;
        bytes::Buf::advance(&mut self.buf, len);
        Ok(())
    }

    /// Checks a wire length against the bytes that remain, each element needing at least
    /// `element_bytes_min` bytes, so nothing is ever allocated for data that is not there.
    pub fn check_length(&self, length: i64, element_bytes_min: usize) -> Result<usize, CodecError> {
        let remaining = self.buf.len();
        let fits = usize::try_from(length)
            .ok()
            .and_then(|n| n.checked_mul(element_bytes_min))
            .is_some_and(|needed| needed <= remaining);
        if !fits {
            return Err(CodecError::InvalidLength { length, remaining });
        }
        // A negative length failed the conversion above, so this cannot truncate.
        Ok(length as usize)
    }
}

/// Where a spliced `Bytes` field goes in the writer's output.
#[derive(Debug, Clone)]
struct Splice {
    buf_position: usize,
    bytes: Bytes,
}

/// An encoder output: one growable buffer for the fixed parts plus the large byte fields that are
/// spliced in, not copied.
#[derive(Debug, Default)]
pub struct Writer {
    buf: BytesMut,
    splices: Vec<Splice>,
    spliced_bytes: usize,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer whose buffer starts with `capacity` bytes reserved.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(capacity),
            ..Self::default()
        }
    }

    /// Total bytes written so far, spliced fields included.
    pub fn len(&self) -> usize {
        self.buf.len() + self.spliced_bytes
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends bytes by copying them.
    pub fn put_slice(&mut self, bytes: &[u8]) {
        self.buf.put_slice(bytes);
    }

    /// Appends a `Bytes` field: spliced when large, copied when small.
    pub fn put_bytes(&mut self, bytes: &Bytes) {
        if bytes.len() < SPLICE_BYTES_MIN {
            self.buf.put_slice(bytes);
            return;
        }
        self.spliced_bytes += bytes.len();
        self.splices.push(Splice {
            buf_position: self.buf.len(),
            bytes: bytes.clone(),
        });
    }

    /// Appends another writer's output.
    pub fn append(&mut self, other: Writer) {
        let base = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        self.spliced_bytes += other.spliced_bytes;
        self.splices
            .extend(other.splices.into_iter().map(|splice| Splice {
                buf_position: base + splice.buf_position,
                bytes: splice.bytes,
            }));
    }

    /// Appends an i8.
    pub fn i8(&mut self, value: i8) {
        self.buf.put_i8(value);
    }
    /// Appends a big-endian i16.
    pub fn i16(&mut self, value: i16) {
        self.buf.put_i16(value);
    }
    /// Appends a big-endian i32.
    pub fn i32(&mut self, value: i32) {
        self.buf.put_i32(value);
    }
    /// Appends a big-endian i64.
    pub fn i64(&mut self, value: i64) {
        self.buf.put_i64(value);
    }
    /// Appends a big-endian u16.
    pub fn u16(&mut self, value: u16) {
        self.buf.put_u16(value);
    }
    /// Appends a big-endian u32.
    pub fn u32(&mut self, value: u32) {
        self.buf.put_u32(value);
    }
    /// Appends a big-endian IEEE 754 double.
    pub fn f64(&mut self, value: f64) {
        self.buf.put_f64(value);
    }

    /// Appends an unsigned LEB128 varint.
    pub fn uvarint(&mut self, value: u32) {
        self.uvarlong(u64::from(value));
    }

    /// Appends a zig-zag varint.
    pub fn varint(&mut self, value: i32) {
        self.uvarint(((value << 1) ^ (value >> 31)) as u32);
    }

    /// Appends a zig-zag varlong.
    pub fn varlong(&mut self, value: i64) {
        self.uvarlong(((value << 1) ^ (value >> 63)) as u64);
    }

    fn uvarlong(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.put_u8((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.put_u8(value as u8);
    }

    /// Finishes into the chunks to send, in order: buffer pieces interleaved with spliced fields.
    pub fn into_chunks(self) -> Vec<Bytes> {
        let buf = self.buf.freeze();
        let mut chunks = Vec::with_capacity(self.splices.len() * 2 + 1);
        let mut start = 0;
        for splice in self.splices {
            if splice.buf_position > start {
                chunks.push(buf.slice(start..splice.buf_position));
            }
            chunks.push(splice.bytes);
            start = splice.buf_position;
        }
        if start < buf.len() || chunks.is_empty() {
            chunks.push(buf.slice(start..));
        }
        chunks
    }

    /// Finishes into one contiguous buffer, copying spliced fields (tests and small messages).
    pub fn into_bytes(self) -> Bytes {
        if self.splices.is_empty() {
            return self.buf.freeze();
        }
        let mut out = BytesMut::with_capacity(self.len());
        for chunk in self.into_chunks() {
            out.put_slice(&chunk);
        }
        out.freeze()
    }

    /// Finishes into a frame: a 4-byte big-endian size, then the chunks. The size is written into
    /// the space reserved by [`Writer::for_frame`].
    pub fn into_frame(mut self) -> Result<Vec<Bytes>, CodecError> {
        let body_len = self.len() - 4;
        let size =
            i32::try_from(body_len).map_err(|_| CodecError::ValueTooLong { length: body_len })?;
        self.buf[..4].copy_from_slice(&size.to_be_bytes());
        Ok(self.into_chunks())
    }

    /// A writer whose first 4 bytes are reserved for the frame size, filled in by `into_frame`.
    pub fn for_frame(capacity: usize) -> Self {
        let mut writer = Self::with_capacity(capacity.max(4));
        writer.i32(0);
        writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_their_edges() {
        // Proves every varint width decodes to what was encoded, including the extremes.
        for value in [0i32, 1, -1, 63, -64, 64, i32::MAX, i32::MIN] {
            let mut writer = Writer::new();
            writer.varint(value);
            let mut reader = Reader::new(writer.into_bytes());
            assert_eq!(reader.varint().unwrap(), value);
            assert_eq!(reader.remaining(), 0);
        }
        for value in [0i64, -1, i64::MAX, i64::MIN] {
            let mut writer = Writer::new();
            writer.varlong(value);
            let mut reader = Reader::new(writer.into_bytes());
            assert_eq!(reader.varlong().unwrap(), value);
        }
        for value in [0u32, 127, 128, u32::MAX] {
            let mut writer = Writer::new();
            writer.uvarint(value);
            let mut reader = Reader::new(writer.into_bytes());
            assert_eq!(reader.uvarint().unwrap(), value);
        }
    }

    #[test]
    fn overlong_varint_is_an_error() {
        // Proves a varint that never terminates is rejected, not looped over or overflowed.
        let mut reader = Reader::new(Bytes::from_static(&[0xff; 12]));
        assert_eq!(
            reader.uvarint(),
            Err(CodecError::VarintTooLong { max_bytes: 5 })
        );
        let mut reader = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x7f]));
        assert!(reader.uvarint().is_err(), "5-byte value above u32::MAX");
    }

    #[test]
    fn lengths_beyond_the_frame_are_rejected() {
        // Proves an array count is bounded by the bytes that remain.
        let reader = Reader::new(Bytes::from_static(&[0; 8]));
        assert_eq!(reader.check_length(8, 1), Ok(8));
        assert!(reader.check_length(9, 1).is_err());
        assert!(reader.check_length(5, 2).is_err());
        assert!(reader.check_length(-1, 1).is_err());
        assert!(reader.check_length(i64::from(i32::MAX), 1).is_err());
    }

    #[test]
    fn large_fields_are_spliced_not_copied() {
        // Proves a large Bytes field reaches the output as the same allocation.
        let records = Bytes::from(vec![7u8; SPLICE_BYTES_MIN * 4]);
        let mut writer = Writer::for_frame(64);
        writer.i32(42);
        writer.put_bytes(&records);
        writer.i16(1);
        let chunks = writer.into_frame().unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), records.as_ptr());
        let total: usize = chunks.iter().map(Bytes::len).sum();
        assert_eq!(&chunks[0][..4], &((total - 4) as i32).to_be_bytes());
    }
}
