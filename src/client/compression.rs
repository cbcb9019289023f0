//! The client's side of batch compression: which codecs its producer writes, and compressing or
//! decompressing whole batches with the shared codecs of `protocol::compression`.
//!
//! Guarantees: `compress_batch` returns a batch that passes `record_batch::validate` with the same
//! header fields except `attributes`, `batch_length` and `crc`; decompression never produces more
//! than `DECOMPRESSED_BYTES_MAX` bytes, so a hostile batch cannot exhaust memory. gzip and
//! Snappy batches (from other producers) are read but never written.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::compression as codecs;

use crate::protocol::record_batch::{
    ATTRIBUTE_COMPRESSION_MASK, CRC_START, Compression, RECORD_BATCH_HEADER_BYTES, crc32c,
};

use super::error::ClientError;

/// Largest records region a fetched batch may decompress to. Kafka's producer batches are at
/// most `max.request.size` (1 MiB by default) and compress at most ~100x in practice; 256 MiB is
/// far above any honest batch and still fits in memory.
pub const DECOMPRESSED_BYTES_MAX: usize = 256 << 20;

/// A codec this client's producer writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionCodec {
    /// Records stored as they are.
    None,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl CompressionCodec {
    /// The attribute bits Kafka uses for the codec.
    pub fn attribute(self) -> i16 {
        match self {
            CompressionCodec::None => 0,
            CompressionCodec::Lz4 => 3,
            CompressionCodec::Zstd => 4,
        }
    }

    /// Kafka's name for the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            CompressionCodec::None => "none",
            CompressionCodec::Lz4 => "lz4",
            CompressionCodec::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for CompressionCodec {
    type Err = ClientError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "none" => Ok(CompressionCodec::None),
            "lz4" => Ok(CompressionCodec::Lz4),
            "zstd" => Ok(CompressionCodec::Zstd),
            other => Err(ClientError::InvalidArgument(format!(
                "compression {other:?}: want none, lz4 or zstd"
            ))),
        }
    }
}

/// Compresses `records` (an uncompressed records region) with `codec`.
pub fn compress(codec: CompressionCodec, records: &[u8]) -> Result<Vec<u8>, ClientError> {
    let compression = match codec {
        CompressionCodec::None => Compression::None,
        CompressionCodec::Lz4 => Compression::Lz4,
        CompressionCodec::Zstd => Compression::Zstd,
    };
    codecs::compress(compression, records)
        .map_err(|error| ClientError::Compression(error.to_string()))
}

/// Turns a finished uncompressed batch into one whose records region is compressed with
/// `codec`: the header is kept, the codec bits and length set, and the CRC recomputed.
pub fn compress_batch(batch: Bytes, codec: CompressionCodec) -> Result<Bytes, ClientError> {
    if codec == CompressionCodec::None {
        return Ok(batch);
    }
    let region = batch
        .get(RECORD_BATCH_HEADER_BYTES..)
        .ok_or(ClientError::InvalidArgument(
            "batch shorter than a header".into(),
        ))?;
    let compressed = compress(codec, region)?;
    let mut out = BytesMut::with_capacity(RECORD_BATCH_HEADER_BYTES + compressed.len());
    out.put_slice(&batch[..RECORD_BATCH_HEADER_BYTES]);
    out.put_slice(&compressed);
    let batch_length = i32::try_from(out.len() - 12)
        .map_err(|_| ClientError::InvalidArgument("batch longer than i32::MAX".into()))?;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = i16::from_be_bytes([out[21], out[22]]);
    let attributes = (attributes & !ATTRIBUTE_COMPRESSION_MASK) | codec.attribute();
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// Decompresses a records region compressed with `compression`, bounded by
/// `DECOMPRESSED_BYTES_MAX`.
pub fn decompress(compression: Compression, region: &[u8]) -> Result<Vec<u8>, ClientError> {
    codecs::decompress(compression, region, DECOMPRESSED_BYTES_MAX)
        .map_err(|error| ClientError::Compression(error.to_string()))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::protocol::record_batch::{compression, validate};
    use crate::protocol::records::{BatchBuilder, Record, RecordIter};

    fn batch(records: usize) -> Bytes {
        let mut builder = BatchBuilder::new(1_700_000_000_000);
        builder.idempotent(7, 1, 42);
        for i in 0..records {
            let value = format!("value {i} {}", "x".repeat(i % 100));
            builder.push(&Record {
                timestamp_delta: i as i64,
                key: Some(format!("key {i}").as_bytes()),
                value: Some(value.as_bytes()),
                headers: &[(b"h", Some(b"v"))],
            });
        }
        builder.finish()
    }

    #[test]
    fn compressed_batches_validate_and_read_back() {
        // Proves each codec yields a valid batch (CRC, length, codec bits) whose records region
        // decompresses to exactly the uncompressed region, header fields kept.
        let plain = batch(500);
        for codec in [
            CompressionCodec::None,
            CompressionCodec::Lz4,
            CompressionCodec::Zstd,
        ] {
            let packed = compress_batch(plain.clone(), codec).unwrap();
            let header = validate(&packed).unwrap();
            assert_eq!(header.records_count.get(), 500);
            assert_eq!(header.producer_id.get(), 7);
            assert_eq!(header.base_sequence.get(), 42);
            let kind = compression(header).unwrap();
            let region = decompress(kind, &packed[RECORD_BATCH_HEADER_BYTES..]).unwrap();
            assert_eq!(&region[..], &plain[RECORD_BATCH_HEADER_BYTES..]);
            if codec != CompressionCodec::None {
                assert!(packed.len() < plain.len() / 2, "{codec:?} compresses");
            }
            let count = RecordIter::new(Bytes::from(region), 500).count();
            assert_eq!(count, 500);
        }
    }

    #[test]
    fn gzip_batches_from_other_producers_decompress() {
        // Proves a gzip records region (what Java and librdkafka write) reads back exactly.
        let plain = batch(50);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder
            .write_all(&plain[RECORD_BATCH_HEADER_BYTES..])
            .unwrap();
        let packed = encoder.finish().unwrap();
        let region = decompress(Compression::Gzip, &packed).unwrap();
        assert_eq!(&region[..], &plain[RECORD_BATCH_HEADER_BYTES..]);
    }

    #[test]
    fn garbage_and_oversized_input_are_errors() {
        // Proves a corrupt compressed region is an error, not a panic, for every codec, and that
        // only the codecs the producer writes parse as its choice.
        for compression in [
            Compression::Lz4,
            Compression::Zstd,
            Compression::Gzip,
            Compression::Snappy,
        ] {
            assert!(decompress(compression, b"definitely not compressed").is_err());
        }
        let codec: Result<CompressionCodec, _> = "snappy".parse();
        assert!(codec.is_err());
        assert_eq!(
            "zstd".parse::<CompressionCodec>().unwrap(),
            CompressionCodec::Zstd
        );
    }
}
