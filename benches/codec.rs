//! Micro-benchmarks of the Kafka wire codec: the costs the produce and fetch paths pay per request.
//!
//! Run with `cargo bench --bench codec`; figures are recorded in `perf/RESULTS.md`. The point of
//! most of these is a ratio, not an absolute: decoding a Produce request or encoding a Fetch
//! response that carries 1 MiB of records must cost far less than copying 1 MiB (`memcpy`, in
//! the same run), because record bytes are sliced out of the frame and spliced into the response,
//! never copied. `main` asserts that zero-copy property before any timing starts, so a codec
//! change that starts copying fails loudly here instead of only looking slower.
//!
//! Inputs are built once, outside the timed loops; each timed call gets its frame through
//! `with_inputs` (a `Bytes` refcount bump) so the measurement is the decode alone. Do not read
//! the byte throughput of the decode and encode rows as bandwidth: it is the frame size divided
//! by the time, and is only there to line up against `memcpy`.

use bytes::{Bytes, BytesMut};
use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use spate::protocol::field::{RecordSet, Uuid};
use spate::protocol::frame::{
    FRAME_SIZE_PREFIX_BYTES, encode_request_frame, encode_response_frame,
};
use spate::protocol::messages::fetch::{FetchResponse, FetchableTopicResponse, PartitionData};
use spate::protocol::messages::metadata::{
    MetadataRequest, MetadataRequestTopic, MetadataResponse, MetadataResponseBroker,
    MetadataResponsePartition, MetadataResponseTopic,
};
use spate::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use spate::protocol::record_batch::{assign, validate};
use spate::protocol::records::{BatchBuilder, Record};
use spate::protocol::wire::Reader;
use spate::protocol::{ApiKey, CodecError, Request, RequestHeader, Response};

/// The size of the "large" payload: one producer batch at Kafka's default `max.request.size`.
const LARGE_BYTES: usize = 1 << 20;
/// A batch size typical of a linger-bounded producer (Kafka's default `batch.size`).
const MEDIUM_BYTES: usize = 16 << 10;
/// A small per-partition batch, for requests that fan out over many partitions.
const SMALL_BYTES: usize = 1 << 10;
/// Partitions in the fan-out Produce request.
const FANOUT_PARTITIONS: i32 = 100;
/// Frames in these benchmarks are far below any real limit; this only satisfies `frame_size`.
const FRAME_BYTES_MAX: usize = 100 << 20;
/// Record values are this long, so a 1 MiB batch holds about a thousand records.
const VALUE_BYTES: usize = 1000;

fn main() {
    check_zero_copy();
    divan::main();
}

/// Builds one valid uncompressed RecordBatch of at most `batch_bytes_max` bytes (and at least one
/// record), from records with values of up to `VALUE_BYTES`.
fn build_batch(batch_bytes_max: usize) -> Bytes {
    // Leave room for the 61-byte header and one record's framing, so a 1 KiB batch still fits
    // its single record.
    let value_bytes = VALUE_BYTES.min(batch_bytes_max.saturating_sub(124));
    // Record framing (length, attributes, deltas, key and value lengths, header count) stays
    // under 16 bytes for the sizes used here, so this bound keeps the batch within the maximum.
    const RECORD_OVERHEAD_BYTES_MAX: usize = 16;
    let value = vec![b'v'; value_bytes];
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    loop {
        builder.push(&Record {
            timestamp_delta: i64::from(builder.records_count()),
            key: None,
            value: Some(&value),
            headers: &[],
        });
        let next_bytes = builder.size_bytes() + value_bytes + RECORD_OVERHEAD_BYTES_MAX;
        if next_bytes > batch_bytes_max {
            break;
        }
    }
    let batch = builder.finish();
    assert!(validate(&batch).is_ok());
    batch
}

/// Encodes a request frame (size prefix included) and joins its chunks into one `Bytes`, as the
/// connection hands a frame read from the socket to the decoder.
fn request_frame(api_key: ApiKey, api_version: i16, request: &Request) -> Bytes {
    let header = RequestHeader {
        api_key: api_key.code(),
        api_version,
        correlation_id: 7,
        client_id: Some("spate-bench".to_owned()),
    };
    let chunks = encode_request_frame(&header, request).expect("bench request encodes");
    let mut frame = BytesMut::new();
    for chunk in chunks {
        frame.extend_from_slice(&chunk);
    }
    frame.freeze()
}

/// The broker's decode path for one frame: size prefix, header, then the body by API key.
fn decode_request_frame(frame: Bytes) -> Result<(RequestHeader, Request), CodecError> {
    let prefix: [u8; FRAME_SIZE_PREFIX_BYTES] = frame[..FRAME_SIZE_PREFIX_BYTES]
        .try_into()
        .expect("prefix slice");
    let frame_bytes = spate::protocol::frame::frame_size(prefix, FRAME_BYTES_MAX)?;
    let mut reader = Reader::new(frame.slice(FRAME_SIZE_PREFIX_BYTES..));
    debug_assert_eq!(reader.remaining(), frame_bytes);
    let header = RequestHeader::decode(&mut reader)?;
    let api_key = ApiKey::from_code(header.api_key).ok_or(CodecError::UnknownApiKey {
        api_key: header.api_key,
    })?;
    let request = Request::decode(api_key, header.api_version, reader.rest().clone())?;
    Ok((header, request))
}

fn produce_request(partitions: Vec<PartitionProduceData>) -> Request {
    Request::Produce(ProduceRequest {
        transactional_id: None,
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "bench".to_owned(),
            partition_data: partitions,
        }],
    })
}

/// A Produce request frame with one partition carrying `batch`.
fn produce_frame(version: i16, batch: &Bytes) -> Bytes {
    let partition = PartitionProduceData {
        index: 0,
        records: Some(batch.clone()),
    };
    request_frame(ApiKey::Produce, version, &produce_request(vec![partition]))
}

/// A Produce request frame spread over `FANOUT_PARTITIONS` partitions of one small batch each.
fn produce_fanout_frame(version: i16) -> Bytes {
    let batch = build_batch(SMALL_BYTES);
    let partitions = (0..FANOUT_PARTITIONS)
        .map(|index| PartitionProduceData {
            index,
            records: Some(batch.clone()),
        })
        .collect();
    request_frame(ApiKey::Produce, version, &produce_request(partitions))
}

/// A Fetch response for one partition whose records are `batches`, read from the log as separate
/// buffers and sent without joining them.
fn fetch_response(batches: &[Bytes]) -> Response {
    Response::Fetch(FetchResponse {
        throttle_time_ms: 0,
        error_code: 0,
        session_id: 0,
        responses: vec![FetchableTopicResponse {
            topic: "bench".to_owned(),
            partitions: vec![PartitionData {
                partition_index: 0,
                high_watermark: 1_000_000,
                last_stable_offset: 1_000_000,
                log_start_offset: 0,
                records: Some(RecordSet(batches.to_vec())),
                ..PartitionData::default()
            }],
        }],
    })
}

fn metadata_request_frame() -> Bytes {
    let topics = ["orders", "payments", "clicks"]
        .iter()
        .enumerate()
        .map(|(i, name)| MetadataRequestTopic {
            topic_id: Uuid([i as u8 + 1; 16]),
            name: Some((*name).to_owned()),
        })
        .collect();
    let request = Request::Metadata(MetadataRequest {
        topics: Some(topics),
        allow_auto_topic_creation: false,
        include_cluster_authorized_operations: false,
        include_topic_authorized_operations: false,
    });
    request_frame(ApiKey::Metadata, 12, &request)
}

/// A Metadata answer for 10 topics of 16 partitions each, replicated on 2 brokers.
fn metadata_response() -> Response {
    let brokers = (0..2)
        .map(|node_id| MetadataResponseBroker {
            node_id,
            host: format!("broker-{node_id}.spate.internal"),
            port: 9092,
            rack: None,
        })
        .collect();
    let topics = (0..10u8)
        .map(|t| MetadataResponseTopic {
            error_code: 0,
            name: Some(format!("topic-{t}")),
            topic_id: Uuid([t + 1; 16]),
            is_internal: false,
            partitions: (0..16)
                .map(|p| MetadataResponsePartition {
                    error_code: 0,
                    partition_index: p,
                    leader_id: p % 2,
                    leader_epoch: 3,
                    replica_nodes: vec![p % 2, 1 - p % 2],
                    isr_nodes: vec![p % 2, 1 - p % 2],
                    offline_replicas: Vec::new(),
                })
                .collect(),
            topic_authorized_operations: i32::MIN,
        })
        .collect();
    Response::Metadata(MetadataResponse {
        throttle_time_ms: 0,
        brokers,
        cluster_id: Some("spate-bench-cluster".to_owned()),
        controller_id: 0,
        topics,
        cluster_authorized_operations: i32::MIN,
    })
}

fn produce_records(request: &Request) -> &Bytes {
    let Request::Produce(produce) = request else {
        panic!("decoded a {:?}, not a Produce", request.api_key());
    };
    produce.topic_data[0].partition_data[0]
        .records
        .as_ref()
        .expect("records present")
}

/// Fails the run if decode or encode copies the record bytes: the benchmarks below would then
/// be measuring a codec that no longer has the property they exist to show.
fn check_zero_copy() {
    let batch = build_batch(LARGE_BYTES);
    for version in [7, 9] {
        let frame = produce_frame(version, &batch);
        let (_, request) = decode_request_frame(frame.clone()).expect("produce decodes");
        let records = produce_records(&request);
        assert_eq!(records.len(), batch.len());
        let frame_range = frame.as_ptr_range();
        assert!(frame_range.contains(&records.as_ptr()), "v{version} copied");
        println!(
            "produce v{version}: frame {} bytes, batch {} bytes",
            frame.len(),
            batch.len()
        );
    }
    for version in [11, 12] {
        let response = fetch_response(std::slice::from_ref(&batch));
        let chunks = encode_response_frame(7, version, &response).expect("encodes");
        let spliced = chunks.iter().any(|chunk| chunk.as_ptr() == batch.as_ptr());
        assert!(spliced, "fetch v{version} copied the records");
        let frame_bytes: usize = chunks.iter().map(Bytes::len).sum();
        println!(
            "fetch v{version}: {} chunks, {frame_bytes} bytes",
            chunks.len()
        );
    }
    let batches: Vec<Bytes> = (0..64).map(|_| build_batch(MEDIUM_BYTES)).collect();
    let chunks = encode_response_frame(7, 12, &fetch_response(&batches)).expect("encodes");
    for batch in &batches {
        let spliced = chunks.iter().any(|chunk| chunk.as_ptr() == batch.as_ptr());
        assert!(spliced, "fetch v12 copied one of 64 batches");
    }
    println!("fetch v12 x64 batches: {} chunks", chunks.len());
    for size_bytes in [SMALL_BYTES, MEDIUM_BYTES, LARGE_BYTES] {
        let batch_bytes = build_batch(size_bytes).len();
        println!("batch of at most {size_bytes}: {batch_bytes} bytes");
    }
    let fanout = produce_fanout_frame(9);
    println!(
        "produce v9 x{FANOUT_PARTITIONS}: frame {} bytes",
        fanout.len()
    );
    println!(
        "metadata v12 request: frame {} bytes",
        metadata_request_frame().len()
    );
    let chunks = encode_response_frame(7, 12, &metadata_response()).expect("encodes");
    let frame_bytes: usize = chunks.iter().map(Bytes::len).sum();
    println!("metadata v12 response: frame {frame_bytes} bytes");
}

/// The comparison point: copying the bytes once, into a buffer that is already allocated.
mod memcpy {
    use super::*;

    #[divan::bench(args = [MEDIUM_BYTES, LARGE_BYTES])]
    fn copy(bencher: Bencher, size_bytes: usize) {
        let source = vec![0x5au8; size_bytes];
        let mut destination = vec![0u8; size_bytes];
        bencher
            .counter(BytesCount::new(size_bytes))
            .bench_local(|| {
                destination.copy_from_slice(black_box(&source));
                black_box(&mut destination);
            });
    }
}

mod produce_decode {
    use super::*;

    /// One partition, one ~1 MiB batch: the records must come out as a slice of the frame.
    #[divan::bench(args = [7, 9])]
    fn one_partition_1mib(bencher: Bencher, version: i16) {
        let frame = produce_frame(version, &build_batch(LARGE_BYTES));
        bencher
            .counter(BytesCount::new(frame.len()))
            .with_inputs(|| frame.clone())
            .bench_values(|frame| decode_request_frame(black_box(frame)).expect("decodes"));
    }

    /// A hundred partitions of ~1 KiB each: the per-partition cost of the decoder.
    #[divan::bench(args = [9])]
    fn fanout_100_partitions(bencher: Bencher, version: i16) {
        let frame = produce_fanout_frame(version);
        bencher
            .counter(BytesCount::new(frame.len()))
            .counter(ItemsCount::new(FANOUT_PARTITIONS as usize))
            .with_inputs(|| frame.clone())
            .bench_values(|frame| decode_request_frame(black_box(frame)).expect("decodes"));
    }
}

mod fetch_encode {
    use super::*;

    /// One partition, one ~1 MiB batch: the records must be spliced into the chunks.
    #[divan::bench(args = [11, 12])]
    fn one_partition_1mib(bencher: Bencher, version: i16) {
        let batch = build_batch(LARGE_BYTES);
        let response = fetch_response(std::slice::from_ref(&batch));
        bencher
            .counter(BytesCount::new(batch.len()))
            .bench(|| encode_response_frame(7, version, black_box(&response)).expect("encodes"));
    }

    /// The same 1 MiB as 64 batches of 16 KiB, each its own buffer: the cost per spliced chunk.
    #[divan::bench(args = [12])]
    fn one_partition_64_batches(bencher: Bencher, version: i16) {
        let batches: Vec<Bytes> = (0..64).map(|_| build_batch(MEDIUM_BYTES)).collect();
        let records_bytes: usize = batches.iter().map(Bytes::len).sum();
        let response = fetch_response(&batches);
        bencher
            .counter(BytesCount::new(records_bytes))
            .bench(|| encode_response_frame(7, version, black_box(&response)).expect("encodes"));
    }
}

mod metadata {
    use super::*;

    #[divan::bench]
    fn decode_request_v12(bencher: Bencher) {
        let frame = metadata_request_frame();
        bencher
            .with_inputs(|| frame.clone())
            .bench_values(|frame| decode_request_frame(black_box(frame)).expect("decodes"));
    }

    /// 10 topics x 16 partitions, 2 brokers.
    #[divan::bench]
    fn encode_response_v12(bencher: Bencher) {
        let response = metadata_response();
        bencher.bench(|| encode_response_frame(7, 12, black_box(&response)).expect("encodes"));
    }
}

mod record_batch {
    use super::*;

    /// The CRC-32C check over the whole batch dominates; compare with the crc-fast ceiling.
    #[divan::bench(args = [SMALL_BYTES, MEDIUM_BYTES, LARGE_BYTES])]
    fn validate_batch(bencher: Bencher, size_bytes: usize) {
        let batch = build_batch(size_bytes);
        bencher
            .counter(BytesCount::new(batch.len()))
            .bench(|| validate(black_box(&batch)).is_ok());
    }

    /// The bare CRC-32C at exactly the sizes of the CRC ceilings quoted at the top of perf/RESULTS.md, so
    /// `validate_batch` can be split into checksum and everything else.
    #[divan::bench(args = [SMALL_BYTES, MEDIUM_BYTES, LARGE_BYTES])]
    fn crc32c(bencher: Bencher, size_bytes: usize) {
        let bytes = vec![0xa5u8; size_bytes];
        bencher
            .counter(BytesCount::new(size_bytes))
            .bench(|| spate::protocol::record_batch::crc32c(black_box(&bytes)));
    }

    /// Patching base_offset and leader epoch touches only the header, whatever the batch size.
    #[divan::bench(args = [MEDIUM_BYTES, LARGE_BYTES])]
    fn assign_offsets(bencher: Bencher, size_bytes: usize) {
        let mut batch = build_batch(size_bytes).to_vec();
        let batch_bytes = batch.len();
        let mut base_offset = 0i64;
        bencher
            .counter(BytesCount::new(batch_bytes))
            .bench_local(|| {
                base_offset += 1;
                assign(black_box(&mut batch), black_box(base_offset), 5).expect("header fits")
            });
    }
}

/// Walking every record of a produced batch (Kafka's LogValidator), uncompressed and through each
/// codec: what validation costs on the produce path, per byte of records.
mod record_validation {
    use super::*;
    use spate::protocol::compression::compress;
    use spate::protocol::record_batch::{Compression, RECORD_BATCH_HEADER_BYTES, with_records};
    use spate::protocol::record_validation::validate_records;

    /// Far above what these batches decompress to; the bound is not what is measured.
    const DECOMPRESSED_BYTES_MAX: usize = 256 << 20;

    /// A ~1 MiB batch of records with `value_bytes` values, part text and part pseudo-random
    /// hex, so the codecs see data about as compressible as typical JSON-ish payloads.
    fn records_batch(value_bytes: usize) -> Bytes {
        let mut builder = BatchBuilder::with_capacity(1_700_000_000_000, LARGE_BYTES + 4096);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        while builder.size_bytes() + value_bytes + 32 < LARGE_BYTES {
            let mut value = format!("{{\"id\":{},\"v\":\"", builder.records_count());
            while value.len() < value_bytes {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                value.push_str(&format!("{:x}", state & 0xffff));
            }
            value.truncate(value_bytes);
            builder.push(&Record {
                timestamp_delta: i64::from(builder.records_count()),
                key: Some(b"key"),
                value: Some(value.as_bytes()),
                headers: &[],
            });
        }
        builder.finish()
    }

    fn compressed(batch: &Bytes, codec: Compression) -> Bytes {
        let packed = compress(codec, &batch[RECORD_BATCH_HEADER_BYTES..]).unwrap();
        with_records(&batch[..RECORD_BATCH_HEADER_BYTES], codec, &packed).unwrap()
    }

    /// CRC plus the walk of every record of an uncompressed 1 MiB batch, by value size.
    #[divan::bench(args = [100, 1000])]
    fn uncompressed(bencher: Bencher, value_bytes: usize) {
        let batch = records_batch(value_bytes);
        bencher
            .counter(BytesCount::new(batch.len()))
            .bench(|| validate_records(black_box(&batch), DECOMPRESSED_BYTES_MAX).is_ok());
    }

    /// CRC, decompression and the walk of a batch holding 1 MiB of 100-byte records; the
    /// throughput counts the uncompressed bytes.
    #[divan::bench(args = ["gzip", "snappy", "lz4", "zstd"])]
    fn compressed_1mib(bencher: Bencher, codec: &str) {
        let codec = match codec {
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            _ => Compression::Zstd,
        };
        let plain = records_batch(100);
        let batch = compressed(&plain, codec);
        assert!(validate_records(&batch, DECOMPRESSED_BYTES_MAX).is_ok());
        bencher
            .counter(BytesCount::new(plain.len()))
            .bench(|| validate_records(black_box(&batch), DECOMPRESSED_BYTES_MAX).is_ok());
    }

    /// Re-compressing 1 MiB of 100-byte records into each codec (compression.type differing
    /// from the producer's): the cost only such topics pay, on top of validation.
    #[divan::bench(args = ["gzip", "snappy", "lz4", "zstd"])]
    fn recompress_1mib(bencher: Bencher, codec: &str) {
        let codec = match codec {
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            _ => Compression::Zstd,
        };
        let plain = records_batch(100);
        bencher
            .counter(BytesCount::new(plain.len()))
            .bench(|| compressed(black_box(&plain), codec));
    }
}
