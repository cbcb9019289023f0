//! AlterConfigs: the request and response of api key 33, versions 0-2 (the legacy, whole-config
//! form that IncrementalAlterConfigs superseded; still in Kafka 4).
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// AlterConfigs request (api key 33).
    pub struct AlterConfigsRequest {
        /// The updates for each resource.
        pub resources: Vec<AlterConfigsResource> [0..],
        /// True if we should validate the request, but not change the configurations.
        pub validate_only: bool [0..],
    }
}

kafka_struct! {
    /// The updates for each resource.
    pub struct AlterConfigsResource {
        /// The resource type.
        pub resource_type: i8 [0..],
        /// The resource name.
        pub resource_name: String [0..],
        /// The configurations.
        pub configs: Vec<AlterableConfig> [0..],
    }
}

kafka_struct! {
    /// The configurations.
    pub struct AlterableConfig {
        /// The configuration key name.
        pub name: String [0..],
        /// The value to set for the configuration key.
        pub value: Option<String> [0..],
    }
}

kafka_struct! {
    /// AlterConfigs response (api key 33).
    pub struct AlterConfigsResponse {
        /// Duration in milliseconds for which the request was throttled due to a quota violation, or
        /// zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [0..],
        /// The responses for each resource.
        pub responses: Vec<AlterConfigsResourceResponse> [0..],
    }
}

kafka_struct! {
    /// The responses for each resource.
    pub struct AlterConfigsResourceResponse {
        /// The resource error code.
        pub error_code: i16 [0..],
        /// The resource error message, or null if there was no error.
        pub error_message: Option<String> [0..],
        /// The resource type.
        pub resource_type: i8 [0..],
        /// The resource name.
        pub resource_name: String [0..],
    }
}
