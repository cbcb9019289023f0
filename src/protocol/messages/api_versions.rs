//! ApiVersions: the request and response of api key 18, versions 0-4.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// ApiVersions request (api key 18).
    pub struct ApiVersionsRequest {
        /// The name of the client.
        pub client_software_name: String [3..],
        /// The version of the client.
        pub client_software_version: String [3..],
    }
}

kafka_struct! {
    /// ApiVersions response (api key 18).
    pub struct ApiVersionsResponse {
        /// The top-level error code.
        pub error_code: i16 [0..],
        /// The APIs supported by the broker.
        pub api_keys: Vec<ApiVersion> [0..],
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [1..],
        /// Features supported by the broker. Note: in v0-v3, features with MinSupportedVersion = 0
        /// are omitted.
        pub supported_features: Vec<SupportedFeatureKey> [3.., tag = 0],
        /// The monotonically increasing epoch for the finalized features information. Valid values
        /// are >= 0. A value of -1 is special and represents unknown epoch.
        pub finalized_features_epoch: i64 [3.., default = -1, tag = 1],
        /// List of cluster-wide finalized features. The information is valid only if
        /// FinalizedFeaturesEpoch >= 0.
        pub finalized_features: Vec<FinalizedFeatureKey> [3.., tag = 2],
        /// Set by a KRaft controller if the required configurations for ZK migration are present.
        pub zk_migration_ready: bool [3.., tag = 3],
    }
}

kafka_struct! {
    /// The APIs supported by the broker.
    pub struct ApiVersion {
        /// The API index.
        pub api_key: i16 [0..],
        /// The minimum supported version, inclusive.
        pub min_version: i16 [0..],
        /// The maximum supported version, inclusive.
        pub max_version: i16 [0..],
    }
}

kafka_struct! {
    /// Features supported by the broker. Note: in v0-v3, features with MinSupportedVersion = 0
    /// are omitted.
    pub struct SupportedFeatureKey {
        /// The name of the feature.
        pub name: String [3..],
        /// The minimum supported version for the feature.
        pub min_version: i16 [3..],
        /// The maximum supported version for the feature.
        pub max_version: i16 [3..],
    }
}

kafka_struct! {
    /// List of cluster-wide finalized features. The information is valid only if
    /// FinalizedFeaturesEpoch >= 0.
    pub struct FinalizedFeatureKey {
        /// The name of the feature.
        pub name: String [3..],
        /// The cluster-wide finalized max version level for the feature.
        pub max_version_level: i16 [3..],
        /// The cluster-wide finalized min version level for the feature.
        pub min_version_level: i16 [3..],
    }
}
