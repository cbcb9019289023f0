//! DeleteRecords: the request and response of api key 21, versions 0-2.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// DeleteRecords request (api key 21).
    pub struct DeleteRecordsRequest {
        /// Each topic that we want to delete records from.
        pub topics: Vec<DeleteRecordsTopic> [0..],
        /// How long to wait for the deletion to complete, in milliseconds.
        pub timeout_ms: i32 [0..],
    }
}

kafka_struct! {
    /// Each topic that we want to delete records from.
    pub struct DeleteRecordsTopic {
        /// The topic name.
        pub name: String [0..],
        /// Each partition that we want to delete records from.
        pub partitions: Vec<DeleteRecordsPartition> [0..],
    }
}

kafka_struct! {
    /// Each partition that we want to delete records from.
    pub struct DeleteRecordsPartition {
        /// The partition index.
        pub partition_index: i32 [0..],
        /// The deletion offset. -1 means that records should be truncated to the high watermark.
        pub offset: i64 [0..],
    }
}

kafka_struct! {
    /// DeleteRecords response (api key 21).
    pub struct DeleteRecordsResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [0..],
        /// Each topic that we wanted to delete records from.
        pub topics: Vec<DeleteRecordsTopicResult> [0..],
    }
}

kafka_struct! {
    /// Each topic that we wanted to delete records from.
    pub struct DeleteRecordsTopicResult {
        /// The topic name.
        pub name: String [0..],
        /// Each partition that we wanted to delete records from.
        pub partitions: Vec<DeleteRecordsPartitionResult> [0..],
    }
}

kafka_struct! {
    /// Each partition that we wanted to delete records from.
    pub struct DeleteRecordsPartitionResult {
        /// The partition index.
        pub partition_index: i32 [0..],
        /// The partition low water mark.
        pub low_watermark: i64 [0..],
        /// The deletion error code, or 0 if the deletion succeeded.
        pub error_code: i16 [0..],
    }
}
