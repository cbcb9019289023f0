//! SyncGroup: the request and response of api key 14, versions 0-5.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use bytes::Bytes;

use crate::kafka_struct;

kafka_struct! {
    /// SyncGroup request (api key 14).
    pub struct SyncGroupRequest {
        /// The unique group identifier.
        pub group_id: String [0..],
        /// The generation of the group.
        pub generation_id: i32 [0..],
        /// The member ID assigned by the group.
        pub member_id: String [0..],
        /// The unique identifier of the consumer instance provided by end user.
        pub group_instance_id: Option<String> [3..],
        /// The group protocol type.
        pub protocol_type: Option<String> [5..],
        /// The group protocol name.
        pub protocol_name: Option<String> [5..],
        /// Each assignment.
        pub assignments: Vec<SyncGroupRequestAssignment> [0..],
    }
}

kafka_struct! {
    /// Each assignment.
    pub struct SyncGroupRequestAssignment {
        /// The ID of the member to assign.
        pub member_id: String [0..],
        /// The member assignment.
        pub assignment: Bytes [0..],
    }
}

kafka_struct! {
    /// SyncGroup response (api key 14).
    pub struct SyncGroupResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [1..],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// The group protocol type.
        pub protocol_type: Option<String> [5..],
        /// The group protocol name.
        pub protocol_name: Option<String> [5..],
        /// The member assignment.
        pub assignment: Bytes [0..],
    }
}
