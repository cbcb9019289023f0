//! Record validation on produce and the `compression.type` topic config, against a real broker:
//! raw Produce frames carrying batches with a valid CRC around malformed records are refused with
//! Kafka's codes (and the per-record errors of Produce v8+), and a real consumer then reads every
//! valid record around them; a topic's compression.type re-compresses what producers send.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rdkafka::Offset;
use rdkafka::producer::BaseRecord;
use spate::protocol::compression::compress;
use spate::protocol::messages::incremental_alter_configs::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use spate::protocol::messages::produce::{
    PartitionProduceData, PartitionProduceResponse, ProduceRequest, TopicProduceData,
};
use spate::protocol::record_batch::{Compression, RECORD_BATCH_HEADER_BYTES, with_records};
use spate::protocol::records::{BatchBuilder, Record};
use spate::protocol::{Request, Response};

use common::wire::Wire;
use common::{Broker, BrokerConfig};

const INVALID_RECORD: i16 = 87;
const CORRUPT_MESSAGE: i16 = 2;
const INVALID_CONFIG: i16 = 40;

fn one_shard_broker() -> Broker {
    Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    })
}

fn put_varint(out: &mut BytesMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.put_u8(zigzag as u8 | 0x80);
        zigzag >>= 7;
    }
    out.put_u8(zigzag as u8);
}

/// One encoded record: `offset_delta`, a value, `header_count` claimed but one header written,
/// and its length varint `length_extra` bytes longer than its body.
fn record(offset_delta: i64, header_count: i64, length_extra: i64) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_u8(0);
    put_varint(&mut body, 0);
    put_varint(&mut body, offset_delta);
    put_varint(&mut body, -1);
    put_varint(&mut body, 5);
    body.put_slice(b"value");
    put_varint(&mut body, header_count);
    put_varint(&mut body, 1);
    body.put_slice(b"h");
    put_varint(&mut body, 1);
    body.put_slice(b"v");
    let mut out = BytesMut::new();
    put_varint(&mut out, body.len() as i64 + length_extra);
    out.put_slice(&body);
    out
}

/// A batch of 3 records (its header from the project's encoder) around `region` compressed with
/// `codec`, with a valid CRC.
fn seal(region: &[u8], codec: Compression) -> Bytes {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for _ in 0..3 {
        builder.push(&Record {
            timestamp_delta: 0,
            key: None,
            value: Some(b"x"),
            headers: &[],
        });
    }
    let header = builder.finish();
    with_records(&header[..RECORD_BATCH_HEADER_BYTES], codec, region).unwrap()
}

fn valid(values: &[String], codec: Compression) -> Bytes {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for (i, value) in values.iter().enumerate() {
        builder.push(&Record {
            timestamp_delta: i as i64,
            key: Some(b"key"),
            value: Some(value.as_bytes()),
            headers: &[(b"h", Some(b"v"))],
        });
    }
    let plain = builder.finish();
    if codec == Compression::None {
        return plain;
    }
    let packed = compress(codec, &plain[RECORD_BATCH_HEADER_BYTES..]).unwrap();
    with_records(&plain[..RECORD_BATCH_HEADER_BYTES], codec, &packed).unwrap()
}

fn produce(wire: &mut Wire, version: i16, topic: &str, batch: Bytes) -> PartitionProduceResponse {
    let request = Request::Produce(ProduceRequest {
        transactional_id: None,
        acks: -1,
        timeout_ms: 10_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(batch),
            }],
        }],
    });
    let Response::Produce(mut response) = wire.call(version, request) else {
        panic!("not a produce response");
    };
    response.responses.remove(0).partition_responses.remove(0)
}

/// The malformed batches, each with the code and the record index it must be refused with.
fn malformed() -> Vec<(&'static str, Bytes, i16, Option<i32>)> {
    let join = |parts: &[BytesMut]| parts.iter().flat_map(|p| p.to_vec()).collect::<Vec<u8>>();
    let mut bad_varint = join(&[record(0, 1, 0), record(1, 1, 0)]);
    bad_varint.extend_from_slice(&[0xff; 6]);
    let garbage = vec![0x55u8; 4000];
    vec![
        (
            "bad varint",
            seal(&bad_varint, Compression::None),
            INVALID_RECORD,
            Some(2),
        ),
        (
            "offset deltas out of order",
            seal(
                &join(&[record(0, 1, 0), record(2, 1, 0), record(1, 1, 0)]),
                Compression::None,
            ),
            INVALID_RECORD,
            Some(1),
        ),
        (
            "record overrunning the batch",
            seal(
                &join(&[record(0, 1, 0), record(1, 1, 0), record(2, 1, 500)]),
                Compression::None,
            ),
            INVALID_RECORD,
            Some(2),
        ),
        (
            "header count beyond the record",
            seal(
                &join(&[record(0, 1, 0), record(1, 9, 0), record(2, 1, 0)]),
                Compression::None,
            ),
            INVALID_RECORD,
            Some(1),
        ),
        (
            "zstd decompressing to garbage",
            seal(
                &compress(Compression::Zstd, &garbage).unwrap(),
                Compression::Zstd,
            ),
            INVALID_RECORD,
            Some(0),
        ),
        (
            "gzip flag on bytes that are not gzip",
            seal(
                &join(&[record(0, 1, 0), record(1, 1, 0), record(2, 1, 0)]),
                Compression::Gzip,
            ),
            CORRUPT_MESSAGE,
            None,
        ),
    ]
}

#[test]
fn garbage_records_are_refused_and_consumers_read_around_them() {
    // Proves every malformed batch with a valid CRC is refused with INVALID_RECORD or
    // CORRUPT_MESSAGE (with record_errors and error_message in v8+, the bare code in v7), and
    // that none of it reaches the log: a real consumer reads every valid record produced before
    // and after, at consecutive offsets, and nothing else.
    let broker = one_shard_broker();
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("poison", 1, &[]), 0);
    let values = |tag: &str| (0..3).map(|i| format!("{tag}{i}")).collect::<Vec<_>>();

    let before = produce(
        &mut wire,
        9,
        "poison",
        valid(&values("a"), Compression::None),
    );
    assert_eq!((before.error_code, before.base_offset), (0, 0));
    for (name, batch, code, index) in malformed() {
        let refused = produce(&mut wire, 9, "poison", batch.clone());
        assert_eq!(refused.error_code, code, "{name}: {refused:?}");
        assert!(refused.error_message.is_some(), "{name}: error_message");
        let indexes: Vec<i32> = refused
            .record_errors
            .iter()
            .map(|e| e.batch_index)
            .collect();
        assert_eq!(indexes, index.into_iter().collect::<Vec<_>>(), "{name}");
        let old = produce(&mut wire, 7, "poison", batch);
        assert_eq!(old.error_code, code, "{name} at v7");
        assert!(old.record_errors.is_empty() && old.error_message.is_none());
    }
    let after = produce(
        &mut wire,
        9,
        "poison",
        valid(&values("b"), Compression::Zstd),
    );
    assert_eq!((after.error_code, after.base_offset), (0, 3));

    let consumer = common::consumer(&broker.bootstrap(), &[]);
    let records = common::consume(
        &consumer,
        "poison",
        &[(0, Offset::Beginning)],
        &[6],
        Duration::from_secs(20),
        Duration::from_millis(500),
    );
    let read: Vec<(i64, String)> = records[&0]
        .iter()
        .map(|r| {
            (
                r.offset,
                String::from_utf8(r.value.clone().unwrap()).unwrap(),
            )
        })
        .collect();
    let want: Vec<(i64, String)> = values("a")
        .into_iter()
        .chain(values("b"))
        .enumerate()
        .map(|(i, v)| (i as i64, v))
        .collect();
    assert_eq!(read, want);
    assert_eq!(common::watermarks(&consumer, "poison", 0), (0, 6));
    drop(consumer);
    broker.stop();
}

fn alter_compression_type(wire: &mut Wire, topic: &str, value: &str) -> i16 {
    let request = Request::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
        resources: vec![AlterConfigsResource {
            resource_type: 2,
            resource_name: topic.into(),
            configs: vec![AlterableConfig {
                name: "compression.type".into(),
                config_operation: 0,
                value: Some(value.into()),
            }],
        }],
        validate_only: false,
    });
    let Response::IncrementalAlterConfigs(response) = wire.call(1, request) else {
        panic!("not an IncrementalAlterConfigs response");
    };
    response.responses[0].error_code
}

/// The stored bytes of the first segment of `topic`-0 from `file_position`, `length` of them.
fn stored(broker: &Broker, topic: &str, length: usize) -> Vec<u8> {
    let path = broker
        .data_dir()
        .join(format!("{topic}-0"))
        .join("00000000000000000000.log");
    std::fs::read(path).unwrap()[..length].to_vec()
}

#[test]
fn compression_type_recompresses_and_producer_keeps_the_bytes() {
    // Proves compression.type: a zstd topic stores the gzip and uncompressed batches librdkafka
    // sends as zstd batches that librdkafka reads back in full; an altered topic switches codec;
    // `producer` keeps a batch byte for byte; unknown values get INVALID_CONFIG.
    let broker = one_shard_broker();
    let bootstrap = broker.bootstrap();
    let mut wire = Wire::connect(&bootstrap);
    assert_eq!(
        wire.create_topic("bad", 1, &[("compression.type", "brotli")]),
        INVALID_CONFIG
    );
    common::create_topic(&bootstrap, "packed", 1, &[("compression.type", "zstd")]);
    let mut sent = Vec::new();
    for codec in ["gzip", "none"] {
        let producer = common::producer(
            &bootstrap,
            &[("compression.type", codec), ("linger.ms", "5")],
        );
        for i in 0..500 {
            let value = format!("{codec} record {i} {}", "x".repeat(i % 50));
            common::send(
                &producer,
                BaseRecord::with_opaque_to("packed", i)
                    .partition(0)
                    .key(&b"k"[..])
                    .payload(value.as_bytes()),
            );
            sent.push(value);
        }
        common::flush_all_delivered(&producer, 500);
    }
    let batches = common::assert_stored_batches(broker.data_dir(), "packed", 0, 1000, 4);
    assert!(batches.len() >= 2);

    assert_eq!(alter_compression_type(&mut wire, "packed", "snappy"), 0);
    assert_eq!(
        alter_compression_type(&mut wire, "packed", "best"),
        INVALID_CONFIG
    );
    let tail: Vec<String> = (0..3).map(|i| format!("tail {i}")).collect();
    let appended = produce(&mut wire, 9, "packed", valid(&tail, Compression::Lz4));
    assert_eq!((appended.error_code, appended.base_offset), (0, 1000));
    sent.extend(tail.iter().cloned());
    let stored_batches = common::segment_batches(broker.data_dir(), "packed", 0);
    assert_eq!(
        stored_batches.last().unwrap().codec(),
        2,
        "snappy after the alter"
    );

    let consumer = common::consumer(&bootstrap, &[]);
    let records = common::consume(
        &consumer,
        "packed",
        &[(0, Offset::Beginning)],
        &[1003],
        Duration::from_secs(30),
        Duration::from_millis(300),
    );
    let read: Vec<String> = records[&0]
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(read, sent);
    let offsets: Vec<i64> = records[&0].iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..1003).collect::<Vec<_>>());

    assert_eq!(
        wire.create_topic("kept", 1, &[("compression.type", "producer")]),
        0
    );
    let batch = valid(&tail, Compression::Gzip);
    assert_eq!(produce(&mut wire, 9, "kept", batch.clone()).error_code, 0);
    let bytes = stored(&broker, "kept", batch.len());
    // The broker sets the base offset (0 here) and the leader epoch (bytes 12..16, outside the
    // CRC); every other byte is the producer's.
    assert_eq!(&bytes[..12], &batch[..12]);
    assert_eq!(&bytes[16..], &batch[16..]);

    // uncompressed: an LZ4 batch is stored with its records region decompressed, byte for byte
    // what the project's encoder wrote before compressing it.
    assert_eq!(
        wire.create_topic("plain", 1, &[("compression.type", "uncompressed")]),
        0
    );
    let plain = valid(&tail, Compression::None);
    assert_eq!(
        produce(&mut wire, 9, "plain", valid(&tail, Compression::Lz4)).error_code,
        0
    );
    assert_eq!(
        common::segment_batches(broker.data_dir(), "plain", 0)[0].codec(),
        0
    );
    let bytes = stored(&broker, "plain", plain.len());
    assert_eq!(
        &bytes[RECORD_BATCH_HEADER_BYTES..],
        &plain[RECORD_BATCH_HEADER_BYTES..]
    );
    assert_eq!(&bytes[8..12], &plain[8..12], "batch length");
    drop(consumer);
    broker.stop();
}
