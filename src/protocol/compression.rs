//! The codecs of a RecordBatch v2's records region: gzip, Snappy, LZ4 and Zstandard, both ways.
//!
//! Kafka compresses a batch's records region as one blob and flags the codec in the low three
//! attribute bits; the 61-byte header stays plain. The records inside are the same bytes whatever
//! the codec, so changing a batch's codec is decompress, compress, new header length and CRC.
//! Formats, as Kafka's clients read and write them:
//! - gzip: a gzip member (several are read, as Java's GZIPInputStream does); written at level 6,
//!   Kafka's `compression.gzip.level` default.
//! - Snappy: Xerial framing (a 16-byte header, then blocks of a big-endian i32 length and a raw
//!   Snappy block), what the Java client writes; a region without that header is read as one raw
//!   Snappy block, as Xerial's reader and librdkafka do.
//! - LZ4: the LZ4 frame format with independent 64 KiB blocks and no checksums (the batch CRC
//!   covers the bytes).
//! - Zstandard: a plain zstd frame, written at level 3 (`compression.zstd.level`).
//!
//! Decoders are streams, so a caller can walk records as they come out and stop (and yield) at
//! any point; they never produce one block above the caller's bound, so a hostile batch cannot
//! make them allocate without limit. Callers must bound the total they read themselves.

use std::io::{self, Read, Write};

use super::record_batch::Compression;

/// zstd level 3 is Kafka's default (`compression.zstd.level`).
pub const ZSTD_LEVEL: i32 = 3;
/// gzip level 6 is what Kafka's default (`compression.gzip.level` = -1) means in java.util.zip.
pub const GZIP_LEVEL: u32 = 6;
/// Uncompressed bytes per Xerial Snappy block: the Java client's block size.
const SNAPPY_BLOCK_BYTES: usize = 32 * 1024;
/// The start of the Xerial stream header that identifies the framing.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// What follows the magic: version 1, then minimum compatible version 1.
const XERIAL_VERSIONS: [u8; 8] = [0, 0, 0, 1, 0, 0, 0, 1];
/// Bytes in the Xerial header.
const XERIAL_HEADER_BYTES: usize = XERIAL_MAGIC.len() + XERIAL_VERSIONS.len();

/// Why a records region could not be compressed or decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    /// The compressed bytes are not a valid stream of the codec.
    #[error("{codec:?} records do not decompress: {reason}")]
    Corrupt {
        /// The batch's codec.
        codec: Compression,
        /// What the decoder said.
        reason: String,
    },
    /// The encoder failed (out of memory, or a codec library error).
    #[error("{codec:?} compression failed: {reason}")]
    Encoder {
        /// The target codec.
        codec: Compression,
        /// What the encoder said.
        reason: String,
    },
    /// The records decompress to more than the bound the caller gave.
    #[error("records decompress to more than {bytes_max} bytes")]
    TooLarge {
        /// The bound.
        bytes_max: usize,
    },
}

/// A stream of the decompressed records region of `region`, compressed with `codec`. One Snappy
/// block above `block_bytes_max` is an error; the caller bounds the total it reads.
pub fn decoder<'a>(
    codec: Compression,
    region: &'a [u8],
    block_bytes_max: usize,
) -> Result<Box<dyn Read + 'a>, CompressionError> {
    let corrupt = |error: io::Error| CompressionError::Corrupt {
        codec,
        reason: error.to_string(),
    };
    Ok(match codec {
        Compression::None => Box::new(region),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(region)),
        Compression::Snappy if region.starts_with(&XERIAL_MAGIC) => Box::new(XerialReader {
            input: region.get(XERIAL_HEADER_BYTES..).ok_or_else(|| {
                corrupt(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated Xerial header",
                ))
            })?,
            block: Vec::new(),
            position: 0,
            block_bytes_max,
        }),
        Compression::Snappy => {
            let block = snappy_block(region, block_bytes_max).map_err(corrupt)?;
            Box::new(io::Cursor::new(block))
        }
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(region)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(region).map_err(corrupt)?)
        }
    })
}

/// Decompresses a whole records region, at most `bytes_max` bytes of it.
pub fn decompress(
    codec: Compression,
    region: &[u8],
    bytes_max: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    decoder(codec, region, bytes_max)?
        .take(bytes_max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|error| CompressionError::Corrupt {
            codec,
            reason: error.to_string(),
        })?;
    if out.len() > bytes_max {
        return Err(CompressionError::TooLarge { bytes_max });
    }
    Ok(out)
}

/// Compresses a whole records region with `codec`.
pub fn compress(codec: Compression, records: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let mut encoder = RecordsEncoder::new(codec, records.len())?;
    encoder.write(records)?;
    encoder.finish()
}

/// Compresses a records region piece by piece, so a caller can yield between pieces.
pub struct RecordsEncoder {
    codec: Compression,
    sink: Sink,
}

enum Sink {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Snappy(Box<XerialWriter>),
    Lz4(lz4_flex::frame::FrameEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl RecordsEncoder {
    /// An encoder for `codec`, its output sized for about `records_bytes` of input.
    pub fn new(codec: Compression, records_bytes: usize) -> Result<Self, CompressionError> {
        let out = Vec::with_capacity(records_bytes / 2 + 64);
        let sink = match codec {
            Compression::None => Sink::Plain(out),
            Compression::Gzip => Sink::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Compression::Snappy => Sink::Snappy(Box::new(XerialWriter::new(out))),
            Compression::Lz4 => {
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                Sink::Lz4(lz4_flex::frame::FrameEncoder::with_frame_info(info, out))
            }
            Compression::Zstd => Sink::Zstd(
                zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)
                    .map_err(|error| encoder_error(codec, error))?,
            ),
        };
        Ok(Self { codec, sink })
    }

    /// Compresses the next piece of the records region.
    pub fn write(&mut self, records: &[u8]) -> Result<(), CompressionError> {
        let written = match &mut self.sink {
            Sink::Plain(out) => {
                out.extend_from_slice(records);
                Ok(())
            }
            Sink::Gzip(encoder) => encoder.write_all(records),
            Sink::Snappy(encoder) => encoder.write_all(records),
            Sink::Lz4(encoder) => encoder.write_all(records),
            Sink::Zstd(encoder) => encoder.write_all(records),
        };
        written.map_err(|error| encoder_error(self.codec, error))
    }

    /// Ends the stream and returns the compressed region.
    pub fn finish(self) -> Result<Vec<u8>, CompressionError> {
        let codec = self.codec;
        let error = |error: io::Error| encoder_error(codec, error);
        match self.sink {
            Sink::Plain(out) => Ok(out),
            Sink::Gzip(encoder) => encoder.finish().map_err(error),
            Sink::Snappy(encoder) => encoder.finish().map_err(error),
            Sink::Lz4(encoder) => encoder.finish().map_err(|e| CompressionError::Encoder {
                codec,
                reason: e.to_string(),
            }),
            Sink::Zstd(encoder) => encoder.finish().map_err(error),
        }
    }
}

fn encoder_error(codec: Compression, error: io::Error) -> CompressionError {
    CompressionError::Encoder {
        codec,
        reason: error.to_string(),
    }
}

/// Decompresses one raw Snappy block, refusing one that claims more than `bytes_max` bytes
/// before allocating for it.
fn snappy_block(block: &[u8], bytes_max: usize) -> io::Result<Vec<u8>> {
    let invalid = |error: snap::Error| io::Error::new(io::ErrorKind::InvalidData, error);
    let length = snap::raw::decompress_len(block).map_err(invalid)?;
    if length > bytes_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a Snappy block claims {length} bytes, above the bound of {bytes_max}"),
        ));
    }
    snap::raw::Decoder::new()
        .decompress_vec(block)
        .map_err(invalid)
}

/// Reads Xerial-framed Snappy: blocks of a big-endian i32 length and a raw Snappy block.
struct XerialReader<'a> {
    input: &'a [u8],
    block: Vec<u8>,
    position: usize,
    block_bytes_max: usize,
}

impl Read for XerialReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.position == self.block.len() {
            if self.input.is_empty() {
                return Ok(0);
            }
            let truncated = || io::Error::new(io::ErrorKind::UnexpectedEof, "truncated block");
            let (prefix, rest) = self.input.split_at_checked(4).ok_or_else(truncated)?;
            let length = i32::from_be_bytes(prefix.try_into().expect("4 bytes"));
            let length = usize::try_from(length).map_err(|_| truncated())?;
            let (block, rest) = rest.split_at_checked(length).ok_or_else(truncated)?;
            self.block = snappy_block(block, self.block_bytes_max)?;
            self.position = 0;
            self.input = rest;
        }
        let n = out.len().min(self.block.len() - self.position);
        out[..n].copy_from_slice(&self.block[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

/// Writes Xerial-framed Snappy, one block per 32 KiB of input.
struct XerialWriter {
    out: Vec<u8>,
    pending: Vec<u8>,
    encoder: snap::raw::Encoder,
}

impl XerialWriter {
    fn new(mut out: Vec<u8>) -> Self {
        out.extend_from_slice(&XERIAL_MAGIC);
        out.extend_from_slice(&XERIAL_VERSIONS);
        Self {
            out,
            pending: Vec::with_capacity(SNAPPY_BLOCK_BYTES),
            encoder: snap::raw::Encoder::new(),
        }
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let block = self
            .encoder
            .compress_vec(&self.pending)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        let length = i32::try_from(block.len()).expect("a 32 KiB block compresses below 2 GiB");
        self.out.extend_from_slice(&length.to_be_bytes());
        self.out.extend_from_slice(&block);
        self.pending.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<Vec<u8>> {
        self.flush_block()?;
        Ok(self.out)
    }
}

impl Write for XerialWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(SNAPPY_BLOCK_BYTES - self.pending.len());
        self.pending.extend_from_slice(&data[..n]);
        if self.pending.len() == SNAPPY_BLOCK_BYTES {
            self.flush_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(bytes: usize) -> Vec<u8> {
        (0..bytes)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect()
    }

    #[test]
    fn every_codec_round_trips_in_pieces() {
        // Proves each codec's output, written in uneven pieces, decompresses to the exact input,
        // across the 32 KiB Snappy and 64 KiB LZ4 block edges.
        let records = sample(200_000);
        for codec in CODECS {
            let mut encoder = RecordsEncoder::new(codec, records.len()).unwrap();
            for piece in records.chunks(7_919) {
                encoder.write(piece).unwrap();
            }
            let packed = encoder.finish().unwrap();
            assert_eq!(
                decompress(codec, &packed, 1 << 20).unwrap(),
                records,
                "{codec:?}"
            );
            assert_eq!(compress(codec, &records).unwrap(), packed, "{codec:?}");
        }
    }

    #[test]
    fn raw_snappy_without_xerial_framing_is_read() {
        // Proves a region that is one raw Snappy block (librdkafka's way) reads back.
        let records = sample(10_000);
        let raw = snap::raw::Encoder::new().compress_vec(&records).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, 1 << 20).unwrap(),
            records
        );
    }

    #[test]
    fn garbage_truncation_and_bombs_are_errors() {
        // Proves corrupt or cut streams are errors for every codec, and output beyond the bound
        // is refused rather than allocated.
        let records = sample(100_000);
        for codec in CODECS.into_iter().skip(1) {
            assert!(decompress(codec, b"definitely not compressed", 1 << 20).is_err());
            let packed = compress(codec, &records).unwrap();
            let cut = &packed[..packed.len() / 2];
            assert!(decompress(codec, cut, 1 << 20).is_err(), "{codec:?} cut");
            assert_eq!(
                decompress(codec, &packed, 50_000),
                Err(CompressionError::TooLarge { bytes_max: 50_000 }),
                "{codec:?} bound"
            );
        }
    }
}
