//! FindCoordinator: the request and response of api key 10, versions 0-4.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// FindCoordinator request (api key 10).
    pub struct FindCoordinatorRequest {
        /// The coordinator key.
        pub key: String [0..=3],
        /// The coordinator key type. (group, transaction, share).
        pub key_type: i8 [1..],
        /// The coordinator keys.
        pub coordinator_keys: Vec<String> [4..],
    }
}

kafka_struct! {
    /// FindCoordinator response (api key 10).
    pub struct FindCoordinatorResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [1..],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..=3],
        /// The error message, or null if there was no error.
        pub error_message: Option<String> [1..=3],
        /// The node id.
        pub node_id: i32 [0..=3],
        /// The host name.
        pub host: String [0..=3],
        /// The port.
        pub port: i32 [0..=3],
        /// Each coordinator result in the response.
        pub coordinators: Vec<Coordinator> [4..],
    }
}

kafka_struct! {
    /// Each coordinator result in the response.
    pub struct Coordinator {
        /// The coordinator key.
        pub key: String [4..],
        /// The node id.
        pub node_id: i32 [4..],
        /// The host name.
        pub host: String [4..],
        /// The port.
        pub port: i32 [4..],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [4..],
        /// The error message, or null if there was no error.
        pub error_message: Option<String> [4..],
    }
}
