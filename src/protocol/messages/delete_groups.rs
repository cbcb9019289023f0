//! DeleteGroups: the request and response of api key 42, versions 0-2.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// DeleteGroups request (api key 42).
    pub struct DeleteGroupsRequest {
        /// The group names to delete.
        pub groups_names: Vec<String> [0..],
    }
}

kafka_struct! {
    /// DeleteGroups response (api key 42).
    pub struct DeleteGroupsResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [0..],
        /// The deletion results.
        pub results: Vec<DeletableGroupResult> [0..],
    }
}

kafka_struct! {
    /// The deletion results.
    pub struct DeletableGroupResult {
        /// The group id.
        pub group_id: String [0..],
        /// The deletion error, or 0 if the deletion succeeded.
        pub error_code: i16 [0..],
    }
}
