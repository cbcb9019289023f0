//! OffsetCommit: the request and response of api key 8, versions 0-8.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// OffsetCommit request (api key 8).
    pub struct OffsetCommitRequest {
        /// The unique group identifier.
        pub group_id: String [0..],
        /// The generation of the group if using the classic group protocol or the member epoch if
        /// using the consumer protocol.
        pub generation_id_or_member_epoch: i32 [1.., default = -1],
        /// The member ID assigned by the group coordinator.
        pub member_id: String [1..],
        /// The unique identifier of the consumer instance provided by end user.
        pub group_instance_id: Option<String> [7..],
        /// The time period in ms to retain the offset.
        pub retention_time_ms: i64 [2..=4, default = -1],
        /// The topics to commit offsets for.
        pub topics: Vec<OffsetCommitRequestTopic> [0..],
    }
}

kafka_struct! {
    /// The topics to commit offsets for.
    pub struct OffsetCommitRequestTopic {
        /// The topic name.
        pub name: String [0..=9],
        /// Each partition to commit offsets for.
        pub partitions: Vec<OffsetCommitRequestPartition> [0..],
    }
}

kafka_struct! {
    /// Each partition to commit offsets for.
    pub struct OffsetCommitRequestPartition {
        /// The partition index.
        pub partition_index: i32 [0..],
        /// The message offset to be committed.
        pub committed_offset: i64 [0..],
        /// The leader epoch of this partition.
        pub committed_leader_epoch: i32 [6.., default = -1],
        /// The timestamp of the commit.
        pub commit_timestamp: i64 [1..=1, default = -1],
        /// Any associated metadata the client wants to keep.
        pub committed_metadata: Option<String> [0..],
    }
}

kafka_struct! {
    /// OffsetCommit response (api key 8).
    pub struct OffsetCommitResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [3..],
        /// The responses for each topic.
        pub topics: Vec<OffsetCommitResponseTopic> [0..],
    }
}

kafka_struct! {
    /// The responses for each topic.
    pub struct OffsetCommitResponseTopic {
        /// The topic name.
        pub name: String [0..=9],
        /// The responses for each partition in the topic.
        pub partitions: Vec<OffsetCommitResponsePartition> [0..],
    }
}

kafka_struct! {
    /// The responses for each partition in the topic.
    pub struct OffsetCommitResponsePartition {
        /// The partition index.
        pub partition_index: i32 [0..],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..],
    }
}
