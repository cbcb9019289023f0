//! The broker at the wire level: raw Kafka frames over TCP, built with Spate's own codec, against
//! a real `spate serve`. These tests cover what client libraries hide: every advertised version of
//! Produce and Fetch, pipelining, the error codes for bad batches and misrouted partitions, and
//! connections closed on hostile frames while the broker carries on.

mod common;

use std::time::Duration;

use bytes::Bytes;
use spate::protocol::frame::encode_request_frame;
use spate::protocol::messages::api_versions::ApiVersionsRequest;
use spate::protocol::messages::delete_topics::DeleteTopicsRequest;
use spate::protocol::messages::fetch::{FetchPartition, FetchRequest, FetchTopic};
use spate::protocol::messages::find_coordinator::FindCoordinatorRequest;
use spate::protocol::messages::list_offsets::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use spate::protocol::messages::metadata::{MetadataRequest, MetadataRequestTopic};
use spate::protocol::records::{BatchBuilder, Record};
use spate::protocol::{ApiKey, Request, RequestHeader, Response};

use common::wire::{Wire, produce};
use common::{Broker, BrokerConfig};

fn batch(values: &[&[u8]]) -> Bytes {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for (i, value) in values.iter().enumerate() {
        builder.push(&Record {
            timestamp_delta: i as i64,
            key: Some(b"key"),
            value: Some(value),
            headers: &[],
        });
    }
    builder.finish()
}

fn produce_result(response: Response) -> (i16, i64) {
    let Response::Produce(response) = response else {
        panic!("not a produce response: {response:?}");
    };
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

fn fetch(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> Request {
    Request::Fetch(FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 50 << 20,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
                ..FetchPartition::default()
            }],
        }],
        ..FetchRequest::default()
    })
}

/// The address of the shard leading `topic`/`partition`, from Metadata.
fn leader_address(wire: &mut Wire, broker: &Broker, topic: &str, partition: i32) -> String {
    let request = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.into()),
            ..MetadataRequestTopic::default()
        }]),
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    });
    let Response::Metadata(metadata) = wire.call(12, request) else {
        panic!("not a metadata response");
    };
    let leader = metadata.topics[0].partitions[partition as usize].leader_id;
    broker.listeners()[leader as usize].address.clone()
}

#[test]
fn api_versions_advertise_what_is_implemented_and_answer_too_new_versions() {
    // Proves ApiVersions lists Produce from 0 (librdkafka's compression quirk) and only
    // implemented APIs, and that a too-new version gets a v0 UNSUPPORTED_VERSION answer.
    let broker = Broker::start(&[]);
    let mut wire = Wire::connect(&broker.bootstrap());
    for version in [0, 3, 4] {
        let Response::ApiVersions(response) =
            wire.call(version, Request::ApiVersions(ApiVersionsRequest::default()))
        else {
            panic!("not an ApiVersions response");
        };
        assert_eq!(response.error_code, 0);
        let produce = response.api_keys.iter().find(|k| k.api_key == 0).unwrap();
        assert_eq!((produce.min_version, produce.max_version), (0, 11));
        let fetch = response.api_keys.iter().find(|k| k.api_key == 1).unwrap();
        assert_eq!((fetch.min_version, fetch.max_version), (4, 12));
        let join_group = response.api_keys.iter().find(|k| k.api_key == 11).unwrap();
        assert_eq!((join_group.min_version, join_group.max_version), (0, 9));
        assert!(
            response.api_keys.iter().all(|k| k.api_key != 36),
            "no SaslAuthenticate"
        );
    }
    // Our codec refuses to encode v9, as a client newer than Spate would send it: encode v4 and
    // raise the header's version.
    let header = RequestHeader {
        api_key: ApiKey::ApiVersions.code(),
        api_version: 4,
        correlation_id: 99,
        client_id: Some("future-client".into()),
    };
    let request = Request::ApiVersions(ApiVersionsRequest::default());
    let mut frame = encode_request_frame(&header, &request).unwrap().concat();
    frame[6..8].copy_from_slice(&9i16.to_be_bytes());
    wire.write_raw(&frame);
    let correlation_id = 99;
    let Response::ApiVersions(response) = wire.receive(ApiKey::ApiVersions, 0, correlation_id)
    else {
        panic!("not an ApiVersions response");
    };
    assert_eq!(response.error_code, 35);
    assert_eq!(response.api_keys.len(), 1);
    assert_eq!(response.api_keys[0].max_version, 4);
    broker.stop();
}

#[test]
fn every_produce_and_fetch_version_round_trips() {
    // Proves each advertised Produce version (3-11) appends and each Fetch version (4-12) reads
    // the batches back byte for byte, with offsets assigned in order.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("versions", 1, &[]), 0);
    let mut sent = Vec::new();
    for version in 3..=11 {
        let records = batch(&[format!("v{version}").as_bytes(), b"second"]);
        let (error, base_offset) =
            produce_result(wire.call(version, produce("versions", 0, records.clone(), 1)));
        assert_eq!(error, 0, "produce v{version}");
        assert_eq!(base_offset, (version as i64 - 3) * 2);
        sent.push(records);
    }
    for version in 4..=12 {
        let Response::Fetch(response) = wire.call(version, fetch("versions", 0, 0, 100)) else {
            panic!("not a fetch response");
        };
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0, "fetch v{version}");
        assert_eq!(partition.high_watermark, 18);
        let records = partition.records.as_ref().unwrap().to_bytes();
        let mut offset = 0;
        let mut position = 0;
        for original in &sent {
            let stored = &records[position..position + original.len()];
            assert_eq!(i64::from_be_bytes(stored[..8].try_into().unwrap()), offset);
            assert_eq!(&stored[16..], &original[16..], "payload and CRC unchanged");
            offset += 2;
            position += original.len();
        }
        assert_eq!(position, records.len());
    }
    broker.stop();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    // Proves five produce requests written back to back get five answers in request order, with
    // offsets in arrival order.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("pipelined", 1, &[]), 0);
    let ids: Vec<i32> = (0..5)
        .map(|i| {
            wire.send(
                9,
                produce("pipelined", 0, batch(&[format!("{i}").as_bytes()]), 1),
            )
        })
        .collect();
    for (i, id) in ids.into_iter().enumerate() {
        let (error, base_offset) = produce_result(wire.receive(ApiKey::Produce, 9, id));
        assert_eq!((error, base_offset), (0, i as i64));
    }
    broker.stop();
}

#[test]
fn bad_batches_get_their_kafka_error_codes() {
    // Proves CORRUPT_MESSAGE for a bad CRC, INVALID_RECORD for magic 1, MESSAGE_TOO_LARGE above
    // max.message.bytes, and that none of them stop the connection or the partition.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(
        wire.create_topic("strict", 1, &[("max.message.bytes", "2000")]),
        0
    );
    let good = batch(&[b"fine"]);
    let mut bad_crc = good.to_vec();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    assert_eq!(
        produce_result(wire.call(9, produce("strict", 0, bad_crc.into(), 1))).0,
        2
    );
    let mut old_magic = good.to_vec();
    old_magic[16] = 1;
    assert_eq!(
        produce_result(wire.call(9, produce("strict", 0, old_magic.into(), 1))).0,
        87
    );
    let big = batch(&[&[7u8; 4000][..]]);
    assert_eq!(
        produce_result(wire.call(9, produce("strict", 0, big, 1))).0,
        10
    );
    let mut two = good.to_vec();
    two.extend_from_slice(&good);
    assert_eq!(
        produce_result(wire.call(9, produce("strict", 0, two.into(), 1))).0,
        87
    );
    assert_eq!(
        produce_result(wire.call(9, produce("strict", 0, good, 1))),
        (0, 0)
    );
    broker.stop();
}

#[test]
fn misrouted_and_unknown_partitions_are_refused() {
    // Proves a partition sent to a shard that does not own it gets NOT_LEADER_OR_FOLLOWER, and an
    // unknown topic with auto-create off gets UNKNOWN_TOPIC_OR_PARTITION.
    let broker = Broker::start_with(BrokerConfig {
        cores: 2,
        args: vec!["--auto-create-topics".into(), "false".into()],
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("routed", 2, &[]), 0);
    let mut errors = Vec::new();
    for partition in 0..2 {
        let leader = leader_address(&mut wire, &broker, "routed", partition);
        let (error, _) =
            produce_result(wire.call(9, produce("routed", partition, batch(&[b"x"]), 1)));
        errors.push((leader == broker.bootstrap(), error));
        let mut owner = Wire::connect(&leader);
        let (error, _) =
            produce_result(owner.call(9, produce("routed", partition, batch(&[b"x"]), 1)));
        assert_eq!(error, 0, "the owning shard accepts partition {partition}");
    }
    // Least-loaded placement puts the two partitions on different shards.
    assert!(errors.contains(&(true, 0)));
    assert!(errors.contains(&(false, 6)));
    let (error, _) = produce_result(wire.call(9, produce("nonexistent", 0, batch(&[b"x"]), 1)));
    assert_eq!(error, 3);
    broker.stop();
}

#[test]
fn hostile_frames_close_only_their_connection() {
    // Proves an oversized frame, a garbage body and an unknown API each close that connection,
    // while the broker keeps serving other clients.
    let broker = Broker::start(&["--max-request-bytes", "4096"]);
    let address = broker.bootstrap();
    let mut oversized = Wire::connect(&address);
    oversized.write_raw(&8192i32.to_be_bytes());
    assert!(oversized.is_closed());
    let mut garbage = Wire::connect(&address);
    let mut frame = 20i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[
        0, 0, 0, 9, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6,
    ]);
    garbage.write_raw(&frame);
    assert!(garbage.is_closed());
    let mut unknown = Wire::connect(&address);
    let mut frame = 10i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
    unknown.write_raw(&frame);
    assert!(unknown.is_closed());
    let mut tiny = Wire::connect(&address);
    tiny.write_raw(&[0, 0, 0, 2, 0, 18]);
    assert!(tiny.is_closed());
    let mut healthy = Wire::connect(&address);
    let Response::ApiVersions(response) =
        healthy.call(3, Request::ApiVersions(ApiVersionsRequest::default()))
    else {
        panic!("not an ApiVersions response");
    };
    assert_eq!(response.error_code, 0);
    broker.stop();
}

#[test]
fn topics_are_validated_listed_and_deleted_with_their_files() {
    // Proves CreateTopics refuses bad names, counts and duplicates with Kafka's codes, ListOffsets
    // reports earliest and latest, and DeleteTopics removes the partition directories.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("bad/name", 1, &[]), 17);
    assert_eq!(wire.create_topic("zero", 0, &[]), 37);
    assert_eq!(wire.create_topic("kept", 2, &[]), 0);
    assert_eq!(wire.create_topic("kept", 2, &[]), 36);
    assert_eq!(
        wire.create_topic("configured", 1, &[("retention.ms", "soon")]),
        40
    );
    for _ in 0..3 {
        assert_eq!(
            produce_result(wire.call(9, produce("kept", 1, batch(&[b"a", b"b"]), -1))).0,
            0
        );
    }
    let request = |timestamp| {
        Request::ListOffsets(ListOffsetsRequest {
            replica_id: -1,
            topics: vec![ListOffsetsTopic {
                name: "kept".into(),
                partitions: vec![ListOffsetsPartition {
                    partition_index: 1,
                    timestamp,
                    ..ListOffsetsPartition::default()
                }],
            }],
            ..ListOffsetsRequest::default()
        })
    };
    // The first record at or after the timestamp: the second record of the first batch.
    for (timestamp, expected) in [(-2, 0), (-1, 6), (1_700_000_000_001, 1)] {
        let Response::ListOffsets(response) = wire.call(7, request(timestamp)) else {
            panic!("not a ListOffsets response");
        };
        let partition = &response.topics[0].partitions[0];
        assert_eq!(
            (partition.error_code, partition.offset),
            (0, expected),
            "timestamp {timestamp}"
        );
    }
    assert!(broker.data_dir().join("kept-1").exists());
    let Response::DeleteTopics(response) = wire.call(
        4,
        Request::DeleteTopics(DeleteTopicsRequest {
            topic_names: vec!["kept".into(), "never".into()],
            timeout_ms: 10_000,
            ..DeleteTopicsRequest::default()
        }),
    ) else {
        panic!("not a DeleteTopics response");
    };
    assert_eq!(response.responses[0].error_code, 0);
    assert_eq!(response.responses[1].error_code, 3);
    assert!(!broker.data_dir().join("kept-0").exists());
    assert!(!broker.data_dir().join("kept-1").exists());
    // The files are closed too, so their space is freed while the broker runs.
    let open = open_files_under(&broker.data_dir().join("kept-1"));
    assert!(open.is_empty(), "deleted files still open: {open:?}");
    broker.stop();
}

#[test]
fn find_coordinator_names_a_shard_for_each_group() {
    // Proves FindCoordinator answers groups with a broker node of this cluster (one key before
    // v4, many from v4), and refuses transaction coordinators.
    let broker = Broker::start_with(BrokerConfig {
        cores: 2,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    let addresses: Vec<String> = broker
        .listeners()
        .iter()
        .map(|l| l.address.clone())
        .collect();
    let Response::FindCoordinator(response) = wire.call(
        3,
        Request::FindCoordinator(FindCoordinatorRequest {
            key: "orders".into(),
            key_type: 0,
            ..FindCoordinatorRequest::default()
        }),
    ) else {
        panic!("not a FindCoordinator response");
    };
    assert_eq!(response.error_code, 0);
    let address = format!("{}:{}", response.host, response.port);
    assert_eq!(addresses[response.node_id as usize], address);
    let Response::FindCoordinator(response) = wire.call(
        4,
        Request::FindCoordinator(FindCoordinatorRequest {
            key_type: 0,
            coordinator_keys: (0..8).map(|i| format!("group-{i}")).collect(),
            ..FindCoordinatorRequest::default()
        }),
    ) else {
        panic!("not a FindCoordinator response");
    };
    assert_eq!(response.coordinators.len(), 8);
    assert!(response.coordinators.iter().all(|c| c.error_code == 0));
    let nodes: std::collections::HashSet<i32> =
        response.coordinators.iter().map(|c| c.node_id).collect();
    assert_eq!(nodes.len(), 2, "groups spread over both shards");
    let Response::FindCoordinator(response) = wire.call(
        4,
        Request::FindCoordinator(FindCoordinatorRequest {
            key_type: 1,
            coordinator_keys: vec!["txn".into()],
            ..FindCoordinatorRequest::default()
        }),
    ) else {
        panic!("not a FindCoordinator response");
    };
    assert_ne!(response.coordinators[0].error_code, 0);
    broker.stop();
}

/// Files under `dir` that any process on this machine holds open (from /proc/*/fd).
fn open_files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut open = Vec::new();
    for process in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && target.starts_with(dir)
            {
                open.push(target);
            }
        }
    }
    open
}

/// ListOffsets for one partition at `timestamp` (-2 earliest, -1 latest): (error code, offset).
fn list_offset(wire: &mut Wire, topic: &str, partition: i32, timestamp: i64) -> (i16, i64) {
    wire.list_offset_result(topic, partition, timestamp)
}

/// Fetch v11 of one partition: (error code, high watermark, log start offset).
fn fetch_result(wire: &mut Wire, topic: &str, partition: i32, offset: i64) -> (i16, i64, i64) {
    let Response::Fetch(response) = wire.call(11, fetch(topic, partition, offset, 100)) else {
        panic!("not a fetch response");
    };
    let answer = &response.responses[0].partitions[0];
    (
        answer.error_code,
        answer.high_watermark,
        answer.log_start_offset,
    )
}

const KAFKA_STORAGE_ERROR: i16 = 56;

#[test]
fn a_corrupt_partition_is_offline_with_kafka_storage_error_while_others_serve() {
    // Proves bit rot found at start-up takes only its partition offline: after a SIGKILL and a
    // bit flipped mid-segment (with megabytes of valid data after it), the broker starts;
    // Metadata reports that partition with KAFKA_STORAGE_ERROR and its replica offline; Produce,
    // Fetch and ListOffsets on it answer KAFKA_STORAGE_ERROR; the broker log names the file and
    // the offset; the file is left untouched; the other partition serves as before.
    let mut broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("rot", 2, &[]), 0);
    let value = vec![7u8; 100_000];
    for _ in 0..30 {
        let response = wire.call(9, produce("rot", 0, batch(&[&value]), -1));
        assert_eq!(produce_result(response).0, 0);
    }
    for _ in 0..3 {
        let response = wire.call(9, produce("rot", 1, batch(&[b"fine"]), -1));
        assert_eq!(produce_result(response).0, 0);
    }
    broker.kill9();
    let log_path = broker
        .data_dir()
        .join("rot-0")
        .join("00000000000000000000.log");
    let mut bytes = std::fs::read(&log_path).unwrap();
    let batch_bytes = i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize + 12;
    bytes[5 * batch_bytes + batch_bytes / 2] ^= 0x04;
    std::fs::write(&log_path, &bytes).unwrap();
    broker.start_again();

    let mut wire = Wire::connect(&broker.bootstrap());
    let request = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some("rot".into()),
            ..MetadataRequestTopic::default()
        }]),
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    });
    let Response::Metadata(metadata) = wire.call(12, request) else {
        panic!("not a metadata response");
    };
    let partitions = &metadata.topics[0].partitions;
    assert_eq!(partitions[0].error_code, KAFKA_STORAGE_ERROR);
    assert_eq!(partitions[0].offline_replicas, vec![0]);
    assert_eq!(partitions[1].error_code, 0);
    assert!(partitions[1].offline_replicas.is_empty());

    let response = wire.call(9, produce("rot", 0, batch(&[b"lost?"]), -1));
    assert_eq!(produce_result(response).0, KAFKA_STORAGE_ERROR);
    assert_eq!(fetch_result(&mut wire, "rot", 0, 0).0, KAFKA_STORAGE_ERROR);
    for timestamp in [-2, -1] {
        assert_eq!(
            list_offset(&mut wire, "rot", 0, timestamp).0,
            KAFKA_STORAGE_ERROR
        );
    }
    let response = wire.call(9, produce("rot", 1, batch(&[b"still fine"]), -1));
    assert_eq!(produce_result(response), (0, 3));
    assert_eq!(fetch_result(&mut wire, "rot", 1, 0), (0, 4, 0));

    let log = broker.log_tail(400);
    assert!(
        log.contains("corrupt log at offset 5 ") && log.contains("rot-0"),
        "{log}"
    );
    assert_eq!(std::fs::read(&log_path).unwrap(), bytes, "left untouched");
    broker.stop();
}

#[test]
fn retention_moves_the_log_start_so_fetch_below_it_is_out_of_range() {
    // Proves the periodic retention task: with small segments and retention.bytes, old segments
    // are deleted from disk while the partition serves, ListOffsets earliest follows the log
    // start offset, Fetch below it answers OFFSET_OUT_OF_RANGE and Fetch at it returns data.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        args: vec!["--log-retention-check-interval-ms".into(), "100".into()],
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    let configs = [("segment.bytes", "16384"), ("retention.bytes", "40000")];
    assert_eq!(wire.create_topic("aging", 1, &configs), 0);
    let value = vec![3u8; 1000];
    for _ in 0..200 {
        let response = wire.call(9, produce("aging", 0, batch(&[&value]), 1));
        assert_eq!(produce_result(response).0, 0);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let earliest = loop {
        let (code, earliest) = list_offset(&mut wire, "aging", 0, -2);
        assert_eq!(code, 0);
        if earliest > 100 {
            break earliest;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention never ran: earliest {earliest}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(list_offset(&mut wire, "aging", 0, -1), (0, 200));
    let segments = std::fs::read_dir(broker.data_dir().join("aging-0"))
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".log")
        })
        .count();
    assert!(segments <= 5, "{segments} segment files left");
    assert_eq!(fetch_result(&mut wire, "aging", 0, 0).0, 1);
    assert_eq!(fetch_result(&mut wire, "aging", 0, earliest - 1).0, 1);
    let (code, high_watermark, log_start) = fetch_result(&mut wire, "aging", 0, earliest);
    assert_eq!((code, high_watermark), (0, 200));
    assert!(log_start >= earliest);
    broker.stop();
}
