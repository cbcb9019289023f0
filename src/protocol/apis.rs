//! The API table: every Kafka API Spate's codec speaks, its key, the versions the codec supports,
//! where its flexible versions start, and its request and response types.
//!
//! This one table generates `ApiKey`, the `Request` and `Response` enums and their decode/encode
//! dispatch, so adding an API is one line here plus its declarations in `messages/`. What the
//! broker *advertises* is the subset that has handlers (src/api/), never more than this.

use bytes::Bytes;

use super::error::CodecError;
use super::field::{Ctx, Field};
use super::messages::*;
use super::wire::{Reader, Writer};

/// An inclusive range of API versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// Lowest supported version.
    pub min: i16,
    /// Highest supported version.
    pub max: i16,
}

impl Versions {
    /// Whether `version` is in the range.
    pub fn contains(self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// A top-level request or response body of one API.
pub trait ApiMessage: Field + Default {
    /// The API this message belongs to.
    const API_KEY: ApiKey;
}

/// Decodes a request or response body at `version`, rejecting versions outside the table.
pub fn decode_message<M: ApiMessage>(body: Bytes, version: i16) -> Result<M, CodecError> {
    let ctx = M::API_KEY.body_ctx(version)?;
    M::read(&mut Reader::new(body), ctx)
}

/// Encodes a request or response body at `version`, rejecting versions outside the table.
pub fn encode_message<M: ApiMessage>(
    message: &M,
    version: i16,
    writer: &mut Writer,
) -> Result<(), CodecError> {
    let ctx = M::API_KEY.body_ctx(version)?;
    message.write(writer, ctx)
}

macro_rules! api_table {
    ($(
        $variant:ident = $key:literal, versions $min:literal ..= $max:literal,
        flexible $flexible:expr, $module:ident :: { $request:ident, $response:ident };
    )*) => {
        /// A Kafka API key that Spate's codec knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i16)]
        pub enum ApiKey {
            $(
                #[doc = concat!("Api key ", stringify!($key), ".")]
                $variant = $key,
            )*
        }

        impl ApiKey {
            /// Every API in the table, in table order.
            pub const ALL: &'static [ApiKey] = &[$(ApiKey::$variant),*];

            /// The API for a wire key, if the codec knows it.
            pub fn from_code(code: i16) -> Option<Self> {
                match code {
                    $($key => Some(ApiKey::$variant),)*
                    _ => None,
                }
            }

            /// The wire key.
            pub fn code(self) -> i16 {
                self as i16
            }

            /// Kafka's name for the API.
            pub fn name(self) -> &'static str {
                match self {
                    $(ApiKey::$variant => stringify!($variant),)*
                }
            }

            /// The versions the codec supports.
            pub fn versions(self) -> Versions {
                match self {
                    $(ApiKey::$variant => Versions { min: $min, max: $max },)*
                }
            }

            /// The first flexible version, if the API has any.
            pub fn flexible_min(self) -> Option<i16> {
                match self {
                    $(ApiKey::$variant => $flexible,)*
                }
            }
        }

        /// A decoded request body.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $(
                #[doc = concat!("A ", stringify!($variant), " request.")]
                $variant($module::$request),
            )*
        }

        /// A response body to encode.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Response {
            $(
                #[doc = concat!("A ", stringify!($variant), " response.")]
                $variant($module::$response),
            )*
        }

        impl Request {
            /// Decodes the body of a request for `api_key` at `version`.
            pub fn decode(api_key: ApiKey, version: i16, body: Bytes) -> Result<Self, CodecError> {
                Ok(match api_key {
                    $(ApiKey::$variant => Request::$variant(decode_message(body, version)?),)*
                })
            }

            /// Encodes the body at `version` (client side).
            pub fn encode(&self, version: i16, writer: &mut Writer) -> Result<(), CodecError> {
                match self {
                    $(Request::$variant(message) => encode_message(message, version, writer),)*
                }
            }

            /// The request's API.
            pub fn api_key(&self) -> ApiKey {
                match self {
                    $(Request::$variant(_) => ApiKey::$variant,)*
                }
            }
        }

        impl Response {
            /// Decodes the body of a response for `api_key` at `version` (client side).
            pub fn decode(api_key: ApiKey, version: i16, body: Bytes) -> Result<Self, CodecError> {
                Ok(match api_key {
                    $(ApiKey::$variant => Response::$variant(decode_message(body, version)?),)*
                })
            }

            /// Encodes the body at `version`.
            pub fn encode(&self, version: i16, writer: &mut Writer) -> Result<(), CodecError> {
                match self {
                    $(Response::$variant(message) => encode_message(message, version, writer),)*
                }
            }

            /// The response's API.
            pub fn api_key(&self) -> ApiKey {
                match self {
                    $(Response::$variant(_) => ApiKey::$variant,)*
                }
            }
        }

        $(
            impl ApiMessage for $module::$request {
                const API_KEY: ApiKey = ApiKey::$variant;
            }
            impl ApiMessage for $module::$response {
                const API_KEY: ApiKey = ApiKey::$variant;
            }
        )*
    };
}

api_table! {
    Produce = 0, versions 0..=11, flexible Some(9), produce::{ProduceRequest, ProduceResponse};
    Fetch = 1, versions 0..=12, flexible Some(12), fetch::{FetchRequest, FetchResponse};
    ListOffsets = 2, versions 0..=8, flexible Some(6), list_offsets::{ListOffsetsRequest, ListOffsetsResponse};
    Metadata = 3, versions 0..=12, flexible Some(9), metadata::{MetadataRequest, MetadataResponse};
    OffsetCommit = 8, versions 0..=8, flexible Some(8), offset_commit::{OffsetCommitRequest, OffsetCommitResponse};
    OffsetFetch = 9, versions 0..=8, flexible Some(6), offset_fetch::{OffsetFetchRequest, OffsetFetchResponse};
    FindCoordinator = 10, versions 0..=4, flexible Some(3), find_coordinator::{FindCoordinatorRequest, FindCoordinatorResponse};
    JoinGroup = 11, versions 0..=9, flexible Some(6), join_group::{JoinGroupRequest, JoinGroupResponse};
    Heartbeat = 12, versions 0..=4, flexible Some(4), heartbeat::{HeartbeatRequest, HeartbeatResponse};
    LeaveGroup = 13, versions 0..=5, flexible Some(4), leave_group::{LeaveGroupRequest, LeaveGroupResponse};
    SyncGroup = 14, versions 0..=5, flexible Some(4), sync_group::{SyncGroupRequest, SyncGroupResponse};
    DescribeGroups = 15, versions 0..=6, flexible Some(5), describe_groups::{DescribeGroupsRequest, DescribeGroupsResponse};
    ListGroups = 16, versions 0..=5, flexible Some(3), list_groups::{ListGroupsRequest, ListGroupsResponse};
    SaslHandshake = 17, versions 0..=1, flexible None, sasl_handshake::{SaslHandshakeRequest, SaslHandshakeResponse};
    ApiVersions = 18, versions 0..=4, flexible Some(3), api_versions::{ApiVersionsRequest, ApiVersionsResponse};
    CreateTopics = 19, versions 0..=7, flexible Some(5), create_topics::{CreateTopicsRequest, CreateTopicsResponse};
    DeleteTopics = 20, versions 0..=6, flexible Some(4), delete_topics::{DeleteTopicsRequest, DeleteTopicsResponse};
    DeleteRecords = 21, versions 0..=2, flexible Some(2), delete_records::{DeleteRecordsRequest, DeleteRecordsResponse};
    InitProducerId = 22, versions 0..=5, flexible Some(2), init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
    OffsetForLeaderEpoch = 23, versions 0..=4, flexible Some(4), offset_for_leader_epoch::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
    DescribeConfigs = 32, versions 0..=4, flexible Some(4), describe_configs::{DescribeConfigsRequest, DescribeConfigsResponse};
    AlterConfigs = 33, versions 0..=2, flexible Some(2), alter_configs::{AlterConfigsRequest, AlterConfigsResponse};
    SaslAuthenticate = 36, versions 0..=2, flexible Some(2), sasl_authenticate::{SaslAuthenticateRequest, SaslAuthenticateResponse};
    CreatePartitions = 37, versions 0..=3, flexible Some(2), create_partitions::{CreatePartitionsRequest, CreatePartitionsResponse};
    DeleteGroups = 42, versions 0..=2, flexible Some(2), delete_groups::{DeleteGroupsRequest, DeleteGroupsResponse};
    IncrementalAlterConfigs = 44, versions 0..=1, flexible Some(1), incremental_alter_configs::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
    OffsetDelete = 47, versions 0..=0, flexible None, offset_delete::{OffsetDeleteRequest, OffsetDeleteResponse};
    DescribeCluster = 60, versions 0..=1, flexible Some(0), describe_cluster::{DescribeClusterRequest, DescribeClusterResponse};
}

impl ApiKey {
    /// Whether `version` of this API uses compact lengths and tagged fields (also above the
    /// supported range, so a too-new request header still parses).
    pub fn is_flexible(self, version: i16) -> bool {
        self.flexible_min().is_some_and(|min| version >= min)
    }

    /// The request header version: 2 for flexible requests, else 1.
    pub fn request_header_version(self, version: i16) -> i16 {
        if self.is_flexible(version) { 2 } else { 1 }
    }

    /// The response header version: 1 for flexible responses, else 0, except that ApiVersions
    /// always answers with header v0 so a client can read it before it knows our versions.
    pub fn response_header_version(self, version: i16) -> i16 {
        if self != ApiKey::ApiVersions && self.is_flexible(version) {
            1
        } else {
            0
        }
    }

    fn body_ctx(self, version: i16) -> Result<Ctx, CodecError> {
        if !self.versions().contains(version) {
            return Err(CodecError::UnsupportedVersion {
                api_key: self.code(),
                api_version: version,
            });
        }
        Ok(Ctx {
            version,
            flexible: self.is_flexible(version),
            nullable: false,
        })
    }
}
