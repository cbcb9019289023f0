//! Heartbeat: the request and response of api key 12, versions 0-4.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// Heartbeat request (api key 12).
    pub struct HeartbeatRequest {
        /// The group id.
        pub group_id: String [0..],
        /// The generation of the group.
        pub generation_id: i32 [0..],
        /// The member ID.
        pub member_id: String [0..],
        /// The unique identifier of the consumer instance provided by end user.
        pub group_instance_id: Option<String> [3..],
    }
}

kafka_struct! {
    /// Heartbeat response (api key 12).
    pub struct HeartbeatResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [1..],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..],
    }
}
