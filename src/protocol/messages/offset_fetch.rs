//! OffsetFetch: the request and response of api key 9, versions 0-8.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// OffsetFetch request (api key 9).
    pub struct OffsetFetchRequest {
        /// The group to fetch offsets for.
        pub group_id: String [0..=7],
        /// Each topic we would like to fetch offsets for, or null to fetch offsets for all topics.
        pub topics: Option<Vec<OffsetFetchRequestTopic>> [0..=7, nullable = 2..=7],
        /// Each group we would like to fetch offsets for.
        pub groups: Vec<OffsetFetchRequestGroup> [8..],
        /// Whether broker should hold on returning unstable offsets but set a retriable error code
        /// for the partitions.
        pub require_stable: bool [7..],
    }
}

kafka_struct! {
    /// Each topic we would like to fetch offsets for, or null to fetch offsets for all topics.
    pub struct OffsetFetchRequestTopic {
        /// The topic name.
        pub name: String [0..=7],
        /// The partition indexes we would like to fetch offsets for.
        pub partition_indexes: Vec<i32> [0..=7],
    }
}

kafka_struct! {
    /// Each group we would like to fetch offsets for.
    pub struct OffsetFetchRequestGroup {
        /// The group ID.
        pub group_id: String [8..],
        /// Each topic we would like to fetch offsets for, or null to fetch offsets for all topics.
        pub topics: Option<Vec<OffsetFetchRequestTopics>> [8..],
    }
}

kafka_struct! {
    /// Each topic we would like to fetch offsets for, or null to fetch offsets for all topics.
    pub struct OffsetFetchRequestTopics {
        /// The topic name.
        pub name: String [8..=9],
        /// The partition indexes we would like to fetch offsets for.
        pub partition_indexes: Vec<i32> [8..],
    }
}

kafka_struct! {
    /// OffsetFetch response (api key 9).
    pub struct OffsetFetchResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [3..],
        /// The responses per topic.
        pub topics: Vec<OffsetFetchResponseTopic> [0..=7],
        /// The top-level error code, or 0 if there was no error.
        pub error_code: i16 [2..=7],
        /// The responses per group id.
        pub groups: Vec<OffsetFetchResponseGroup> [8..],
    }
}

kafka_struct! {
    /// The responses per topic.
    pub struct OffsetFetchResponseTopic {
        /// The topic name.
        pub name: String [0..=7],
        /// The responses per partition.
        pub partitions: Vec<OffsetFetchResponsePartition> [0..=7],
    }
}

kafka_struct! {
    /// The responses per partition.
    pub struct OffsetFetchResponsePartition {
        /// The partition index.
        pub partition_index: i32 [0..=7],
        /// The committed message offset.
        pub committed_offset: i64 [0..=7],
        /// The leader epoch.
        pub committed_leader_epoch: i32 [5..=7, default = -1],
        /// The partition metadata.
        pub metadata: Option<String> [0..=7],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..=7],
    }
}

kafka_struct! {
    /// The responses per group id.
    pub struct OffsetFetchResponseGroup {
        /// The group ID.
        pub group_id: String [8..],
        /// The responses per topic.
        pub topics: Vec<OffsetFetchResponseTopics> [8..],
        /// The group-level error code, or 0 if there was no error.
        pub error_code: i16 [8..],
    }
}

kafka_struct! {
    /// The responses per topic.
    pub struct OffsetFetchResponseTopics {
        /// The topic name.
        pub name: String [8..=9],
        /// The responses per partition.
        pub partitions: Vec<OffsetFetchResponsePartitions> [8..],
    }
}

kafka_struct! {
    /// The responses per partition.
    pub struct OffsetFetchResponsePartitions {
        /// The partition index.
        pub partition_index: i32 [8..],
        /// The committed message offset.
        pub committed_offset: i64 [8..],
        /// The leader epoch.
        pub committed_leader_epoch: i32 [8.., default = -1],
        /// The partition metadata.
        pub metadata: Option<String> [8..],
        /// The partition-level error code, or 0 if there was no error.
        pub error_code: i16 [8..],
    }
}
