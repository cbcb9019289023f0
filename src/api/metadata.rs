//! Metadata and DescribeCluster: the brokers (one node per shard of every live broker, each on
//! its own port) and the topics, with each partition led by the node that owns it (none while
//! its broker is fenced). Unknown topics are created when the client allows it and
//! `--auto-create-topics` is on, as Kafka's `auto.create.topics.enable` does.

use std::rc::Rc;

use crate::group::offsets_topic::OFFSETS_TOPIC;
use crate::meta::controller::CreateTopicSpec;
use crate::meta::{BrokerInfo, ClusterState, Node, TopicMeta};
use crate::protocol::ErrorCode;
use crate::protocol::field::Uuid;
use crate::protocol::messages::describe_cluster::{
    DescribeClusterBroker, DescribeClusterRequest, DescribeClusterResponse,
};
use crate::protocol::messages::metadata::{
    MetadataRequest, MetadataResponse, MetadataResponseBroker, MetadataResponsePartition,
    MetadataResponseTopic,
};
use crate::shard::Shard;
use crate::shard::control::create_topics;

use super::errors::topic_error_code;

/// Kafka's "authorized operations not requested" marker.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Kafka's AclOperation codes, each a bit of an authorized-operations bitfield.
const ACL_READ: u8 = 3;
const ACL_WRITE: u8 = 4;
const ACL_CREATE: u8 = 5;
const ACL_DELETE: u8 = 6;
const ACL_ALTER: u8 = 7;
const ACL_DESCRIBE: u8 = 8;
const ACL_CLUSTER_ACTION: u8 = 9;
const ACL_DESCRIBE_CONFIGS: u8 = 10;
const ACL_ALTER_CONFIGS: u8 = 11;
const ACL_IDEMPOTENT_WRITE: u8 = 12;

/// The bitfield of a set of operations (Kafka's `Utils.to32BitField`).
const fn operations_bitfield(operations: &[u8]) -> i32 {
    let mut bits = 0i32;
    let mut i = 0;
    while i < operations.len() {
        bits |= 1 << operations[i];
        i += 1;
    }
    bits
}

/// A topic's authorized operations: Spate has no authorizer, so every operation a topic supports
/// (Kafka's `AclEntry.supportedOperations(TOPIC)`), as Kafka answers without an authorizer.
pub const TOPIC_AUTHORIZED_OPERATIONS: i32 = operations_bitfield(&[
    ACL_READ,
    ACL_WRITE,
    ACL_CREATE,
    ACL_DESCRIBE,
    ACL_DELETE,
    ACL_ALTER,
    ACL_DESCRIBE_CONFIGS,
    ACL_ALTER_CONFIGS,
]);

/// The cluster's authorized operations: every operation the cluster resource supports.
pub const CLUSTER_AUTHORIZED_OPERATIONS: i32 = operations_bitfield(&[
    ACL_CREATE,
    ACL_CLUSTER_ACTION,
    ACL_DESCRIBE_CONFIGS,
    ACL_ALTER_CONFIGS,
    ACL_IDEMPOTENT_WRITE,
    ACL_ALTER,
    ACL_DESCRIBE,
]);

/// Answers a Metadata request.
pub async fn handle_metadata(
    shard: &Rc<Shard>,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // v0 has no null: an empty list means every topic there.
    let all_topics = request.topics.is_none()
        || (version == 0 && request.topics.as_ref().is_some_and(Vec::is_empty));
    let requested: Vec<String> = request
        .topics
        .unwrap_or_default()
        .into_iter()
        .filter_map(|topic| topic.name)
        .collect();
    let topic_operations = if request.include_topic_authorized_operations {
        TOPIC_AUTHORIZED_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let cluster_authorized_operations = if request.include_cluster_authorized_operations {
        CLUSTER_AUTHORIZED_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let mut creation_errors = Vec::new();
    if !all_topics && request.allow_auto_topic_creation && shard.config.auto_create_topics {
        creation_errors = auto_create(shard, &requested).await;
    }
    let brokers = brokers(shard);
    let cluster = shard.cluster.borrow();
    let topics = if all_topics {
        cluster
            .topics()
            .map(|topic| topic_metadata(shard, &cluster, topic, topic_operations))
            .collect()
    } else {
        requested
            .iter()
            .map(|name| match cluster.topic(name) {
                Some(topic) => topic_metadata(shard, &cluster, topic, topic_operations),
                None => MetadataResponseTopic {
                    error_code: creation_errors
                        .iter()
                        .find(|(failed, _)| failed == name)
                        .map(|(_, code)| *code)
                        .unwrap_or(ErrorCode::UnknownTopicOrPartition)
                        .code(),
                    name: Some(name.clone()),
                    topic_authorized_operations: topic_operations,
                    ..MetadataResponseTopic::default()
                },
            })
            .collect()
    };
    MetadataResponse {
        brokers,
        cluster_id: Some(cluster_id(shard)),
        controller_id: controller_id(shard),
        topics,
        cluster_authorized_operations,
        ..MetadataResponse::default()
    }
}

/// DescribeCluster's endpoint type of brokers (1); 2 names controllers, which Spate does not
/// expose as separate endpoints.
const ENDPOINT_TYPE_BROKER: i8 = 1;
/// DescribeCluster's endpoint type of controllers.
const ENDPOINT_TYPE_CONTROLLER: i8 = 2;

/// Answers a DescribeCluster request: the same nodes, cluster id and controller as Metadata.
pub fn handle_describe_cluster(
    shard: &Shard,
    request: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let refused = |code_v1: ErrorCode, message: String| DescribeClusterResponse {
        // v0 has no endpoint type errors: Kafka answers INVALID_REQUEST there.
        error_code: if version == 0 {
            ErrorCode::InvalidRequest.code()
        } else {
            code_v1.code()
        },
        error_message: Some(message),
        ..DescribeClusterResponse::default()
    };
    match request.endpoint_type {
        ENDPOINT_TYPE_BROKER => {}
        ENDPOINT_TYPE_CONTROLLER => {
            return refused(
                ErrorCode::MismatchedEndpointType,
                "the request was sent to a broker endpoint, but asked for controllers".into(),
            );
        }
        other => {
            return refused(
                ErrorCode::UnsupportedEndpointType,
                format!("unsupported endpoint type {other}"),
            );
        }
    }
    DescribeClusterResponse {
        endpoint_type: ENDPOINT_TYPE_BROKER,
        cluster_id: cluster_id(shard),
        controller_id: controller_id(shard),
        brokers: brokers(shard)
            .into_iter()
            .map(|broker| DescribeClusterBroker {
                broker_id: broker.node_id,
                host: broker.host,
                port: broker.port,
                rack: broker.rack,
            })
            .collect(),
        cluster_authorized_operations: if request.include_cluster_authorized_operations {
            CLUSTER_AUTHORIZED_OPERATIONS
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        },
        ..DescribeClusterResponse::default()
    }
}

/// Creates the requested topics that do not exist; returns the ones that could not be created.
async fn auto_create(shard: &Rc<Shard>, requested: &[String]) -> Vec<(String, ErrorCode)> {
    let missing: Vec<String> = {
        let cluster = shard.cluster.borrow();
        requested
            .iter()
            .filter(|name| cluster.topic(name).is_none())
            .cloned()
            .collect()
    };
    if missing.is_empty() {
        return Vec::new();
    }
    let specs = missing
        .iter()
        .map(|name| CreateTopicSpec {
            name: name.clone(),
            num_partitions: -1,
            replication_factor: -1,
            manual_assignment: false,
            configs: Vec::new(),
        })
        .collect();
    let results = create_topics(shard, specs, false).await;
    missing
        .into_iter()
        .zip(results)
        .filter_map(|(name, result)| match result {
            Err(error) => Some((name, topic_error_code(&error))),
            Ok(()) => None,
        })
        .collect()
}

/// Every shard of every live broker as a node; this broker's own shards always (it serves
/// them even before the controller has its registration). The rack is the broker's
/// `--rack`, or its id, so rack-aware clients tell brokers apart.
pub fn brokers(shard: &Shard) -> Vec<MetadataResponseBroker> {
    let cluster = shard.cluster.borrow();
    let own = BrokerInfo {
        id: shard.broker_id,
        rack: shard.config.rack.clone(),
        host: shard.config.advertised_host().to_owned(),
        ports: shard.ports.to_vec(),
        epoch: 0,
        fenced: false,
    };
    let listed = cluster
        .brokers()
        .filter(|broker| broker.id != shard.broker_id && !broker.fenced)
        .chain(std::iter::once(&own));
    let mut nodes: Vec<MetadataResponseBroker> = listed
        .flat_map(|broker| {
            broker
                .nodes()
                .zip(&broker.ports)
                .map(|(node, port)| MetadataResponseBroker {
                    node_id: node.node_id(),
                    host: broker.host.clone(),
                    port: i32::from(*port),
                    rack: Some(broker.rack.clone().unwrap_or_else(|| broker.id.to_string())),
                })
        })
        .collect();
    nodes.sort_by_key(|node| node.node_id);
    nodes
}

/// The controller: shard 0 of the controller quorum's leader, or of a single broker. While
/// no live leader is known, shard 0 of this broker, which forwards topic changes to whichever
/// leader the quorum elects (clients send them to the controller_id).
fn controller_id(shard: &Shard) -> i32 {
    let leader = shard.controller_leader.get().filter(|broker| {
        *broker == shard.broker_id
            || shard
                .cluster
                .borrow()
                .broker(*broker)
                .is_some_and(|info| !info.fenced)
    });
    Node::new(leader.unwrap_or(shard.broker_id), 0).node_id()
}

/// The cluster id the controller quorum chose; a single broker's is derived from its data
/// directory, so it survives restarts.
fn cluster_id(shard: &Shard) -> String {
    if let Some(id) = shard.cluster.borrow().cluster_id() {
        return id.to_owned();
    }
    let path = shard.config.data_dir.to_string_lossy();
    format!(
        "spate-{:08x}",
        crate::protocol::record_batch::crc32c(path.as_bytes())
    )
}

/// A topic's metadata. A partition whose log is offline (corrupt) is reported with
/// KAFKA_STORAGE_ERROR and its replica listed offline, by every shard (src/shard/offline.rs);
/// one whose broker is fenced (or not registered) has no leader: LEADER_NOT_AVAILABLE.
fn topic_metadata(
    shard: &Shard,
    cluster: &ClusterState,
    topic: &TopicMeta,
    topic_authorized_operations: i32,
) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: 0,
        name: Some(topic.name.clone()),
        topic_id: Uuid(topic.topic_id),
        is_internal: topic.name == OFFSETS_TOPIC,
        partitions: topic
            .partitions
            .iter()
            .enumerate()
            .map(|(index, owner)| {
                // The owner sees its log; other shards know what the owner reported.
                let offline = if *owner == shard.node() {
                    shard.partition_is_offline(&topic.name, index)
                } else {
                    shard.offline.contains(topic.topic_id, index)
                };
                // A broker serves its own partitions whatever the controller last said of it.
                let live = owner.broker == shard.broker_id || cluster.node_is_live(*owner);
                let error_code = if !live {
                    ErrorCode::LeaderNotAvailable.code()
                } else if offline {
                    ErrorCode::KafkaStorageError.code()
                } else {
                    0
                };
                if topic.is_replicated() {
                    // ISR: the replicas its leader last reported in sync (Kafka's
                    // AlterPartition), on live brokers; before the leader's first report, the
                    // replicas on live brokers.
                    let replicas = topic.replicas_of(index);
                    let reported = topic.reported_isr(index);
                    let (on_live, offline): (Vec<Node>, Vec<Node>) =
                        replicas.iter().partition(|replica| {
                            replica.broker == shard.broker_id || cluster.node_is_live(**replica)
                        });
                    let isr: Vec<Node> = on_live
                        .into_iter()
                        .filter(|replica| reported.is_empty() || reported.contains(&replica.broker))
                        .collect();
                    let ids = |nodes: &[Node]| nodes.iter().map(|node| node.node_id()).collect();
                    return MetadataResponsePartition {
                        error_code,
                        partition_index: index as i32,
                        leader_id: if live { owner.node_id() } else { -1 },
                        leader_epoch: i32::try_from(topic.leader_term(index)).unwrap_or(i32::MAX),
                        replica_nodes: ids(&replicas),
                        isr_nodes: ids(&isr),
                        offline_replicas: ids(&offline),
                    };
                }
                MetadataResponsePartition {
                    error_code,
                    partition_index: index as i32,
                    leader_id: if live { owner.node_id() } else { -1 },
                    leader_epoch: 0,
                    replica_nodes: vec![owner.node_id()],
                    isr_nodes: if live {
                        vec![owner.node_id()]
                    } else {
                        Vec::new()
                    },
                    offline_replicas: if offline || !live {
                        vec![owner.node_id()]
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect(),
        topic_authorized_operations,
    }
}
