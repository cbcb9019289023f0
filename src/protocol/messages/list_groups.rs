//! ListGroups: the request and response of api key 16, versions 0-5.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// ListGroups request (api key 16).
    pub struct ListGroupsRequest {
        /// The states of the groups we want to list. If empty, all groups are returned with their
        /// state.
        pub states_filter: Vec<String> [4..],
        /// The types of the groups we want to list. If empty, all groups are returned with their
        /// type.
        pub types_filter: Vec<String> [5..],
    }
}

kafka_struct! {
    /// ListGroups response (api key 16).
    pub struct ListGroupsResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [1..],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// Each group in the response.
        pub groups: Vec<ListedGroup> [0..],
    }
}

kafka_struct! {
    /// Each group in the response.
    pub struct ListedGroup {
        /// The group ID.
        pub group_id: String [0..],
        /// The group protocol type.
        pub protocol_type: String [0..],
        /// The group state name.
        pub group_state: String [4..],
        /// The group type name.
        pub group_type: String [5..],
    }
}
