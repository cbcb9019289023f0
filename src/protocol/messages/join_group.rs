//! JoinGroup: the request and response of api key 11, versions 0-9.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use bytes::Bytes;

use crate::kafka_struct;

kafka_struct! {
    /// JoinGroup request (api key 11).
    pub struct JoinGroupRequest {
        /// The group identifier.
        pub group_id: String [0..],
        /// The coordinator considers the consumer dead if it receives no heartbeat after this timeout
        /// in milliseconds.
        pub session_timeout_ms: i32 [0..],
        /// The maximum time in milliseconds that the coordinator will wait for each member to rejoin
        /// when rebalancing the group.
        pub rebalance_timeout_ms: i32 [1.., default = -1],
        /// The member id assigned by the group coordinator.
        pub member_id: String [0..],
        /// The unique identifier of the consumer instance provided by end user.
        pub group_instance_id: Option<String> [5..],
        /// The unique name the for class of protocols implemented by the group we want to join.
        pub protocol_type: String [0..],
        /// The list of protocols that the member supports.
        pub protocols: Vec<JoinGroupRequestProtocol> [0..],
        /// The reason why the member (re-)joins the group.
        pub reason: Option<String> [8..],
    }
}

kafka_struct! {
    /// The list of protocols that the member supports.
    pub struct JoinGroupRequestProtocol {
        /// The protocol name.
        pub name: String [0..],
        /// The protocol metadata.
        pub metadata: Bytes [0..],
    }
}

kafka_struct! {
    /// JoinGroup response (api key 11).
    pub struct JoinGroupResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [2..],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// The generation ID of the group.
        pub generation_id: i32 [0.., default = -1],
        /// The group protocol name.
        pub protocol_type: Option<String> [7..],
        /// The group protocol selected by the coordinator.
        pub protocol_name: Option<String> [0.., nullable = 7..],
        /// The leader of the group.
        pub leader: String [0..],
        /// True if the leader must skip running the assignment.
        pub skip_assignment: bool [9..],
        /// The member ID assigned by the group coordinator.
        pub member_id: String [0..],
        /// The group members.
        pub members: Vec<JoinGroupResponseMember> [0..],
    }
}

kafka_struct! {
    /// The group members.
    pub struct JoinGroupResponseMember {
        /// The group member ID.
        pub member_id: String [0..],
        /// The unique identifier of the consumer instance provided by end user.
        pub group_instance_id: Option<String> [5..],
        /// The group member metadata.
        pub metadata: Bytes [0..],
    }
}
