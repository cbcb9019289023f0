//! The client's error type: every way a request, a produce or a fetch can fail, as a value.
//!
//! `ClientError` is `Clone` because one failure (a closed connection, a broker error for a
//! partition) is reported to every waiter and every batch it affects. Kafka error codes stay
//! numeric (`code: i16`) so a code this crate does not know is still reported faithfully;
//! [`ClientError::kafka_code`] maps it to [`ErrorCode`] where known.

use std::sync::Arc;

use crate::protocol::record_batch::BatchError;
use crate::protocol::{ApiKey, CodecError, ErrorCode};

/// Why a client operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The socket failed (connect, read or write).
    #[error("io: {0}")]
    Io(Arc<std::io::Error>),
    /// A frame could not be encoded, or a response could not be decoded.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// A fetched RecordBatch failed validation (CRC, length, magic).
    #[error("record batch: {0}")]
    Batch(#[from] BatchError),
    /// The broker answered with a Kafka error code.
    #[error("{context}: {}", kafka_code_name(*code))]
    Kafka {
        /// The wire error code.
        code: i16,
        /// What was being done (request, topic, partition).
        context: String,
    },
    /// The connection closed before the response arrived (or was already closed).
    #[error("connection closed")]
    Closed,
    /// No response within the request timeout.
    #[error("request timed out")]
    Timeout,
    /// The broker does not support any version of this API that the codec speaks.
    #[error("broker does not support {0:?} at a version the codec speaks")]
    UnsupportedApi(ApiKey),
    /// Metadata names no leader for the partition (unknown topic, partition out of range, or
    /// an election in progress).
    #[error("no leader for {topic}-{partition}")]
    NoLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// Metadata does not list the node (it left the cluster, or metadata is stale).
    #[error("unknown node {0}")]
    UnknownNode(i32),
    /// The broker answered a request with a response for another API or without an entry
    /// the request needs.
    #[error("unexpected response: {0}")]
    UnexpectedResponse(&'static str),
    /// A batch's records could not be compressed or decompressed.
    #[error("compression: {0}")]
    Compression(String),
    /// A caller passed an argument the client cannot use.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl From<std::io::Error> for ClientError {
    fn from(error: std::io::Error) -> Self {
        ClientError::Io(Arc::new(error))
    }
}

fn kafka_code_name(code: i16) -> String {
    match ErrorCode::from_code(code) {
        Some(known) => known.to_string(),
        None => format!("error code {code}"),
    }
}

impl ClientError {
    /// A Kafka error from a response's error code, or `None` for NO_ERROR.
    pub fn from_code(code: i16, context: impl FnOnce() -> String) -> Option<Self> {
        (code != ErrorCode::NoError.code()).then(|| ClientError::Kafka {
            code,
            context: context(),
        })
    }

    /// The Kafka error code, if this is a known broker error.
    pub fn kafka_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Kafka { code, .. } => ErrorCode::from_code(*code),
            _ => None,
        }
    }

    /// Whether retrying (after refreshing metadata or reconnecting) may succeed: a lost or
    /// timed-out connection, a stale leader, or a Kafka code Kafka marks retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Io(_)
            | ClientError::Closed
            | ClientError::Timeout
            | ClientError::NoLeader { .. }
            | ClientError::UnknownNode(_) => true,
            ClientError::Kafka { code, .. } => {
                ErrorCode::from_code(*code).is_some_and(ErrorCode::is_retriable)
            }
            ClientError::Codec(_)
            | ClientError::Batch(_)
            | ClientError::UnsupportedApi(_)
            | ClientError::UnexpectedResponse(_)
            | ClientError::Compression(_)
            | ClientError::InvalidArgument(_) => false,
        }
    }

    /// Whether the error means our metadata may be stale (leader moved, topic recreated, node
    /// gone), so a refresh should precede the retry.
    pub fn needs_metadata_refresh(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } => matches!(
                ErrorCode::from_code(*code),
                Some(
                    ErrorCode::NotLeaderOrFollower
                        | ErrorCode::UnknownTopicOrPartition
                        | ErrorCode::LeaderNotAvailable
                        | ErrorCode::FencedLeaderEpoch
                        | ErrorCode::UnknownLeaderEpoch
                )
            ),
            ClientError::Io(_)
            | ClientError::Closed
            | ClientError::NoLeader { .. }
            | ClientError::UnknownNode(_) => true,
            _ => false,
        }
    }
}
