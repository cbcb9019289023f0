//! CreatePartitions: the request and response of api key 37, versions 0-3.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// CreatePartitions request (api key 37).
    pub struct CreatePartitionsRequest {
        /// Each topic that we want to create new partitions inside.
        pub topics: Vec<CreatePartitionsTopic> [0..],
        /// The time in ms to wait for the partitions to be created.
        pub timeout_ms: i32 [0..],
        /// If true, then validate the request, but don't actually increase the number of partitions.
        pub validate_only: bool [0..],
    }
}

kafka_struct! {
    /// Each topic that we want to create new partitions inside.
    pub struct CreatePartitionsTopic {
        /// The topic name.
        pub name: String [0..],
        /// The new partition count.
        pub count: i32 [0..],
        /// The new partition assignments.
        pub assignments: Option<Vec<CreatePartitionsAssignment>> [0..],
    }
}

kafka_struct! {
    /// The new partition assignments.
    pub struct CreatePartitionsAssignment {
        /// The assigned broker IDs.
        pub broker_ids: Vec<i32> [0..],
    }
}

kafka_struct! {
    /// CreatePartitions response (api key 37).
    pub struct CreatePartitionsResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [0..],
        /// The partition creation results for each topic.
        pub results: Vec<CreatePartitionsTopicResult> [0..],
    }
}

kafka_struct! {
    /// The partition creation results for each topic.
    pub struct CreatePartitionsTopicResult {
        /// The topic name.
        pub name: String [0..],
        /// The result error, or zero if there was no error.
        pub error_code: i16 [0..],
        /// The result message, or null if there was no error.
        pub error_message: Option<String> [0..],
    }
}
