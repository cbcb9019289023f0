//! The admin APIs at the wire level: DescribeConfigs, IncrementalAlterConfigs, CreatePartitions
//! and DeleteRecords as raw Kafka frames built with Spate's own codec, against a real
//! `spate serve`. These tests cover each error code, the config sources, that configs survive a
//! restart, and that an altered config changes how produce behaves.

mod common;

use bytes::Bytes;
use spate::protocol::messages::api_versions::ApiVersionsRequest;
use spate::protocol::messages::create_partitions::{
    CreatePartitionsAssignment, CreatePartitionsRequest, CreatePartitionsTopic,
};
use spate::protocol::messages::create_topics::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use spate::protocol::messages::delete_records::{
    DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
};
use spate::protocol::messages::describe_configs::{
    DescribeConfigsRequest, DescribeConfigsResource, DescribeConfigsResourceResult,
    DescribeConfigsResult,
};
use spate::protocol::messages::fetch::{FetchPartition, FetchRequest, FetchTopic};
use spate::protocol::messages::incremental_alter_configs::{
    AlterConfigsResource, AlterConfigsResourceResponse, AlterableConfig,
    IncrementalAlterConfigsRequest,
};
use spate::protocol::messages::metadata::{MetadataRequest, MetadataRequestTopic};
use spate::protocol::{Request, Response};

use common::wire::{self, Wire, batch};
use common::{Broker, BrokerConfig};

const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const BROKER: i8 = 4;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const POLICY_VIOLATION: i16 = 44;

impl Wire {
    fn describe(
        &mut self,
        version: i16,
        resource_type: i8,
        name: &str,
        keys: Option<&[&str]>,
    ) -> DescribeConfigsResult {
        let request = Request::DescribeConfigs(DescribeConfigsRequest {
            resources: vec![DescribeConfigsResource {
                resource_type,
                resource_name: name.into(),
                configuration_keys: keys.map(|keys| keys.iter().map(|k| (*k).into()).collect()),
            }],
            include_synonyms: true,
            include_documentation: true,
        });
        let Response::DescribeConfigs(mut response) = self.call(version, request) else {
            panic!("not a DescribeConfigs response");
        };
        assert_eq!(response.results.len(), 1);
        response.results.remove(0)
    }

    fn alter(
        &mut self,
        version: i16,
        resource_type: i8,
        name: &str,
        configs: &[(&str, i8, Option<&str>)],
        validate_only: bool,
    ) -> AlterConfigsResourceResponse {
        let request = Request::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
            resources: vec![AlterConfigsResource {
                resource_type,
                resource_name: name.into(),
                configs: configs
                    .iter()
                    .map(|(name, operation, value)| AlterableConfig {
                        name: (*name).into(),
                        config_operation: *operation,
                        value: value.map(str::to_owned),
                    })
                    .collect(),
            }],
            validate_only,
        });
        let Response::IncrementalAlterConfigs(mut response) = self.call(version, request) else {
            panic!("not an IncrementalAlterConfigs response");
        };
        assert_eq!(response.responses.len(), 1);
        response.responses.remove(0)
    }

    fn create_partitions(
        &mut self,
        topic: &str,
        count: i32,
        assignments: Option<Vec<i32>>,
        validate_only: bool,
    ) -> (i16, Option<String>) {
        let request = Request::CreatePartitions(CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic {
                name: topic.into(),
                count,
                assignments: assignments.map(|brokers| {
                    vec![CreatePartitionsAssignment {
                        broker_ids: brokers,
                    }]
                }),
            }],
            timeout_ms: 10_000,
            validate_only,
        });
        let Response::CreatePartitions(mut response) = self.call(3, request) else {
            panic!("not a CreatePartitions response");
        };
        let result = response.results.remove(0);
        (result.error_code, result.error_message)
    }

    /// (error code, low watermark) of a DeleteRecords on one partition.
    fn delete_records(&mut self, topic: &str, partition: i32, offset: i64) -> (i16, i64) {
        let request = Request::DeleteRecords(DeleteRecordsRequest {
            topics: vec![DeleteRecordsTopic {
                name: topic.into(),
                partitions: vec![DeleteRecordsPartition {
                    partition_index: partition,
                    offset,
                }],
            }],
            timeout_ms: 10_000,
        });
        let Response::DeleteRecords(response) = self.call(2, request) else {
            panic!("not a DeleteRecords response");
        };
        let result = &response.topics[0].partitions[0];
        (result.error_code, result.low_watermark)
    }

    /// The leader node of each partition of `topic`.
    fn leaders(&mut self, topic: &str) -> Vec<i32> {
        let request = Request::Metadata(MetadataRequest {
            topics: Some(vec![MetadataRequestTopic {
                name: Some(topic.into()),
                ..MetadataRequestTopic::default()
            }]),
            allow_auto_topic_creation: false,
            ..MetadataRequest::default()
        });
        let Response::Metadata(metadata) = self.call(12, request) else {
            panic!("not a metadata response");
        };
        metadata.topics[0]
            .partitions
            .iter()
            .map(|partition| partition.leader_id)
            .collect()
    }

    /// (error code, base offset) of producing `records` with acks=1.
    fn produce(&mut self, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
        let request = wire::produce(topic, partition, records, 1);
        let Response::Produce(response) = self.call(9, request) else {
            panic!("not a produce response");
        };
        let partition = &response.responses[0].partition_responses[0];
        (partition.error_code, partition.base_offset)
    }

    /// The record bytes fetched from `offset`.
    fn fetch(&mut self, topic: &str, partition: i32, offset: i64) -> Bytes {
        let request = Request::Fetch(FetchRequest {
            max_wait_ms: 100,
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
        });
        let Response::Fetch(response) = self.call(12, request) else {
            panic!("not a fetch response");
        };
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0, "fetch error");
        partition
            .records
            .as_ref()
            .map(|records| Bytes::from(records.0.concat()))
            .unwrap_or_default()
    }

    /// The earliest offset of a partition (ListOffsets -2).
    fn log_start_offset(&mut self, topic: &str, partition: i32) -> i64 {
        self.list_offset(topic, partition, -2)
    }
}

fn entry<'a>(result: &'a DescribeConfigsResult, name: &str) -> &'a DescribeConfigsResourceResult {
    result
        .configs
        .iter()
        .find(|config| config.name == name)
        .unwrap_or_else(|| panic!("no {name} in {result:?}"))
}

fn value(result: &DescribeConfigsResult, name: &str) -> String {
    entry(result, name).value.clone().unwrap_or_default()
}

#[test]
fn admin_apis_are_advertised() {
    // Proves ApiVersions lists DeleteRecords, DescribeConfigs, CreatePartitions and
    // IncrementalAlterConfigs with the versions the codec declares.
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
    for (key, min, max) in [(21, 0, 2), (32, 0, 4), (33, 0, 2), (37, 0, 3), (44, 0, 1)] {
        let api = response.api_keys.iter().find(|k| k.api_key == key);
        let api = api.unwrap_or_else(|| panic!("api {key} is not advertised"));
        assert_eq!((api.min_version, api.max_version), (min, max), "api {key}");
    }
    broker.stop();
}

#[test]
fn describe_configs_reports_values_sources_and_errors() {
    // Proves a topic's own values are DYNAMIC_TOPIC_CONFIG, a flag-changed default is
    // STATIC_BROKER_CONFIG and Kafka's default is DEFAULT_CONFIG (is_default), with synonyms,
    // types and documentation; named keys filter; brokers describe read-only; unknown topics and
    // resource types get their error codes.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        args: vec!["--log-retention-ms".into(), "3600000".into()],
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    let request = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "described".into(),
            num_partitions: 1,
            replication_factor: -1,
            assignments: vec![],
            configs: vec![CreatableTopicConfig {
                name: "retention.bytes".into(),
                value: Some("123456".into()),
            }],
        }],
        timeout_ms: 10_000,
        validate_only: false,
    });
    let Response::CreateTopics(created) = wire.call(5, request) else {
        panic!("not a CreateTopics response");
    };
    assert_eq!(created.topics[0].error_code, 0);
    // CreateTopics v5+ answers the configs with the same sources as DescribeConfigs.
    let created_sources: Vec<(String, i8)> = created.topics[0]
        .configs
        .iter()
        .flatten()
        .map(|config| (config.name.clone(), config.config_source))
        .collect();
    assert!(created_sources.contains(&("retention.bytes".into(), 1)));
    assert!(created_sources.contains(&("retention.ms".into(), 4)));
    assert!(created_sources.contains(&("segment.bytes".into(), 5)));
    for version in 1..=4 {
        let result = wire.describe(version, TOPIC, "described", None);
        assert_eq!(result.error_code, 0, "v{version}");
        let own = entry(&result, "retention.bytes");
        assert_eq!(own.value.as_deref(), Some("123456"));
        assert_eq!(own.config_source, 1);
        assert!(!own.read_only);
        let flag = entry(&result, "retention.ms");
        assert_eq!(flag.value.as_deref(), Some("3600000"));
        assert_eq!(flag.config_source, 4);
        let sources: Vec<(&str, i8)> = flag
            .synonyms
            .iter()
            .map(|s| (s.name.as_str(), s.source))
            .collect();
        assert_eq!(sources, [("log.retention.ms", 4), ("log.retention.ms", 5)]);
        let default = entry(&result, "segment.bytes");
        assert_eq!(default.config_source, 5);
        assert_eq!(default.value.as_deref(), Some("1073741824"));
        assert_eq!(value(&result, "cleanup.policy"), "delete");
        assert_eq!(value(&result, "message.timestamp.type"), "CreateTime");
        if version >= 3 {
            assert_eq!(default.config_type, 3, "segment.bytes is an INT");
            assert_eq!(entry(&result, "cleanup.policy").config_type, 7);
            assert!(default.documentation.is_some());
        }
    }
    let named = wire.describe(4, TOPIC, "described", Some(&["retention.ms", "no.such"]));
    assert_eq!(named.configs.len(), 1);
    assert_eq!(named.configs[0].name, "retention.ms");
    let unknown = wire.describe(4, TOPIC, "nonexistent", None);
    assert_eq!(unknown.error_code, UNKNOWN_TOPIC_OR_PARTITION);
    assert!(unknown.error_message.is_some());
    let node = wire.describe(4, BROKER, "0", None);
    assert_eq!(node.error_code, 0);
    assert_eq!(value(&node, "log.retention.ms"), "3600000");
    assert_eq!(value(&node, "log.segment.bytes"), "1073741824");
    assert_eq!(value(&node, "message.max.bytes"), "1048588");
    assert!(node.configs.iter().all(|config| config.read_only));
    assert_eq!(
        wire.describe(4, BROKER, "7", None).error_code,
        INVALID_REQUEST
    );
    assert_eq!(
        wire.describe(4, GROUP, "g", None).error_code,
        INVALID_REQUEST
    );
    broker.stop();
}

#[test]
fn incremental_alter_configs_validates_and_applies() {
    // Proves SET, DELETE and APPEND change a topic's configs (validate_only changes nothing),
    // and each refusal gets its code: INVALID_CONFIG for bad values, non-list APPEND and
    // compaction, UNKNOWN_TOPIC_OR_PARTITION, POLICY_VIOLATION for brokers, INVALID_REQUEST for
    // unknown operations and resource types.
    let broker = Broker::start_with(BrokerConfig {
        cores: 2,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(
        wire.create_topic("altered", 2, &[("retention.ms", "1000")]),
        0
    );
    for version in [0, 1] {
        let checked = wire.alter(
            version,
            TOPIC,
            "altered",
            &[("retention.ms", SET, Some("2000"))],
            true,
        );
        assert_eq!(checked.error_code, 0);
        let result = wire.describe(4, TOPIC, "altered", None);
        assert_eq!(value(&result, "retention.ms"), "1000", "validate_only");
    }
    // Through shard 1, so the change is forwarded to the controller over the mesh.
    let mut peer = Wire::connect(&broker.listeners()[1].address);
    let set = peer.alter(
        1,
        TOPIC,
        "altered",
        &[
            ("retention.ms", DELETE, None),
            ("segment.bytes", SET, Some("1048576")),
            ("cleanup.policy", APPEND, Some("delete")),
        ],
        false,
    );
    assert_eq!((set.error_code, set.error_message), (0, None));
    assert_eq!(set.resource_name, "altered");
    let result = wire.describe(4, TOPIC, "altered", None);
    assert_eq!(value(&result, "retention.ms"), "604800000");
    assert_eq!(entry(&result, "retention.ms").config_source, 5);
    assert_eq!(value(&result, "segment.bytes"), "1048576");
    assert_eq!(entry(&result, "segment.bytes").config_source, 1);
    assert_eq!(entry(&result, "cleanup.policy").config_source, 1);

    let refused = |wire: &mut Wire, configs: &[(&str, i8, Option<&str>)]| {
        let response = wire.alter(0, TOPIC, "altered", configs, false);
        (
            response.error_code,
            response.error_message.unwrap_or_default(),
        )
    };
    let (code, message) = refused(&mut wire, &[("retention.ms", SET, Some("soon"))]);
    assert_eq!(code, INVALID_CONFIG);
    assert!(message.contains("not an integer"), "{message}");
    let (code, message) = refused(&mut wire, &[("cleanup.policy", SET, Some("compact"))]);
    assert_eq!(code, INVALID_CONFIG);
    assert!(
        message.contains("compaction is not supported yet"),
        "{message}"
    );
    let (code, _) = refused(&mut wire, &[("retention.ms", APPEND, Some("5"))]);
    assert_eq!(code, INVALID_CONFIG);
    let (code, _) = refused(&mut wire, &[("no.such.config", SET, Some("1"))]);
    assert_eq!(code, INVALID_CONFIG);
    let (code, _) = refused(&mut wire, &[("retention.ms", 9, Some("1"))]);
    assert_eq!(code, INVALID_REQUEST);
    let (code, message) = refused(
        &mut wire,
        &[
            ("retention.ms", SET, Some("1")),
            ("retention.ms", DELETE, None),
        ],
    );
    assert_eq!(code, INVALID_REQUEST);
    assert!(message.contains("twice"), "{message}");
    let result = wire.describe(4, TOPIC, "altered", None);
    assert_eq!(
        value(&result, "retention.ms"),
        "604800000",
        "refusals change nothing"
    );

    let unknown = wire.alter(
        1,
        TOPIC,
        "nonexistent",
        &[("retention.ms", SET, Some("1"))],
        false,
    );
    assert_eq!(unknown.error_code, UNKNOWN_TOPIC_OR_PARTITION);
    let node = wire.alter(
        1,
        BROKER,
        "0",
        &[("log.retention.ms", SET, Some("1"))],
        false,
    );
    assert_eq!(node.error_code, POLICY_VIOLATION);
    assert!(node.error_message.unwrap().contains("flags"));
    let group = wire.alter(1, GROUP, "g", &[], false);
    assert_eq!(group.error_code, INVALID_REQUEST);
    broker.stop();
}

#[test]
fn configs_and_added_partitions_survive_a_restart() {
    // Proves topic configs (with their sources) and partitions added by CreatePartitions are in
    // the metadata log: after a restart they are all back, with the data written to them.
    let mut broker = Broker::start_with(BrokerConfig {
        cores: 2,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(
        wire.create_topic("kept", 1, &[("max.message.bytes", "500000")]),
        0
    );
    let altered = wire.alter(
        1,
        TOPIC,
        "kept",
        &[("retention.bytes", SET, Some("99999"))],
        false,
    );
    assert_eq!(altered.error_code, 0);
    assert_eq!(wire.create_partitions("kept", 3, None, false).0, 0);
    let leaders = wire.leaders("kept");
    assert_eq!(leaders.len(), 3);
    let mut owner = Wire::connect(&broker.listeners()[leaders[2] as usize].address);
    assert_eq!(owner.produce("kept", 2, batch(3, 10)), (0, 0));
    drop((wire, owner));

    broker.restart();
    let mut wire = Wire::connect(&broker.bootstrap());
    let result = wire.describe(4, TOPIC, "kept", None);
    assert_eq!(value(&result, "max.message.bytes"), "500000");
    assert_eq!(entry(&result, "max.message.bytes").config_source, 1);
    assert_eq!(value(&result, "retention.bytes"), "99999");
    assert_eq!(entry(&result, "retention.bytes").config_source, 1);
    assert_eq!(entry(&result, "retention.ms").config_source, 5);
    assert_eq!(wire.leaders("kept"), leaders, "placement is kept");
    let mut owner = Wire::connect(&broker.listeners()[leaders[2] as usize].address);
    assert!(
        !owner.fetch("kept", 2, 0).is_empty(),
        "partition 2 kept its data"
    );
    assert_eq!(owner.produce("kept", 2, batch(1, 10)), (0, 3));
    broker.stop();
}

#[test]
fn altered_configs_take_effect_on_produce() {
    // Proves a lowered max.message.bytes refuses a batch it accepted before, and
    // message.timestamp.type=LogAppendTime makes the broker stamp the batches it appends, on the
    // controller's shard and on the other shard alike.
    let broker = Broker::start_with(BrokerConfig {
        cores: 2,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("effect", 2, &[]), 0);
    let leaders = wire.leaders("effect");
    assert_ne!(
        leaders[0], leaders[1],
        "least-loaded placement uses both shards"
    );
    let mut owners: Vec<Wire> = leaders
        .iter()
        .map(|leader| Wire::connect(&broker.listeners()[*leader as usize].address))
        .collect();
    for (partition, owner) in owners.iter_mut().enumerate() {
        assert_eq!(
            owner.produce("effect", partition as i32, batch(2, 1000)),
            (0, 0)
        );
    }
    let lowered = wire.alter(
        1,
        TOPIC,
        "effect",
        &[("max.message.bytes", SET, Some("1000"))],
        false,
    );
    assert_eq!(lowered.error_code, 0);
    for (partition, owner) in owners.iter_mut().enumerate() {
        let partition = partition as i32;
        let (error, _) = owner.produce("effect", partition, batch(2, 1000));
        assert_eq!(error, MESSAGE_TOO_LARGE, "partition {partition}");
        assert_eq!(owner.produce("effect", partition, batch(1, 10)), (0, 2));
    }

    let stamped = wire.alter(
        1,
        TOPIC,
        "effect",
        &[("message.timestamp.type", SET, Some("LogAppendTime"))],
        false,
    );
    assert_eq!(stamped.error_code, 0);
    let before_ms = common::now_ms();
    for (partition, owner) in owners.iter_mut().enumerate() {
        let partition = partition as i32;
        assert_eq!(owner.produce("effect", partition, batch(1, 10)), (0, 3));
        let records = owner.fetch("effect", partition, 3);
        // RecordBatch v2: attributes at bytes 21..23 (bit 3: LogAppendTime), max timestamp
        // at 35..43.
        let attributes = i16::from_be_bytes(records[21..23].try_into().unwrap());
        let max_timestamp = i64::from_be_bytes(records[35..43].try_into().unwrap());
        assert_eq!(
            attributes & 0x08,
            0x08,
            "partition {partition} says LogAppendTime"
        );
        assert!(max_timestamp >= before_ms - 1000, "stamped {max_timestamp}");
    }
    broker.stop();
}

#[test]
fn create_partitions_grows_topics_and_refuses_the_rest() {
    // Proves CreatePartitions only grows a topic (INVALID_PARTITIONS), refuses assignments
    // (INVALID_REPLICA_ASSIGNMENT), unknown topics and a topic named twice (INVALID_REQUEST),
    // changes nothing with validate_only, and that the new partitions appear in Metadata and
    // accept produce at their leaders.
    let broker = Broker::start_with(BrokerConfig {
        cores: 2,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("grown", 1, &[]), 0);
    assert_eq!(
        wire.create_partitions("grown", 1, None, false).0,
        INVALID_PARTITIONS
    );
    assert_eq!(
        wire.create_partitions("grown", 2, Some(vec![0]), false).0,
        INVALID_REPLICA_ASSIGNMENT
    );
    assert_eq!(
        wire.create_partitions("nonexistent", 2, None, false).0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(wire.create_partitions("grown", 4, None, true).0, 0);
    assert_eq!(wire.leaders("grown").len(), 1, "validate_only adds nothing");
    // Through shard 1, so the change is forwarded to the controller over the mesh.
    let mut peer = Wire::connect(&broker.listeners()[1].address);
    assert_eq!(peer.create_partitions("grown", 4, None, false), (0, None));
    let leaders = wire.leaders("grown");
    assert_eq!(leaders.len(), 4);
    assert!(leaders.contains(&0) && leaders.contains(&1), "{leaders:?}");
    for (partition, leader) in leaders.iter().enumerate() {
        let mut owner = Wire::connect(&broker.listeners()[*leader as usize].address);
        assert_eq!(
            owner.produce("grown", partition as i32, batch(1, 10)),
            (0, 0)
        );
    }
    assert_eq!(
        wire.create_partitions("grown", 3, None, false).0,
        INVALID_PARTITIONS
    );
    let twice = Request::CreatePartitions(CreatePartitionsRequest {
        topics: [5, 6]
            .into_iter()
            .map(|count| CreatePartitionsTopic {
                name: "grown".into(),
                count,
                assignments: None,
            })
            .collect(),
        timeout_ms: 10_000,
        validate_only: false,
    });
    let Response::CreatePartitions(response) = wire.call(3, twice) else {
        panic!("not a CreatePartitions response");
    };
    let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, [INVALID_REQUEST, INVALID_REQUEST]);
    assert_eq!(
        wire.leaders("grown").len(),
        4,
        "a refused request adds nothing"
    );
    broker.stop();
}

#[test]
fn delete_records_moves_the_log_start_offset() {
    // Proves DeleteRecords at the partition's leader moves the log start offset (ListOffsets
    // earliest follows), -1 means the high watermark, and a non-leader, an offset beyond the
    // high watermark and an unknown partition get their error codes.
    let broker = Broker::start_with(BrokerConfig {
        cores: 2,
        ..BrokerConfig::default()
    });
    let mut wire = Wire::connect(&broker.bootstrap());
    assert_eq!(wire.create_topic("trimmed", 2, &[]), 0);
    let leaders = wire.leaders("trimmed");
    assert_ne!(
        leaders[0], leaders[1],
        "least-loaded placement uses both shards"
    );
    let mut owner = Wire::connect(&broker.listeners()[leaders[0] as usize].address);
    let mut other = Wire::connect(&broker.listeners()[leaders[1] as usize].address);
    for i in 0..5 {
        assert_eq!(owner.produce("trimmed", 0, batch(2, 10)), (0, i * 2));
    }
    assert_eq!(
        other.delete_records("trimmed", 0, 3),
        (NOT_LEADER_OR_FOLLOWER, -1)
    );
    assert_eq!(owner.delete_records("trimmed", 0, 3), (0, 3));
    assert_eq!(owner.log_start_offset("trimmed", 0), 3);
    assert_eq!(
        owner.delete_records("trimmed", 0, 2),
        (0, 3),
        "never moves back"
    );
    assert_eq!(
        owner.delete_records("trimmed", 0, 11),
        (OFFSET_OUT_OF_RANGE, -1)
    );
    assert_eq!(owner.delete_records("trimmed", 0, -1), (0, 10));
    assert_eq!(owner.log_start_offset("trimmed", 0), 10);
    assert_eq!(
        owner.delete_records("trimmed", 5, 0),
        (UNKNOWN_TOPIC_OR_PARTITION, -1)
    );
    assert_eq!(
        owner.delete_records("nonexistent", 0, 0),
        (UNKNOWN_TOPIC_OR_PARTITION, -1)
    );
    assert_eq!(owner.produce("trimmed", 0, batch(1, 10)), (0, 10));
    broker.stop();
}
