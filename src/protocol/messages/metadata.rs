//! Metadata: the request and response of api key 3, versions 0-12.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;
use crate::protocol::field::Uuid;

kafka_struct! {
    /// Metadata request (api key 3).
    pub struct MetadataRequest {
        /// The topics to fetch metadata for.
        pub topics: Option<Vec<MetadataRequestTopic>> [0.., nullable = 1..],
        /// If this is true, the broker may auto-create topics that we requested which do not already
        /// exist, if it is configured to do so.
        pub allow_auto_topic_creation: bool [4.., default = true],
        /// Whether to include cluster authorized operations.
        pub include_cluster_authorized_operations: bool [8..=10],
        /// Whether to include topic authorized operations.
        pub include_topic_authorized_operations: bool [8..],
    }
}

kafka_struct! {
    /// The topics to fetch metadata for.
    pub struct MetadataRequestTopic {
        /// The topic id.
        pub topic_id: Uuid [10..],
        /// The topic name.
        pub name: Option<String> [0.., nullable = 10..],
    }
}

kafka_struct! {
    /// Metadata response (api key 3).
    pub struct MetadataResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [3..],
        /// A list of brokers present in the cluster.
        pub brokers: Vec<MetadataResponseBroker> [0..],
        /// The cluster ID that responding broker belongs to.
        pub cluster_id: Option<String> [2..],
        /// The ID of the controller broker.
        pub controller_id: i32 [1.., default = -1],
        /// Each topic in the response.
        pub topics: Vec<MetadataResponseTopic> [0..],
        /// 32-bit bitfield to represent authorized operations for this cluster.
        pub cluster_authorized_operations: i32 [8..=10, default = -2147483648],
    }
}

kafka_struct! {
    /// A list of brokers present in the cluster.
    pub struct MetadataResponseBroker {
        /// The broker ID.
        pub node_id: i32 [0..],
        /// The broker hostname.
        pub host: String [0..],
        /// The broker port.
        pub port: i32 [0..],
        /// The rack of the broker, or null if it has not been assigned to a rack.
        pub rack: Option<String> [1..],
    }
}

kafka_struct! {
    /// Each topic in the response.
    pub struct MetadataResponseTopic {
        /// The topic error, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// The topic name. Null for non-existing topics queried by ID. This is never null when
        /// ErrorCode is zero. One of Name and TopicId is always populated.
        pub name: Option<String> [0.., nullable = 12..],
        /// The topic id. Zero for non-existing topics queried by name. This is never zero when
        /// ErrorCode is zero. One of Name and TopicId is always populated.
        pub topic_id: Uuid [10..],
        /// True if the topic is internal.
        pub is_internal: bool [1..],
        /// Each partition in the topic.
        pub partitions: Vec<MetadataResponsePartition> [0..],
        /// 32-bit bitfield to represent authorized operations for this topic.
        pub topic_authorized_operations: i32 [8.., default = -2147483648],
    }
}

kafka_struct! {
    /// Each partition in the topic.
    pub struct MetadataResponsePartition {
        /// The partition error, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// The partition index.
        pub partition_index: i32 [0..],
        /// The ID of the leader broker.
        pub leader_id: i32 [0..],
        /// The leader epoch of this partition.
        pub leader_epoch: i32 [7.., default = -1],
        /// The set of all nodes that host this partition.
        pub replica_nodes: Vec<i32> [0..],
        /// The set of nodes that are in sync with the leader for this partition.
        pub isr_nodes: Vec<i32> [0..],
        /// The set of offline replicas of this partition.
        pub offline_replicas: Vec<i32> [5..],
    }
}
