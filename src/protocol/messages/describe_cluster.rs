//! DescribeCluster: the request and response of api key 60, versions 0-1.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// DescribeCluster request (api key 60).
    pub struct DescribeClusterRequest {
        /// Whether to include cluster authorized operations.
        pub include_cluster_authorized_operations: bool [0..],
        /// The endpoint type to describe. 1=brokers, 2=controllers.
        pub endpoint_type: i8 [1.., default = 1],
    }
}

kafka_struct! {
    /// DescribeCluster response (api key 60).
    pub struct DescribeClusterResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [0..],
        /// The top-level error code, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// The top-level error message, or null if there was no error.
        pub error_message: Option<String> [0..],
        /// The endpoint type that was described. 1=brokers, 2=controllers.
        pub endpoint_type: i8 [1.., default = 1],
        /// The cluster ID that responding broker belongs to.
        pub cluster_id: String [0..],
        /// The ID of the controller. When handled by a controller, returns the current voter leader
        /// ID. When handled by a broker, returns a random alive broker ID as a fallback.
        pub controller_id: i32 [0.., default = -1],
        /// Each broker in the response.
        pub brokers: Vec<DescribeClusterBroker> [0..],
        /// 32-bit bitfield to represent authorized operations for this cluster.
        pub cluster_authorized_operations: i32 [0.., default = -2147483648],
    }
}

kafka_struct! {
    /// Each broker in the response.
    pub struct DescribeClusterBroker {
        /// The broker ID.
        pub broker_id: i32 [0..],
        /// The broker hostname.
        pub host: String [0..],
        /// The broker port.
        pub port: i32 [0..],
        /// The rack of the broker, or null if it has not been assigned to a rack.
        pub rack: Option<String> [0..],
    }
}
