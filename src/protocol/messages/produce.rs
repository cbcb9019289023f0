//! Produce: the request and response of api key 0, versions 0-11 (0-2 are decoded only to be refused: they carry magic 0/1 message sets).
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use bytes::Bytes;

use crate::kafka_struct;

kafka_struct! {
    /// Produce request (api key 0).
    pub struct ProduceRequest {
        /// The transactional ID, or null if the producer is not transactional.
        pub transactional_id: Option<String> [3..],
        /// The number of acknowledgments the producer requires the leader to have received before
        /// considering a request complete. Allowed values: 0 for no acknowledgments, 1 for only the
        /// leader and -1 for the full ISR.
        pub acks: i16 [0..],
        /// The timeout to await a response in milliseconds.
        pub timeout_ms: i32 [0..],
        /// Each topic to produce to.
        pub topic_data: Vec<TopicProduceData> [0..],
    }
}

kafka_struct! {
    /// Each topic to produce to.
    pub struct TopicProduceData {
        /// The topic name.
        pub name: String [0..=12],
        /// Each partition to produce to.
        pub partition_data: Vec<PartitionProduceData> [0..],
    }
}

kafka_struct! {
    /// Each partition to produce to.
    pub struct PartitionProduceData {
        /// The partition index.
        pub index: i32 [0..],
        /// The record data to be produced.
        pub records: Option<Bytes> [0..],
    }
}

kafka_struct! {
    /// Produce response (api key 0).
    pub struct ProduceResponse {
        /// Each produce response.
        pub responses: Vec<TopicProduceResponse> [0..],
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [1..],
        /// Endpoints for all current-leaders enumerated in PartitionProduceResponses, with errors
        /// NOT_LEADER_OR_FOLLOWER.
        pub node_endpoints: Vec<NodeEndpoint> [10.., tag = 0],
    }
}

kafka_struct! {
    /// Each produce response.
    pub struct TopicProduceResponse {
        /// The topic name.
        pub name: String [0..=12],
        /// Each partition that we produced to within the topic.
        pub partition_responses: Vec<PartitionProduceResponse> [0..],
    }
}

kafka_struct! {
    /// Each partition that we produced to within the topic.
    pub struct PartitionProduceResponse {
        /// The partition index.
        pub index: i32 [0..],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// The base offset.
        pub base_offset: i64 [0..],
        /// The timestamp returned by broker after appending the messages. If CreateTime is used for
        /// the topic, the timestamp will be -1. If LogAppendTime is used for the topic, the timestamp
        /// will be the broker local time when the messages are appended.
        pub log_append_time_ms: i64 [2.., default = -1],
        /// The log start offset.
        pub log_start_offset: i64 [5.., default = -1],
        /// The batch indices of records that caused the batch to be dropped.
        pub record_errors: Vec<BatchIndexAndErrorMessage> [8..],
        /// The global error message summarizing the common root cause of the records that caused the
        /// batch to be dropped.
        pub error_message: Option<String> [8..],
        /// The leader broker that the producer should use for future requests.
        pub current_leader: LeaderIdAndEpoch [10.., tag = 0],
    }
}

kafka_struct! {
    /// The batch indices of records that caused the batch to be dropped.
    pub struct BatchIndexAndErrorMessage {
        /// The batch index of the record that caused the batch to be dropped.
        pub batch_index: i32 [8..],
        /// The error message of the record that caused the batch to be dropped.
        pub batch_index_error_message: Option<String> [8..],
    }
}

kafka_struct! {
    /// The leader broker that the producer should use for future requests.
    pub struct LeaderIdAndEpoch {
        /// The ID of the current leader or -1 if the leader is unknown.
        pub leader_id: i32 [10.., default = -1],
        /// The latest known leader epoch.
        pub leader_epoch: i32 [10.., default = -1],
    }
}

kafka_struct! {
    /// Endpoints for all current-leaders enumerated in PartitionProduceResponses, with errors
    /// NOT_LEADER_OR_FOLLOWER.
    pub struct NodeEndpoint {
        /// The ID of the associated node.
        pub node_id: i32 [10..],
        /// The node's hostname.
        pub host: String [10..],
        /// The node's port.
        pub port: i32 [10..],
        /// The rack of the node, or null if it has not been assigned to a rack.
        pub rack: Option<String> [10..],
    }
}
