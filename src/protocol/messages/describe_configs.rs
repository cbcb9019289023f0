//! DescribeConfigs: the request and response of api key 32, versions 0-4.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// DescribeConfigs request (api key 32).
    pub struct DescribeConfigsRequest {
        /// The resources whose configurations we want to describe.
        pub resources: Vec<DescribeConfigsResource> [0..],
        /// True if we should include all synonyms.
        pub include_synonyms: bool [1..],
        /// True if we should include configuration documentation.
        pub include_documentation: bool [3..],
    }
}

kafka_struct! {
    /// The resources whose configurations we want to describe.
    pub struct DescribeConfigsResource {
        /// The resource type.
        pub resource_type: i8 [0..],
        /// The resource name.
        pub resource_name: String [0..],
        /// The configuration keys to list, or null to list all configuration keys.
        pub configuration_keys: Option<Vec<String>> [0..],
    }
}

kafka_struct! {
    /// DescribeConfigs response (api key 32).
    pub struct DescribeConfigsResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [0..],
        /// The results for each resource.
        pub results: Vec<DescribeConfigsResult> [0..],
    }
}

kafka_struct! {
    /// The results for each resource.
    pub struct DescribeConfigsResult {
        /// The error code, or 0 if we were able to successfully describe the configurations.
        pub error_code: i16 [0..],
        /// The error message, or null if we were able to successfully describe the configurations.
        pub error_message: Option<String> [0..],
        /// The resource type.
        pub resource_type: i8 [0..],
        /// The resource name.
        pub resource_name: String [0..],
        /// Each listed configuration.
        pub configs: Vec<DescribeConfigsResourceResult> [0..],
    }
}

kafka_struct! {
    /// Each listed configuration.
    pub struct DescribeConfigsResourceResult {
        /// The configuration name.
        pub name: String [0..],
        /// The configuration value.
        pub value: Option<String> [0..],
        /// True if the configuration is read-only.
        pub read_only: bool [0..],
        /// True if the configuration is not set.
        pub is_default: bool [0..=0],
        /// The configuration source.
        pub config_source: i8 [1.., default = -1],
        /// True if this configuration is sensitive.
        pub is_sensitive: bool [0..],
        /// The synonyms for this configuration key.
        pub synonyms: Vec<DescribeConfigsSynonym> [1..],
        /// The configuration data type. Type can be one of the following values - BOOLEAN, STRING,
        /// INT, SHORT, LONG, DOUBLE, LIST, CLASS, PASSWORD.
        pub config_type: i8 [3..],
        /// The configuration documentation.
        pub documentation: Option<String> [3..],
    }
}

kafka_struct! {
    /// The synonyms for this configuration key.
    pub struct DescribeConfigsSynonym {
        /// The synonym name.
        pub name: String [1..],
        /// The synonym value.
        pub value: Option<String> [1..],
        /// The synonym source.
        pub source: i8 [1..],
    }
}
