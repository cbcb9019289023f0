//! CreateTopics: the request and response of api key 19, versions 0-7.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;
use crate::protocol::field::Uuid;

kafka_struct! {
    /// CreateTopics request (api key 19).
    pub struct CreateTopicsRequest {
        /// The topics to create.
        pub topics: Vec<CreatableTopic> [0..],
        /// How long to wait in milliseconds before timing out the request.
        pub timeout_ms: i32 [0.., default = 60000],
        /// If true, check that the topics can be created as specified, but don't create anything.
        pub validate_only: bool [1..],
    }
}

kafka_struct! {
    /// The topics to create.
    pub struct CreatableTopic {
        /// The topic name.
        pub name: String [0..],
        /// The number of partitions to create in the topic, or -1 if we are either specifying a
        /// manual partition assignment or using the default partitions.
        pub num_partitions: i32 [0..],
        /// The number of replicas to create for each partition in the topic, or -1 if we are either
        /// specifying a manual partition assignment or using the default replication factor.
        pub replication_factor: i16 [0..],
        /// The manual partition assignment, or the empty array if we are using automatic assignment.
        pub assignments: Vec<CreatableReplicaAssignment> [0..],
        /// The custom topic configurations to set.
        pub configs: Vec<CreatableTopicConfig> [0..],
    }
}

kafka_struct! {
    /// The manual partition assignment, or the empty array if we are using automatic assignment.
    pub struct CreatableReplicaAssignment {
        /// The partition index.
        pub partition_index: i32 [0..],
        /// The brokers to place the partition on.
        pub broker_ids: Vec<i32> [0..],
    }
}

kafka_struct! {
    /// The custom topic configurations to set.
    pub struct CreatableTopicConfig {
        /// The configuration name.
        pub name: String [0..],
        /// The configuration value.
        pub value: Option<String> [0..],
    }
}

kafka_struct! {
    /// CreateTopics response (api key 19).
    pub struct CreateTopicsResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [2..],
        /// Results for each topic we tried to create.
        pub topics: Vec<CreatableTopicResult> [0..],
    }
}

kafka_struct! {
    /// Results for each topic we tried to create.
    pub struct CreatableTopicResult {
        /// The topic name.
        pub name: String [0..],
        /// The unique topic ID.
        pub topic_id: Uuid [7..],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// The error message, or null if there was no error.
        pub error_message: Option<String> [1..],
        /// Optional topic config error returned if configs are not returned in the response.
        pub topic_config_error_code: i16 [5.., tag = 0],
        /// Number of partitions of the topic.
        pub num_partitions: i32 [5.., default = -1],
        /// Replication factor of the topic.
        pub replication_factor: i16 [5.., default = -1],
        /// Configuration of the topic.
        pub configs: Option<Vec<CreatableTopicConfigs>> [5..],
    }
}

kafka_struct! {
    /// Configuration of the topic.
    pub struct CreatableTopicConfigs {
        /// The configuration name.
        pub name: String [5..],
        /// The configuration value.
        pub value: Option<String> [5..],
        /// True if the configuration is read-only.
        pub read_only: bool [5..],
        /// The configuration source.
        pub config_source: i8 [5.., default = -1],
        /// True if this configuration is sensitive.
        pub is_sensitive: bool [5..],
    }
}
