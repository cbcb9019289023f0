//! Kafka compatibility gaps closed for old and admin clients, over raw frames: the request
//! versions Kafka 3.9 accepts (KIP-896 removed them only in 4.0), ListOffsets' max-timestamp and
//! earliest-local markers, authorized operations without an authorizer, the legacy AlterConfigs,
//! and offline partitions seen alike by every shard.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use spate::protocol::messages::alter_configs::{
    AlterConfigsRequest, AlterConfigsResource, AlterConfigsResourceResponse, AlterableConfig,
};
use spate::protocol::messages::api_versions::ApiVersionsRequest;
use spate::protocol::messages::create_topics::{CreatableTopic, CreateTopicsRequest};
use spate::protocol::messages::delete_topics::DeleteTopicsRequest;
use spate::protocol::messages::describe_cluster::DescribeClusterRequest;
use spate::protocol::messages::describe_configs::{
    DescribeConfigsRequest, DescribeConfigsResource, DescribeConfigsResult,
};
use spate::protocol::messages::fetch::{FetchPartition, FetchRequest, FetchTopic};
use spate::protocol::messages::list_offsets::{
    ListOffsetsPartition, ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsTopic,
};
use spate::protocol::messages::metadata::{
    MetadataRequest, MetadataRequestTopic, MetadataResponse,
};
use spate::protocol::messages::offset_commit::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use spate::protocol::messages::offset_fetch::{OffsetFetchRequest, OffsetFetchRequestTopic};
use spate::protocol::messages::offset_for_leader_epoch::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use spate::protocol::records::{BatchBuilder, Record};
use spate::protocol::{ApiKey, Request, Response};

use common::wire::{Wire, produce};
use common::{Broker, BrokerConfig};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const POLICY_VIOLATION: i16 = 44;
const KAFKA_STORAGE_ERROR: i16 = 56;
const MISMATCHED_ENDPOINT_TYPE: i16 = 114;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Every operation a topic supports (READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS), as Kafka without an authorizer reports it.
const TOPIC_OPERATIONS: i32 =
    1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 10 | 1 << 11;
/// Every operation the cluster supports (CREATE, ALTER, DESCRIBE, CLUSTER_ACTION,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE).
const CLUSTER_OPERATIONS: i32 = 1 << 5 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 12;

const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// One uncompressed batch whose records have these timestamp deltas.
fn batch(timestamp_deltas: &[i64], value: &[u8]) -> Bytes {
    let mut builder = BatchBuilder::new(BASE_TIMESTAMP_MS);
    for delta in timestamp_deltas {
        builder.push(&Record {
            timestamp_delta: *delta,
            key: None,
            value: Some(value),
            headers: &[],
        });
    }
    builder.finish()
}

fn produce_ok(wire: &mut Wire, topic: &str, partition: i32, records: Bytes) {
    let Response::Produce(response) = wire.call(9, produce(topic, partition, records, 1)) else {
        panic!("not a produce response");
    };
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
}

fn list_offsets(
    wire: &mut Wire,
    version: i16,
    topic: &str,
    timestamp: i64,
    max_num_offsets: i32,
) -> ListOffsetsPartitionResponse {
    let request = Request::ListOffsets(ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: 0,
                timestamp,
                max_num_offsets,
                ..ListOffsetsPartition::default()
            }],
        }],
        ..ListOffsetsRequest::default()
    });
    let Response::ListOffsets(mut response) = wire.call(version, request) else {
        panic!("not a ListOffsets response");
    };
    response.topics[0].partitions.remove(0)
}

fn metadata(wire: &mut Wire, version: i16, request: MetadataRequest) -> MetadataResponse {
    let Response::Metadata(response) = wire.call(version, Request::Metadata(request)) else {
        panic!("not a Metadata response");
    };
    response
}

fn topics_request(names: &[&str]) -> MetadataRequest {
    MetadataRequest {
        topics: Some(
            names
                .iter()
                .map(|name| MetadataRequestTopic {
                    name: Some((*name).into()),
                    ..MetadataRequestTopic::default()
                })
                .collect(),
        ),
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    }
}

#[test]
fn every_api_is_advertised_from_kafka_3_9s_minimum() {
    // Proves ApiVersions lists every API from version 0, as Kafka 3.9 does, except Fetch (from
    // 4, where RecordBatch v2 starts, as Kafka 4), and lists the legacy AlterConfigs 0-2.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    let Response::ApiVersions(response) =
        wire.call(3, Request::ApiVersions(ApiVersionsRequest::default()))
    else {
        panic!("not an ApiVersions response");
    };
    for api in &response.api_keys {
        let min = if api.api_key == ApiKey::Fetch.code() {
            4
        } else {
            0
        };
        assert_eq!(api.min_version, min, "api {}", api.api_key);
    }
    let alter = response.api_keys.iter().find(|api| api.api_key == 33);
    let alter = alter.expect("AlterConfigs is advertised");
    assert_eq!((alter.min_version, alter.max_version), (0, 2));
    broker.stop();
}

#[test]
fn produce_v0_to_v2_and_fetch_v0_to_v3_get_unsupported_version_not_a_close() {
    // Proves the versions that carry magic 0/1 message sets are answered UNSUPPORTED_VERSION per
    // partition at the request's own version, nothing is appended, acks=0 gets no answer, and
    // the connection keeps serving.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("magic", 1, &[]), 0);
    for version in 0..=2 {
        let Response::Produce(response) =
            wire.call(version, produce("magic", 0, batch(&[0], b"old"), 1))
        else {
            panic!("not a produce response");
        };
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(
            partition.error_code, UNSUPPORTED_VERSION,
            "produce v{version}"
        );
        assert_eq!(partition.base_offset, -1);
    }
    // acks=0 is never answered: the next answer on the connection is the ApiVersions after it.
    wire.send(0, produce("magic", 0, batch(&[0], b"old"), 0));
    let Response::ApiVersions(response) =
        wire.call(0, Request::ApiVersions(ApiVersionsRequest::default()))
    else {
        panic!("not an ApiVersions response");
    };
    assert_eq!(response.error_code, 0);
    for version in 0..=3 {
        let request = Request::Fetch(FetchRequest {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                topic: "magic".into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    partition_max_bytes: 1 << 20,
                    ..FetchPartition::default()
                }],
            }],
            ..FetchRequest::default()
        });
        let Response::Fetch(response) = wire.call(version, request) else {
            panic!("not a fetch response");
        };
        let partition = &response.responses[0].partitions[0];
        assert_eq!(
            partition.error_code, UNSUPPORTED_VERSION,
            "fetch v{version}"
        );
        assert!(partition.records.as_ref().is_some_and(|r| r.is_empty()));
    }
    assert_eq!(
        list_offsets(&mut wire, 1, "magic", -1, 1).offset,
        0,
        "nothing appended"
    );
    broker.stop();
}

#[test]
fn list_offsets_v0_answers_old_style_offsets() {
    // Proves ListOffsets v0: latest and earliest as one-element arrays, more offsets (segment
    // starts, newest first) when max_num_offsets allows, and UNSUPPORTED_VERSION for markers v0
    // does not know.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("legacy", 1, &[]), 0);
    produce_ok(&mut wire, "legacy", 0, batch(&[0, 1, 2], b"v"));
    let latest = list_offsets(&mut wire, 0, "legacy", -1, 1);
    assert_eq!((latest.error_code, latest.old_style_offsets), (0, vec![3]));
    let earliest = list_offsets(&mut wire, 0, "legacy", -2, 1);
    assert_eq!(
        (earliest.error_code, earliest.old_style_offsets),
        (0, vec![0])
    );
    let several = list_offsets(&mut wire, 0, "legacy", -1, 10);
    assert_eq!(several.old_style_offsets, vec![3, 0]);
    let max_timestamp = list_offsets(&mut wire, 0, "legacy", -3, 1);
    assert_eq!(max_timestamp.error_code, UNSUPPORTED_VERSION);
    assert!(max_timestamp.old_style_offsets.is_empty());
    broker.stop();
}

#[test]
fn list_offsets_answers_max_timestamp_and_earliest_local() {
    // Proves v7's MAX_TIMESTAMP (-3) finds the first record holding the largest timestamp (not
    // the last record) with that timestamp, and v8's EARLIEST_LOCAL (-4) is the log start; an
    // empty partition answers -1 for both fields.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("clock", 1, &[]), 0);
    let empty = list_offsets(&mut wire, 7, "clock", -3, 1);
    assert_eq!(
        (empty.error_code, empty.timestamp, empty.offset),
        (0, -1, -1)
    );
    produce_ok(&mut wire, "clock", 0, batch(&[0, 90, 10], b"a"));
    produce_ok(&mut wire, "clock", 0, batch(&[20, 30], b"b"));
    for version in [7, 8] {
        let max = list_offsets(&mut wire, version, "clock", -3, 1);
        assert_eq!(max.error_code, 0, "v{version}");
        assert_eq!((max.timestamp, max.offset), (BASE_TIMESTAMP_MS + 90, 1));
    }
    let local = list_offsets(&mut wire, 8, "clock", -4, 1);
    assert_eq!((local.error_code, local.offset), (0, 0));
    broker.stop();
}

#[test]
fn metadata_reports_every_operation_when_asked() {
    // Proves Metadata v8+ with include_*_authorized_operations answers the full bitfield of
    // operations per resource type (what Kafka without an authorizer answers), for known and
    // unknown topics, and the "not requested" marker otherwise.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("ops", 1, &[]), 0);
    for version in [8, 10] {
        let response = metadata(
            &mut wire,
            version,
            MetadataRequest {
                include_cluster_authorized_operations: true,
                include_topic_authorized_operations: true,
                ..topics_request(&["ops", "missing"])
            },
        );
        assert_eq!(response.cluster_authorized_operations, CLUSTER_OPERATIONS);
        for topic in &response.topics {
            assert_eq!(
                topic.topic_authorized_operations, TOPIC_OPERATIONS,
                "v{version}"
            );
        }
        let response = metadata(&mut wire, version, topics_request(&["ops"]));
        assert_eq!(response.cluster_authorized_operations, i32::MIN);
        assert_eq!(response.topics[0].topic_authorized_operations, i32::MIN);
    }
    let all_topics = MetadataRequest {
        topics: None,
        include_topic_authorized_operations: true,
        ..MetadataRequest::default()
    };
    let response = metadata(&mut wire, 12, all_topics);
    assert_eq!(
        response.topics[0].topic_authorized_operations,
        TOPIC_OPERATIONS
    );
    broker.stop();
}

#[test]
fn describe_cluster_lists_every_node_and_every_cluster_operation() {
    // Proves DescribeCluster (key 60) answers the nodes, cluster id and controller Metadata
    // gives, the full cluster operations bitfield when asked (the marker otherwise), and
    // refuses a controller endpoint type as Kafka does.
    let broker = Broker::start_with(BrokerConfig {
        cores: 2,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    let from_metadata = metadata(&mut wire, 12, topics_request(&[]));
    for (version, include) in [(0, true), (1, true), (1, false)] {
        let request = Request::DescribeCluster(DescribeClusterRequest {
            include_cluster_authorized_operations: include,
            endpoint_type: 1,
        });
        let Response::DescribeCluster(response) = wire.call(version, request) else {
            panic!("not a DescribeCluster response");
        };
        assert_eq!(response.error_code, 0);
        assert_eq!(Some(response.cluster_id), from_metadata.cluster_id);
        assert_eq!(response.controller_id, from_metadata.controller_id);
        let nodes: Vec<(i32, i32)> = response
            .brokers
            .iter()
            .map(|node| (node.broker_id, node.port))
            .collect();
        let expected: Vec<(i32, i32)> = from_metadata
            .brokers
            .iter()
            .map(|node| (node.node_id, node.port))
            .collect();
        assert_eq!(nodes, expected);
        let operations = if include {
            CLUSTER_OPERATIONS
        } else {
            i32::MIN
        };
        assert_eq!(response.cluster_authorized_operations, operations);
    }
    let request = Request::DescribeCluster(DescribeClusterRequest {
        include_cluster_authorized_operations: false,
        endpoint_type: 2,
    });
    let Response::DescribeCluster(response) = wire.call(1, request) else {
        panic!("not a DescribeCluster response");
    };
    assert_eq!(response.error_code, MISMATCHED_ENDPOINT_TYPE);
    broker.stop();
}

/// Commits one offset (with a commit timestamp, which only v1 carries); the partition's error.
fn commit(wire: &mut Wire, version: i16, topic: &str, offset: i64) -> i16 {
    let request = Request::OffsetCommit(OffsetCommitRequest {
        group_id: "old-group".into(),
        topics: vec![OffsetCommitRequestTopic {
            name: topic.into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: offset,
                commit_timestamp: BASE_TIMESTAMP_MS,
                committed_metadata: Some("m".into()),
                ..OffsetCommitRequestPartition::default()
            }],
        }],
        ..OffsetCommitRequest::default()
    });
    let Response::OffsetCommit(response) = wire.call(version, request) else {
        panic!("not an OffsetCommit response");
    };
    response.topics[0].partitions[0].error_code
}

/// The committed (offset, error) of partition 0 of `topic` in OffsetFetch at `version`.
fn fetch_offset(wire: &mut Wire, version: i16, topic: &str) -> (i64, i16) {
    let request = Request::OffsetFetch(OffsetFetchRequest {
        group_id: "old-group".into(),
        topics: Some(vec![OffsetFetchRequestTopic {
            name: topic.into(),
            partition_indexes: vec![0],
        }]),
        ..OffsetFetchRequest::default()
    });
    let Response::OffsetFetch(response) = wire.call(version, request) else {
        panic!("not an OffsetFetch response");
    };
    let partition = &response.topics[0].partitions[0];
    (partition.committed_offset, partition.error_code)
}

#[test]
fn old_group_offset_versions_commit_or_refuse_as_kafka_3_9() {
    // Proves OffsetCommit v1 (Sarama's) commits to the coordinator and OffsetFetch v1 reads it
    // back, while v0 of both (ZooKeeper offsets in Kafka 3.9) get UNSUPPORTED_VERSION per
    // partition, or UNKNOWN_TOPIC_OR_PARTITION when no partition exists, as a ZooKeeper-less
    // 3.9 broker answers; nothing v0 sent is stored.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("commits", 1, &[]), 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match commit(&mut wire, 1, "commits", 42) {
            0 => break,
            COORDINATOR_LOAD_IN_PROGRESS if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => panic!("OffsetCommit v1 answered {other}"),
        }
    }
    assert_eq!(fetch_offset(&mut wire, 1, "commits"), (42, 0));
    assert_eq!(commit(&mut wire, 0, "commits", 7), UNSUPPORTED_VERSION);
    assert_eq!(
        commit(&mut wire, 0, "nowhere", 7),
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        fetch_offset(&mut wire, 0, "commits"),
        (-1, UNSUPPORTED_VERSION)
    );
    assert_eq!(
        fetch_offset(&mut wire, 3, "commits"),
        (42, 0),
        "v0 stored nothing"
    );
    broker.stop();
}

#[test]
fn old_admin_versions_create_delete_and_describe() {
    // Proves CreateTopics v0-1, DeleteTopics v0, OffsetForLeaderEpoch v0-1 and DescribeConfigs
    // v0 (is_default) are served.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    for (version, name, validate_only) in [(0, "made-v0", false), (1, "checked-v1", true)] {
        let request = Request::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                num_partitions: 1,
                replication_factor: 1,
                ..CreatableTopic::default()
            }],
            timeout_ms: 10_000,
            validate_only,
        });
        let Response::CreateTopics(response) = wire.call(version, request) else {
            panic!("not a CreateTopics response");
        };
        assert_eq!(response.topics[0].error_code, 0, "CreateTopics v{version}");
    }
    let listed = metadata(&mut wire, 4, topics_request(&["made-v0", "checked-v1"]));
    assert_eq!(listed.topics[0].error_code, 0);
    assert_eq!(listed.topics[1].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    produce_ok(&mut wire, "made-v0", 0, batch(&[0, 1], b"e"));
    for version in [0, 1] {
        let request = Request::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest {
            topics: vec![OffsetForLeaderTopic {
                topic: "made-v0".into(),
                partitions: vec![OffsetForLeaderPartition {
                    partition: 0,
                    leader_epoch: 0,
                    ..OffsetForLeaderPartition::default()
                }],
            }],
            ..OffsetForLeaderEpochRequest::default()
        });
        let Response::OffsetForLeaderEpoch(response) = wire.call(version, request) else {
            panic!("not an OffsetForLeaderEpoch response");
        };
        let partition = &response.topics[0].partitions[0];
        assert_eq!((partition.error_code, partition.end_offset), (0, 2));
    }
    let described = describe(&mut wire, 0, "made-v0");
    assert_eq!(described.error_code, 0);
    let retention = described
        .configs
        .iter()
        .find(|config| config.name == "retention.ms")
        .expect("retention.ms is described");
    assert!(retention.is_default);
    let request = Request::DeleteTopics(DeleteTopicsRequest {
        topic_names: vec!["made-v0".into()],
        timeout_ms: 10_000,
        ..DeleteTopicsRequest::default()
    });
    let Response::DeleteTopics(response) = wire.call(0, request) else {
        panic!("not a DeleteTopics response");
    };
    assert_eq!(response.responses[0].error_code, 0);
    let listed = metadata(&mut wire, 4, topics_request(&["made-v0"]));
    assert_eq!(listed.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    broker.stop();
}

fn describe(wire: &mut Wire, version: i16, topic: &str) -> DescribeConfigsResult {
    let request = Request::DescribeConfigs(DescribeConfigsRequest {
        resources: vec![DescribeConfigsResource {
            resource_type: RESOURCE_TOPIC,
            resource_name: topic.into(),
            configuration_keys: None,
        }],
        ..DescribeConfigsRequest::default()
    });
    let Response::DescribeConfigs(mut response) = wire.call(version, request) else {
        panic!("not a DescribeConfigs response");
    };
    response.results.remove(0)
}

/// (value, source) of a topic config in DescribeConfigs v4.
fn config(wire: &mut Wire, topic: &str, name: &str) -> (Option<String>, i8) {
    let described = describe(wire, 4, topic);
    let entry = described.configs.iter().find(|config| config.name == name);
    let entry = entry.unwrap_or_else(|| panic!("{name} is not described"));
    (entry.value.clone(), entry.config_source)
}

/// One AlterConfigs resource: its type, its name, and its configs' names and values.
type LegacyResource<'a> = (i8, &'a str, &'a [(&'a str, Option<&'a str>)]);

fn alter_configs(
    wire: &mut Wire,
    version: i16,
    resources: &[LegacyResource<'_>],
    validate_only: bool,
) -> Vec<AlterConfigsResourceResponse> {
    let request = Request::AlterConfigs(AlterConfigsRequest {
        resources: resources
            .iter()
            .map(|(resource_type, name, configs)| AlterConfigsResource {
                resource_type: *resource_type,
                resource_name: (*name).into(),
                configs: configs
                    .iter()
                    .map(|(name, value)| AlterableConfig {
                        name: (*name).into(),
                        value: value.map(str::to_owned),
                    })
                    .collect(),
            })
            .collect(),
        validate_only,
    });
    let Response::AlterConfigs(response) = wire.call(version, request) else {
        panic!("not an AlterConfigs response");
    };
    response.responses
}

const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

#[test]
fn legacy_alter_configs_replaces_a_topics_configs() {
    // Proves AlterConfigs (key 33) replaces the whole set of a topic's configs: what it names is
    // set, what it leaves out or nulls returns to the default; validate_only changes nothing;
    // broker resources, unknown topics, unknown configs, bad values and resources named twice
    // get their error codes; every version (0-2, 2 flexible) is served.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    let overrides = [("retention.ms", "1000"), ("segment.bytes", "1048576")];
    assert_eq!(wire.create_topic("whole", 1, &overrides), 0);
    let responses = alter_configs(
        &mut wire,
        0,
        &[(
            RESOURCE_TOPIC,
            "whole",
            &[("retention.bytes", Some("5000")), ("segment.bytes", None)],
        )],
        false,
    );
    assert_eq!(responses.len(), 1);
    assert_eq!(
        (responses[0].error_code, responses[0].resource_name.as_str()),
        (0, "whole")
    );
    assert_eq!(
        config(&mut wire, "whole", "retention.bytes"),
        (Some("5000".into()), SOURCE_DYNAMIC_TOPIC)
    );
    assert_eq!(config(&mut wire, "whole", "retention.ms").1, SOURCE_DEFAULT);
    assert_eq!(
        config(&mut wire, "whole", "segment.bytes").1,
        SOURCE_DEFAULT
    );

    let checked = alter_configs(
        &mut wire,
        1,
        &[(RESOURCE_TOPIC, "whole", &[("retention.ms", Some("7"))])],
        true,
    );
    assert_eq!(checked[0].error_code, 0);
    assert_eq!(
        config(&mut wire, "whole", "retention.bytes"),
        (Some("5000".into()), SOURCE_DYNAMIC_TOPIC),
        "validate_only changed nothing"
    );

    let refused = alter_configs(
        &mut wire,
        2,
        &[
            (RESOURCE_BROKER, "0", &[("log.retention.ms", Some("1"))]),
            (RESOURCE_TOPIC, "missing", &[("retention.ms", Some("1"))]),
            (RESOURCE_TOPIC, "whole", &[("no.such.config", Some("1"))]),
        ],
        false,
    );
    let code = |name: &str| {
        refused
            .iter()
            .find(|response| response.resource_name == name)
            .map(|response| response.error_code)
    };
    assert_eq!(code("0"), Some(POLICY_VIOLATION));
    assert_eq!(code("missing"), Some(UNKNOWN_TOPIC_OR_PARTITION));
    assert_eq!(code("whole"), Some(INVALID_CONFIG));
    let bad_value = alter_configs(
        &mut wire,
        2,
        &[(RESOURCE_TOPIC, "whole", &[("retention.ms", Some("soon"))])],
        false,
    );
    assert_eq!(bad_value[0].error_code, INVALID_CONFIG);
    let twice = alter_configs(
        &mut wire,
        2,
        &[
            (RESOURCE_TOPIC, "whole", &[("retention.ms", Some("5"))]),
            (RESOURCE_TOPIC, "whole", &[("retention.ms", Some("6"))]),
        ],
        false,
    );
    assert!(
        twice
            .iter()
            .all(|response| response.error_code == INVALID_REQUEST)
    );
    assert_eq!(
        config(&mut wire, "whole", "retention.bytes"),
        (Some("5000".into()), SOURCE_DYNAMIC_TOPIC),
        "refused requests changed nothing"
    );
    broker.stop();
}

#[test]
fn an_offline_partition_is_offline_in_every_shards_metadata() {
    // Proves a partition found corrupt at start-up on shard 1 is reported offline by every shard:
    // Metadata from shard 0 (which does not own it) lists it with KAFKA_STORAGE_ERROR and its
    // replica offline, exactly as its owner does, while the other partition stays healthy.
    let mut broker = Broker::start_with(BrokerConfig {
        cores: 2,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("spread", 2, &[]), 0);
    let placed = metadata(&mut wire, 12, topics_request(&["spread"]));
    let partitions = &placed.topics[0].partitions;
    let rotten = partitions
        .iter()
        .find(|partition| partition.leader_id == 1)
        .expect("a partition on shard 1")
        .partition_index;
    let mut owner = Wire::connect(&broker.listeners()[1].address);
    let value = vec![7u8; 100_000];
    for _ in 0..30 {
        produce_ok(&mut owner, "spread", rotten, batch(&[0], &value));
    }
    broker.kill9();
    let log_path = broker
        .data_dir()
        .join(format!("spread-{rotten}"))
        .join("00000000000000000000.log");
    let mut bytes = std::fs::read(&log_path).unwrap();
    let batch_bytes = i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize + 12;
    bytes[5 * batch_bytes + batch_bytes / 2] ^= 0x04;
    std::fs::write(&log_path, &bytes).unwrap();
    broker.start_again();

    for listener in broker.listeners() {
        let mut wire = Wire::connect(&listener.address);
        let response = metadata(&mut wire, 12, topics_request(&["spread"]));
        for partition in &response.topics[0].partitions {
            let offline = partition.partition_index == rotten;
            let expected = if offline {
                (KAFKA_STORAGE_ERROR, vec![1])
            } else {
                (0, vec![])
            };
            assert_eq!(
                (partition.error_code, partition.offline_replicas.clone()),
                expected,
                "node {} on partition {}",
                listener.node_id,
                partition.partition_index
            );
        }
    }
    broker.stop();
}
