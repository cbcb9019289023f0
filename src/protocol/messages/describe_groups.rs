//! DescribeGroups: the request and response of api key 15, versions 0-6.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use bytes::Bytes;

use crate::kafka_struct;

kafka_struct! {
    /// DescribeGroups request (api key 15).
    pub struct DescribeGroupsRequest {
        /// The names of the groups to describe.
        pub groups: Vec<String> [0..],
        /// Whether to include authorized operations.
        pub include_authorized_operations: bool [3..],
    }
}

kafka_struct! {
    /// DescribeGroups response (api key 15).
    pub struct DescribeGroupsResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [1..],
        /// Each described group.
        pub groups: Vec<DescribedGroup> [0..],
    }
}

kafka_struct! {
    /// Each described group.
    pub struct DescribedGroup {
        /// The describe error, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// The describe error message, or null if there was no error.
        pub error_message: Option<String> [6..],
        /// The group ID string.
        pub group_id: String [0..],
        /// The group state string, or the empty string.
        pub group_state: String [0..],
        /// The group protocol type, or the empty string.
        pub protocol_type: String [0..],
        /// The group protocol data, or the empty string.
        pub protocol_data: String [0..],
        /// The group members.
        pub members: Vec<DescribedGroupMember> [0..],
        /// 32-bit bitfield to represent authorized operations for this group.
        pub authorized_operations: i32 [3.., default = -2147483648],
    }
}

kafka_struct! {
    /// The group members.
    pub struct DescribedGroupMember {
        /// The member id.
        pub member_id: String [0..],
        /// The unique identifier of the consumer instance provided by end user.
        pub group_instance_id: Option<String> [4..],
        /// The client ID used in the member's latest join group request.
        pub client_id: String [0..],
        /// The client host.
        pub client_host: String [0..],
        /// The metadata corresponding to the current group protocol in use.
        pub member_metadata: Bytes [0..],
        /// The current assignment provided by the group leader.
        pub member_assignment: Bytes [0..],
    }
}
