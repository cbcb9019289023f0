//! DeleteTopics: the request and response of api key 20, versions 0-6.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;
use crate::protocol::field::Uuid;

kafka_struct! {
    /// DeleteTopics request (api key 20).
    pub struct DeleteTopicsRequest {
        /// The name or topic ID of the topic.
        pub topics: Vec<DeleteTopicState> [6..],
        /// The names of the topics to delete.
        pub topic_names: Vec<String> [0..=5],
        /// The length of time in milliseconds to wait for the deletions to complete.
        pub timeout_ms: i32 [0..],
    }
}

kafka_struct! {
    /// The name or topic ID of the topic.
    pub struct DeleteTopicState {
        /// The topic name.
        pub name: Option<String> [6..],
        /// The unique topic ID.
        pub topic_id: Uuid [6..],
    }
}

kafka_struct! {
    /// DeleteTopics response (api key 20).
    pub struct DeleteTopicsResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [1..],
        /// The results for each topic we tried to delete.
        pub responses: Vec<DeletableTopicResult> [0..],
    }
}

kafka_struct! {
    /// The results for each topic we tried to delete.
    pub struct DeletableTopicResult {
        /// The topic name.
        pub name: Option<String> [0.., nullable = 6..],
        /// The unique topic ID.
        pub topic_id: Uuid [6..],
        /// The deletion error, or 0 if the deletion succeeded.
        pub error_code: i16 [0..],
        /// The error message, or null if there was no error.
        pub error_message: Option<String> [5..],
    }
}
