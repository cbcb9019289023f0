//! The one place where the broker's typed errors become Kafka error codes. Each match is
//! exhaustive with no catch-all arm, so a new error variant forces a decision here.

use crate::group::GroupError;
use crate::log::LogError;
use crate::meta::controller::TopicError;
use crate::protocol::ErrorCode;
use crate::protocol::compression::CompressionError;
use crate::protocol::record_batch::BatchError;
use crate::protocol::record_validation::ValidationError;

/// The code for a refused topic change.
pub fn topic_error_code(error: &TopicError) -> ErrorCode {
    match error {
        TopicError::InvalidName(_) | TopicError::InternalTopic(_) => {
            ErrorCode::InvalidTopicException
        }
        TopicError::AlreadyExists(_) => ErrorCode::TopicAlreadyExists,
        TopicError::UnknownTopic(_) => ErrorCode::UnknownTopicOrPartition,
        TopicError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
        TopicError::InvalidReplicationFactor(_) | TopicError::NotEnoughBrokers { .. } => {
            ErrorCode::InvalidReplicationFactor
        }
        // Only the broker's own leader reports carry it; no client sees it.
        TopicError::StaleLeader(_) => ErrorCode::FencedLeaderEpoch,
        TopicError::ManualAssignment => ErrorCode::InvalidRequest,
        TopicError::InvalidReplicaAssignment(_) => ErrorCode::InvalidReplicationAssignment,
        TopicError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        TopicError::Storage(_) => ErrorCode::KafkaStorageError,
        // Kafka's answer when no broker can take a replica.
        TopicError::NoLiveBrokers => ErrorCode::InvalidReplicationFactor,
        // Retriable: admin clients look the controller up again and retry.
        TopicError::ControllerUnavailable(_) => ErrorCode::NotController,
        TopicError::TimedOut(_) => ErrorCode::RequestTimedOut,
    }
}

/// The code for a batch that failed validation.
pub fn batch_error_code(error: &BatchError) -> ErrorCode {
    match error {
        BatchError::Truncated { .. } | BatchError::InvalidLength { .. } => {
            ErrorCode::CorruptMessage
        }
        BatchError::CrcMismatch { .. } => ErrorCode::CorruptMessage,
        BatchError::UnsupportedMagic { .. } | BatchError::InvalidRecordsCount { .. } => {
            ErrorCode::InvalidRecord
        }
        BatchError::UnknownCompression { .. } => ErrorCode::UnsupportedCompressionType,
    }
}

/// The code for a batch whose records failed validation: Kafka's InvalidRecordException for a
/// malformed record, CorruptRecordException for bytes that do not decompress.
pub fn validation_error_code(error: &ValidationError) -> ErrorCode {
    match error {
        ValidationError::Batch(error) => batch_error_code(error),
        ValidationError::Record(_) => ErrorCode::InvalidRecord,
        ValidationError::Compression(error) => compression_error_code(error),
    }
}

/// The code for a batch that could not be decompressed or re-compressed.
pub fn compression_error_code(error: &CompressionError) -> ErrorCode {
    match error {
        CompressionError::Corrupt { .. } => ErrorCode::CorruptMessage,
        CompressionError::TooLarge { .. } => ErrorCode::MessageTooLarge,
        CompressionError::Encoder { .. } => ErrorCode::UnknownServerError,
    }
}

/// The code for a log failure.
pub fn log_error_code(error: &LogError) -> ErrorCode {
    match error {
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::Io(_)
        | LogError::NoSpace(_)
        | LogError::Poisoned(_)
        | LogError::Offline(_)
        | LogError::Corrupt { .. }
        | LogError::Closed => ErrorCode::KafkaStorageError,
        LogError::InvalidBatch(error) => batch_error_code(error),
        LogError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
        LogError::InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
        LogError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequenceNumber,
        // Replication between brokers only; a client never sends a replica's append.
        LogError::NotAtLogEnd { .. } => ErrorCode::UnknownServerError,
        LogError::StaleLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
        LogError::EpochNotBegun { .. } => ErrorCode::UnknownLeaderEpoch,
    }
}

/// The code for a refused group or offset operation.
pub fn group_error_code(error: &GroupError) -> ErrorCode {
    match error {
        GroupError::InvalidGroupId => ErrorCode::InvalidGroupId,
        GroupError::InvalidSessionTimeout(_) => ErrorCode::InvalidSessionTimeout,
        GroupError::MemberIdRequired => ErrorCode::MemberIdRequired,
        GroupError::UnknownMemberId => ErrorCode::UnknownMemberId,
        GroupError::IllegalGeneration => ErrorCode::IllegalGeneration,
        GroupError::RebalanceInProgress => ErrorCode::RebalanceInProgress,
        GroupError::InconsistentGroupProtocol => ErrorCode::InconsistentGroupProtocol,
        GroupError::FencedInstanceId => ErrorCode::FencedInstanceId,
        GroupError::CoordinatorLoading => ErrorCode::CoordinatorLoadInProgress,
        GroupError::NotCoordinator => ErrorCode::NotCoordinator,
        GroupError::CoordinatorNotAvailable(_) => ErrorCode::CoordinatorNotAvailable,
        GroupError::GroupIdNotFound => ErrorCode::GroupIdNotFound,
        GroupError::NonEmptyGroup => ErrorCode::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic => ErrorCode::GroupSubscribedToTopic,
        GroupError::OffsetMetadataTooLarge(_) => ErrorCode::OffsetMetadataTooLarge,
    }
}
