//! LeaveGroup: the request and response of api key 13, versions 0-5.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// LeaveGroup request (api key 13).
    pub struct LeaveGroupRequest {
        /// The ID of the group to leave.
        pub group_id: String [0..],
        /// The member ID to remove from the group.
        pub member_id: String [0..=2],
        /// List of leaving member identities.
        pub members: Vec<MemberIdentity> [3..],
    }
}

kafka_struct! {
    /// List of leaving member identities.
    pub struct MemberIdentity {
        /// The member ID to remove from the group.
        pub member_id: String [3..],
        /// The group instance ID to remove from the group.
        pub group_instance_id: Option<String> [3..],
        /// The reason why the member left the group.
        pub reason: Option<String> [5..],
    }
}

kafka_struct! {
    /// LeaveGroup response (api key 13).
    pub struct LeaveGroupResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [1..],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// List of leaving member responses.
        pub members: Vec<MemberResponse> [3..],
    }
}

kafka_struct! {
    /// List of leaving member responses.
    pub struct MemberResponse {
        /// The member ID to remove from the group.
        pub member_id: String [3..],
        /// The group instance ID to remove from the group.
        pub group_instance_id: Option<String> [3..],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [3..],
    }
}
