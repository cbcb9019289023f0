//! OffsetForLeaderEpoch: the request and response of api key 23, versions 0-4.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// OffsetForLeaderEpoch request (api key 23).
    pub struct OffsetForLeaderEpochRequest {
        /// The broker ID of the follower, of -1 if this request is from a consumer.
        pub replica_id: i32 [3.., default = -2],
        /// Each topic to get offsets for.
        pub topics: Vec<OffsetForLeaderTopic> [0..],
    }
}

kafka_struct! {
    /// Each topic to get offsets for.
    pub struct OffsetForLeaderTopic {
        /// The topic name.
        pub topic: String [0..],
        /// Each partition to get offsets for.
        pub partitions: Vec<OffsetForLeaderPartition> [0..],
    }
}

kafka_struct! {
    /// Each partition to get offsets for.
    pub struct OffsetForLeaderPartition {
        /// The partition index.
        pub partition: i32 [0..],
        /// An epoch used to fence consumers/replicas with old metadata. If the epoch provided by the
        /// client is larger than the current epoch known to the broker, then the UNKNOWN_LEADER_EPOCH
        /// error code will be returned. If the provided epoch is smaller, then the
        /// FENCED_LEADER_EPOCH error code will be returned.
        pub current_leader_epoch: i32 [2.., default = -1],
        /// The epoch to look up an offset for.
        pub leader_epoch: i32 [0..],
    }
}

kafka_struct! {
    /// OffsetForLeaderEpoch response (api key 23).
    pub struct OffsetForLeaderEpochResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [2..],
        /// Each topic we fetched offsets for.
        pub topics: Vec<OffsetForLeaderTopicResult> [0..],
    }
}

kafka_struct! {
    /// Each topic we fetched offsets for.
    pub struct OffsetForLeaderTopicResult {
        /// The topic name.
        pub topic: String [0..],
        /// Each partition in the topic we fetched offsets for.
        pub partitions: Vec<EpochEndOffset> [0..],
    }
}

kafka_struct! {
    /// Each partition in the topic we fetched offsets for.
    pub struct EpochEndOffset {
        /// The error code 0, or if there was no error.
        pub error_code: i16 [0..],
        /// The partition index.
        pub partition: i32 [0..],
        /// The leader epoch of the partition.
        pub leader_epoch: i32 [1.., default = -1],
        /// The end offset of the epoch.
        pub end_offset: i64 [0.., default = -1],
    }
}
