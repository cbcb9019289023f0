//! OffsetDelete: the request and response of api key 47, versions 0-0.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// OffsetDelete request (api key 47).
    pub struct OffsetDeleteRequest {
        /// The unique group identifier.
        pub group_id: String [0..],
        /// The topics to delete offsets for.
        pub topics: Vec<OffsetDeleteRequestTopic> [0..],
    }
}

kafka_struct! {
    /// The topics to delete offsets for.
    pub struct OffsetDeleteRequestTopic {
        /// The topic name.
        pub name: String [0..],
        /// Each partition to delete offsets for.
        pub partitions: Vec<OffsetDeleteRequestPartition> [0..],
    }
}

kafka_struct! {
    /// Each partition to delete offsets for.
    pub struct OffsetDeleteRequestPartition {
        /// The partition index.
        pub partition_index: i32 [0..],
    }
}

kafka_struct! {
    /// OffsetDelete response (api key 47).
    pub struct OffsetDeleteResponse {
        /// The top-level error code, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [0..],
        /// The responses for each topic.
        pub topics: Vec<OffsetDeleteResponseTopic> [0..],
    }
}

kafka_struct! {
    /// The responses for each topic.
    pub struct OffsetDeleteResponseTopic {
        /// The topic name.
        pub name: String [0..],
        /// The responses for each partition in the topic.
        pub partitions: Vec<OffsetDeleteResponsePartition> [0..],
    }
}

kafka_struct! {
    /// The responses for each partition in the topic.
    pub struct OffsetDeleteResponsePartition {
        /// The partition index.
        pub partition_index: i32 [0..],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..],
    }
}
