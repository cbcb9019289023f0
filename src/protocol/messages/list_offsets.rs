//! ListOffsets: the request and response of api key 2, versions 0-8.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// ListOffsets request (api key 2).
    pub struct ListOffsetsRequest {
        /// The broker ID of the requester, or -1 if this request is being made by a normal consumer.
        pub replica_id: i32 [0..],
        /// This setting controls the visibility of transactional records. Using READ_UNCOMMITTED
        /// (isolation_level = 0) makes all records visible. With READ_COMMITTED (isolation_level =
        /// 1), non-transactional and COMMITTED transactional records are visible. To be more
        /// concrete, READ_COMMITTED returns all data from offsets smaller than the current LSO (last
        /// stable offset), and enables the inclusion of the list of aborted transactions in the
        /// result, which allows consumers to discard ABORTED transactional records.
        pub isolation_level: i8 [2..],
        /// Each topic in the request.
        pub topics: Vec<ListOffsetsTopic> [0..],
    }
}

kafka_struct! {
    /// Each topic in the request.
    pub struct ListOffsetsTopic {
        /// The topic name.
        pub name: String [0..],
        /// Each partition in the request.
        pub partitions: Vec<ListOffsetsPartition> [0..],
    }
}

kafka_struct! {
    /// Each partition in the request.
    pub struct ListOffsetsPartition {
        /// The partition index.
        pub partition_index: i32 [0..],
        /// The current leader epoch.
        pub current_leader_epoch: i32 [4.., default = -1],
        /// The current timestamp.
        pub timestamp: i64 [0..],
        /// The maximum number of offsets to report.
        pub max_num_offsets: i32 [0..=0, default = 1],
    }
}

kafka_struct! {
    /// ListOffsets response (api key 2).
    pub struct ListOffsetsResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [2..],
        /// Each topic in the response.
        pub topics: Vec<ListOffsetsTopicResponse> [0..],
    }
}

kafka_struct! {
    /// Each topic in the response.
    pub struct ListOffsetsTopicResponse {
        /// The topic name.
        pub name: String [0..],
        /// Each partition in the response.
        pub partitions: Vec<ListOffsetsPartitionResponse> [0..],
    }
}

kafka_struct! {
    /// Each partition in the response.
    pub struct ListOffsetsPartitionResponse {
        /// The partition index.
        pub partition_index: i32 [0..],
        /// The partition error code, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// The result offsets.
        pub old_style_offsets: Vec<i64> [0..=0],
        /// The timestamp associated with the returned offset.
        pub timestamp: i64 [1.., default = -1],
        /// The returned offset.
        pub offset: i64 [1.., default = -1],
        /// The leader epoch associated with the returned offset.
        pub leader_epoch: i32 [4.., default = -1],
    }
}
