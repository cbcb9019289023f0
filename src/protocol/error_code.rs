//! Kafka's error codes, with Kafka's numbers and names.
//!
//! Only the protocol edge (src/api/) turns a layer's error into one of these; the numbers are the
//! wire values every client knows, and `name` gives Kafka's own spelling for logs.

/// A Kafka protocol error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ErrorCode {
    /// `UNKNOWN_SERVER_ERROR`
    UnknownServerError = -1,
    /// `NO_ERROR`
    NoError = 0,
    /// `OFFSET_OUT_OF_RANGE`
    OffsetOutOfRange = 1,
    /// `CORRUPT_MESSAGE`
    CorruptMessage = 2,
    /// `UNKNOWN_TOPIC_OR_PARTITION`
    UnknownTopicOrPartition = 3,
    /// `INVALID_FETCH_SIZE`
    InvalidFetchSize = 4,
    /// `LEADER_NOT_AVAILABLE`
    LeaderNotAvailable = 5,
    /// `NOT_LEADER_OR_FOLLOWER`
    NotLeaderOrFollower = 6,
    /// `REQUEST_TIMED_OUT`
    RequestTimedOut = 7,
    /// `BROKER_NOT_AVAILABLE`
    BrokerNotAvailable = 8,
    /// `REPLICA_NOT_AVAILABLE`
    ReplicaNotAvailable = 9,
    /// `MESSAGE_TOO_LARGE`
    MessageTooLarge = 10,
    /// `STALE_CONTROLLER_EPOCH`
    StaleControllerEpoch = 11,
    /// `OFFSET_METADATA_TOO_LARGE`
    OffsetMetadataTooLarge = 12,
    /// `NETWORK_EXCEPTION`
    NetworkException = 13,
    /// `COORDINATOR_LOAD_IN_PROGRESS`
    CoordinatorLoadInProgress = 14,
    /// `COORDINATOR_NOT_AVAILABLE`
    CoordinatorNotAvailable = 15,
    /// `NOT_COORDINATOR`
    NotCoordinator = 16,
    /// `INVALID_TOPIC_EXCEPTION`
    InvalidTopicException = 17,
    /// `RECORD_LIST_TOO_LARGE`
    RecordListTooLarge = 18,
    /// `NOT_ENOUGH_REPLICAS`
    NotEnoughReplicas = 19,
    /// `NOT_ENOUGH_REPLICAS_AFTER_APPEND`
    NotEnoughReplicasAfterAppend = 20,
    /// `INVALID_REQUIRED_ACKS`
    InvalidRequiredAcks = 21,
    /// `ILLEGAL_GENERATION`
    IllegalGeneration = 22,
    /// `INCONSISTENT_GROUP_PROTOCOL`
    InconsistentGroupProtocol = 23,
    /// `INVALID_GROUP_ID`
    InvalidGroupId = 24,
    /// `UNKNOWN_MEMBER_ID`
    UnknownMemberId = 25,
    /// `INVALID_SESSION_TIMEOUT`
    InvalidSessionTimeout = 26,
    /// `REBALANCE_IN_PROGRESS`
    RebalanceInProgress = 27,
    /// `INVALID_COMMIT_OFFSET_SIZE`
    InvalidCommitOffsetSize = 28,
    /// `TOPIC_AUTHORIZATION_FAILED`
    TopicAuthorizationFailed = 29,
    /// `GROUP_AUTHORIZATION_FAILED`
    GroupAuthorizationFailed = 30,
    /// `CLUSTER_AUTHORIZATION_FAILED`
    ClusterAuthorizationFailed = 31,
    /// `INVALID_TIMESTAMP`
    InvalidTimestamp = 32,
    /// `UNSUPPORTED_SASL_MECHANISM`
    UnsupportedSaslMechanism = 33,
    /// `ILLEGAL_SASL_STATE`
    IllegalSaslState = 34,
    /// `UNSUPPORTED_VERSION`
    UnsupportedVersion = 35,
    /// `TOPIC_ALREADY_EXISTS`
    TopicAlreadyExists = 36,
    /// `INVALID_PARTITIONS`
    InvalidPartitions = 37,
    /// `INVALID_REPLICATION_FACTOR`
    InvalidReplicationFactor = 38,
    /// `INVALID_REPLICATION_ASSIGNMENT`
    InvalidReplicationAssignment = 39,
    /// `INVALID_CONFIG`
    InvalidConfig = 40,
    /// `NOT_CONTROLLER`
    NotController = 41,
    /// `INVALID_REQUEST`
    InvalidRequest = 42,
    /// `UNSUPPORTED_FOR_MESSAGE_FORMAT`
    UnsupportedForMessageFormat = 43,
    /// `POLICY_VIOLATION`
    PolicyViolation = 44,
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`
    OutOfOrderSequenceNumber = 45,
    /// `DUPLICATE_SEQUENCE_NUMBER`
    DuplicateSequenceNumber = 46,
    /// `INVALID_PRODUCER_EPOCH`
    InvalidProducerEpoch = 47,
    /// `INVALID_TXN_STATE`
    InvalidTxnState = 48,
    /// `INVALID_PRODUCER_ID_MAPPING`
    InvalidProducerIdMapping = 49,
    /// `INVALID_TRANSACTION_TIMEOUT`
    InvalidTransactionTimeout = 50,
    /// `CONCURRENT_TRANSACTIONS`
    ConcurrentTransactions = 51,
    /// `TRANSACTION_COORDINATOR_FENCED`
    TransactionCoordinatorFenced = 52,
    /// `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`
    TransactionalIdAuthorizationFailed = 53,
    /// `SECURITY_DISABLED`
    SecurityDisabled = 54,
    /// `OPERATION_NOT_ATTEMPTED`
    OperationNotAttempted = 55,
    /// `KAFKA_STORAGE_ERROR`
    KafkaStorageError = 56,
    /// `LOG_DIR_NOT_FOUND`
    LogDirNotFound = 57,
    /// `SASL_AUTHENTICATION_FAILED`
    SaslAuthenticationFailed = 58,
    /// `UNKNOWN_PRODUCER_ID`
    UnknownProducerId = 59,
    /// `REASSIGNMENT_IN_PROGRESS`
    ReassignmentInProgress = 60,
    /// `DELEGATION_TOKEN_AUTH_DISABLED`
    DelegationTokenAuthDisabled = 61,
    /// `DELEGATION_TOKEN_NOT_FOUND`
    DelegationTokenNotFound = 62,
    /// `DELEGATION_TOKEN_OWNER_MISMATCH`
    DelegationTokenOwnerMismatch = 63,
    /// `DELEGATION_TOKEN_REQUEST_NOT_ALLOWED`
    DelegationTokenRequestNotAllowed = 64,
    /// `DELEGATION_TOKEN_AUTHORIZATION_FAILED`
    DelegationTokenAuthorizationFailed = 65,
    /// `DELEGATION_TOKEN_EXPIRED`
    DelegationTokenExpired = 66,
    /// `INVALID_PRINCIPAL_TYPE`
    InvalidPrincipalType = 67,
    /// `NON_EMPTY_GROUP`
    NonEmptyGroup = 68,
    /// `GROUP_ID_NOT_FOUND`
    GroupIdNotFound = 69,
    /// `FETCH_SESSION_ID_NOT_FOUND`
    FetchSessionIdNotFound = 70,
    /// `INVALID_FETCH_SESSION_EPOCH`
    InvalidFetchSessionEpoch = 71,
    /// `LISTENER_NOT_FOUND`
    ListenerNotFound = 72,
    /// `TOPIC_DELETION_DISABLED`
    TopicDeletionDisabled = 73,
    /// `FENCED_LEADER_EPOCH`
    FencedLeaderEpoch = 74,
    /// `UNKNOWN_LEADER_EPOCH`
    UnknownLeaderEpoch = 75,
    /// `UNSUPPORTED_COMPRESSION_TYPE`
    UnsupportedCompressionType = 76,
    /// `STALE_BROKER_EPOCH`
    StaleBrokerEpoch = 77,
    /// `OFFSET_NOT_AVAILABLE`
    OffsetNotAvailable = 78,
    /// `MEMBER_ID_REQUIRED`
    MemberIdRequired = 79,
    /// `PREFERRED_LEADER_NOT_AVAILABLE`
    PreferredLeaderNotAvailable = 80,
    /// `GROUP_MAX_SIZE_REACHED`
    GroupMaxSizeReached = 81,
    /// `FENCED_INSTANCE_ID`
    FencedInstanceId = 82,
    /// `ELIGIBLE_LEADERS_NOT_AVAILABLE`
    EligibleLeadersNotAvailable = 83,
    /// `ELECTION_NOT_NEEDED`
    ElectionNotNeeded = 84,
    /// `NO_REASSIGNMENT_IN_PROGRESS`
    NoReassignmentInProgress = 85,
    /// `GROUP_SUBSCRIBED_TO_TOPIC`
    GroupSubscribedToTopic = 86,
    /// `INVALID_RECORD`
    InvalidRecord = 87,
    /// `UNSTABLE_OFFSET_COMMIT`
    UnstableOffsetCommit = 88,
    /// `THROTTLING_QUOTA_EXCEEDED`
    ThrottlingQuotaExceeded = 89,
    /// `PRODUCER_FENCED`
    ProducerFenced = 90,
    /// `RESOURCE_NOT_FOUND`
    ResourceNotFound = 91,
    /// `DUPLICATE_RESOURCE`
    DuplicateResource = 92,
    /// `UNACCEPTABLE_CREDENTIAL`
    UnacceptableCredential = 93,
    /// `INCONSISTENT_VOTER_SET`
    InconsistentVoterSet = 94,
    /// `INVALID_UPDATE_VERSION`
    InvalidUpdateVersion = 95,
    /// `FEATURE_UPDATE_FAILED`
    FeatureUpdateFailed = 96,
    /// `PRINCIPAL_DESERIALIZATION_FAILURE`
    PrincipalDeserializationFailure = 97,
    /// `SNAPSHOT_NOT_FOUND`
    SnapshotNotFound = 98,
    /// `POSITION_OUT_OF_RANGE`
    PositionOutOfRange = 99,
    /// `UNKNOWN_TOPIC_ID`
    UnknownTopicId = 100,
    /// `DUPLICATE_BROKER_REGISTRATION`
    DuplicateBrokerRegistration = 101,
    /// `BROKER_ID_NOT_REGISTERED`
    BrokerIdNotRegistered = 102,
    /// `INCONSISTENT_TOPIC_ID`
    InconsistentTopicId = 103,
    /// `INCONSISTENT_CLUSTER_ID`
    InconsistentClusterId = 104,
    /// `TRANSACTIONAL_ID_NOT_FOUND`
    TransactionalIdNotFound = 105,
    /// `FETCH_SESSION_TOPIC_ID_ERROR`
    FetchSessionTopicIdError = 106,
    /// `INELIGIBLE_REPLICA`
    IneligibleReplica = 107,
    /// `NEW_LEADER_ELECTED`
    NewLeaderElected = 108,
    /// `OFFSET_MOVED_TO_TIERED_STORAGE`
    OffsetMovedToTieredStorage = 109,
    /// `FENCED_MEMBER_EPOCH`
    FencedMemberEpoch = 110,
    /// `UNRELEASED_INSTANCE_ID`
    UnreleasedInstanceId = 111,
    /// `UNSUPPORTED_ASSIGNOR`
    UnsupportedAssignor = 112,
    /// `STALE_MEMBER_EPOCH`
    StaleMemberEpoch = 113,
    /// `MISMATCHED_ENDPOINT_TYPE`
    MismatchedEndpointType = 114,
    /// `UNSUPPORTED_ENDPOINT_TYPE`
    UnsupportedEndpointType = 115,
    /// `UNKNOWN_CONTROLLER_ID`
    UnknownControllerId = 116,
    /// `UNKNOWN_SUBSCRIPTION_ID`
    UnknownSubscriptionId = 117,
    /// `TELEMETRY_TOO_LARGE`
    TelemetryTooLarge = 118,
    /// `INVALID_REGISTRATION`
    InvalidRegistration = 119,
    /// `TRANSACTION_ABORTABLE`
    TransactionAbortable = 120,
    /// `INVALID_RECORD_STATE`
    InvalidRecordState = 121,
    /// `SHARE_SESSION_NOT_FOUND`
    ShareSessionNotFound = 122,
    /// `INVALID_SHARE_SESSION_EPOCH`
    InvalidShareSessionEpoch = 123,
    /// `FENCED_STATE_EPOCH`
    FencedStateEpoch = 124,
    /// `INVALID_VOTER_KEY`
    InvalidVoterKey = 125,
    /// `DUPLICATE_VOTER`
    DuplicateVoter = 126,
    /// `VOTER_NOT_FOUND`
    VoterNotFound = 127,
}

impl ErrorCode {
    /// The wire value.
    pub fn code(self) -> i16 {
        self as i16
    }

    /// The code for a wire value, if Kafka defines it.
    pub fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            -1 => Self::UnknownServerError,
            0 => Self::NoError,
            1 => Self::OffsetOutOfRange,
            2 => Self::CorruptMessage,
            3 => Self::UnknownTopicOrPartition,
            4 => Self::InvalidFetchSize,
            5 => Self::LeaderNotAvailable,
            6 => Self::NotLeaderOrFollower,
            7 => Self::RequestTimedOut,
            8 => Self::BrokerNotAvailable,
            9 => Self::ReplicaNotAvailable,
            10 => Self::MessageTooLarge,
            11 => Self::StaleControllerEpoch,
            12 => Self::OffsetMetadataTooLarge,
            13 => Self::NetworkException,
            14 => Self::CoordinatorLoadInProgress,
            15 => Self::CoordinatorNotAvailable,
            16 => Self::NotCoordinator,
            17 => Self::InvalidTopicException,
            18 => Self::RecordListTooLarge,
            19 => Self::NotEnoughReplicas,
            20 => Self::NotEnoughReplicasAfterAppend,
            21 => Self::InvalidRequiredAcks,
            22 => Self::IllegalGeneration,
            23 => Self::InconsistentGroupProtocol,
            24 => Self::InvalidGroupId,
            25 => Self::UnknownMemberId,
            26 => Self::InvalidSessionTimeout,
            27 => Self::RebalanceInProgress,
            28 => Self::InvalidCommitOffsetSize,
            29 => Self::TopicAuthorizationFailed,
            30 => Self::GroupAuthorizationFailed,
            31 => Self::ClusterAuthorizationFailed,
            32 => Self::InvalidTimestamp,
            33 => Self::UnsupportedSaslMechanism,
            34 => Self::IllegalSaslState,
            35 => Self::UnsupportedVersion,
            36 => Self::TopicAlreadyExists,
            37 => Self::InvalidPartitions,
            38 => Self::InvalidReplicationFactor,
            39 => Self::InvalidReplicationAssignment,
            40 => Self::InvalidConfig,
            41 => Self::NotController,
            42 => Self::InvalidRequest,
            43 => Self::UnsupportedForMessageFormat,
            44 => Self::PolicyViolation,
            45 => Self::OutOfOrderSequenceNumber,
            46 => Self::DuplicateSequenceNumber,
            47 => Self::InvalidProducerEpoch,
            48 => Self::InvalidTxnState,
            49 => Self::InvalidProducerIdMapping,
            50 => Self::InvalidTransactionTimeout,
            51 => Self::ConcurrentTransactions,
            52 => Self::TransactionCoordinatorFenced,
            53 => Self::TransactionalIdAuthorizationFailed,
            54 => Self::SecurityDisabled,
            55 => Self::OperationNotAttempted,
            56 => Self::KafkaStorageError,
            57 => Self::LogDirNotFound,
            58 => Self::SaslAuthenticationFailed,
            59 => Self::UnknownProducerId,
            60 => Self::ReassignmentInProgress,
            61 => Self::DelegationTokenAuthDisabled,
            62 => Self::DelegationTokenNotFound,
            63 => Self::DelegationTokenOwnerMismatch,
            64 => Self::DelegationTokenRequestNotAllowed,
            65 => Self::DelegationTokenAuthorizationFailed,
            66 => Self::DelegationTokenExpired,
            67 => Self::InvalidPrincipalType,
            68 => Self::NonEmptyGroup,
            69 => Self::GroupIdNotFound,
            70 => Self::FetchSessionIdNotFound,
            71 => Self::InvalidFetchSessionEpoch,
            72 => Self::ListenerNotFound,
            73 => Self::TopicDeletionDisabled,
            74 => Self::FencedLeaderEpoch,
            75 => Self::UnknownLeaderEpoch,
            76 => Self::UnsupportedCompressionType,
            77 => Self::StaleBrokerEpoch,
            78 => Self::OffsetNotAvailable,
            79 => Self::MemberIdRequired,
            80 => Self::PreferredLeaderNotAvailable,
            81 => Self::GroupMaxSizeReached,
            82 => Self::FencedInstanceId,
            83 => Self::EligibleLeadersNotAvailable,
            84 => Self::ElectionNotNeeded,
            85 => Self::NoReassignmentInProgress,
            86 => Self::GroupSubscribedToTopic,
            87 => Self::InvalidRecord,
            88 => Self::UnstableOffsetCommit,
            89 => Self::ThrottlingQuotaExceeded,
            90 => Self::ProducerFenced,
            91 => Self::ResourceNotFound,
            92 => Self::DuplicateResource,
            93 => Self::UnacceptableCredential,
            94 => Self::InconsistentVoterSet,
            95 => Self::InvalidUpdateVersion,
            96 => Self::FeatureUpdateFailed,
            97 => Self::PrincipalDeserializationFailure,
            98 => Self::SnapshotNotFound,
            99 => Self::PositionOutOfRange,
            100 => Self::UnknownTopicId,
            101 => Self::DuplicateBrokerRegistration,
            102 => Self::BrokerIdNotRegistered,
            103 => Self::InconsistentTopicId,
            104 => Self::InconsistentClusterId,
            105 => Self::TransactionalIdNotFound,
            106 => Self::FetchSessionTopicIdError,
            107 => Self::IneligibleReplica,
            108 => Self::NewLeaderElected,
            109 => Self::OffsetMovedToTieredStorage,
            110 => Self::FencedMemberEpoch,
            111 => Self::UnreleasedInstanceId,
            112 => Self::UnsupportedAssignor,
            113 => Self::StaleMemberEpoch,
            114 => Self::MismatchedEndpointType,
            115 => Self::UnsupportedEndpointType,
            116 => Self::UnknownControllerId,
            117 => Self::UnknownSubscriptionId,
            118 => Self::TelemetryTooLarge,
            119 => Self::InvalidRegistration,
            120 => Self::TransactionAbortable,
            121 => Self::InvalidRecordState,
            122 => Self::ShareSessionNotFound,
            123 => Self::InvalidShareSessionEpoch,
            124 => Self::FencedStateEpoch,
            125 => Self::InvalidVoterKey,
            126 => Self::DuplicateVoter,
            127 => Self::VoterNotFound,
            _ => return None,
        })
    }

    /// Kafka's name for the code, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
    pub fn name(self) -> &'static str {
        match self {
            Self::NetworkException => "NETWORK_EXCEPTION",
            Self::UnknownServerError => "UNKNOWN_SERVER_ERROR",
            Self::NoError => "NO_ERROR",
            Self::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            Self::CorruptMessage => "CORRUPT_MESSAGE",
            Self::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            Self::InvalidFetchSize => "INVALID_FETCH_SIZE",
            Self::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
            Self::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
            Self::RequestTimedOut => "REQUEST_TIMED_OUT",
            Self::BrokerNotAvailable => "BROKER_NOT_AVAILABLE",
            Self::ReplicaNotAvailable => "REPLICA_NOT_AVAILABLE",
            Self::MessageTooLarge => "MESSAGE_TOO_LARGE",
            Self::StaleControllerEpoch => "STALE_CONTROLLER_EPOCH",
            Self::OffsetMetadataTooLarge => "OFFSET_METADATA_TOO_LARGE",
            Self::CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
            Self::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            Self::NotCoordinator => "NOT_COORDINATOR",
            Self::InvalidTopicException => "INVALID_TOPIC_EXCEPTION",
            Self::RecordListTooLarge => "RECORD_LIST_TOO_LARGE",
            Self::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            Self::NotEnoughReplicasAfterAppend => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            Self::InvalidRequiredAcks => "INVALID_REQUIRED_ACKS",
            Self::IllegalGeneration => "ILLEGAL_GENERATION",
            Self::InconsistentGroupProtocol => "INCONSISTENT_GROUP_PROTOCOL",
            Self::InvalidGroupId => "INVALID_GROUP_ID",
            Self::UnknownMemberId => "UNKNOWN_MEMBER_ID",
            Self::InvalidSessionTimeout => "INVALID_SESSION_TIMEOUT",
            Self::RebalanceInProgress => "REBALANCE_IN_PROGRESS",
            Self::InvalidCommitOffsetSize => "INVALID_COMMIT_OFFSET_SIZE",
            Self::TopicAuthorizationFailed => "TOPIC_AUTHORIZATION_FAILED",
            Self::GroupAuthorizationFailed => "GROUP_AUTHORIZATION_FAILED",
            Self::ClusterAuthorizationFailed => "CLUSTER_AUTHORIZATION_FAILED",
            Self::InvalidTimestamp => "INVALID_TIMESTAMP",
            Self::UnsupportedSaslMechanism => "UNSUPPORTED_SASL_MECHANISM",
            Self::IllegalSaslState => "ILLEGAL_SASL_STATE",
            Self::UnsupportedVersion => "UNSUPPORTED_VERSION",
            Self::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
            Self::InvalidPartitions => "INVALID_PARTITIONS",
            Self::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
            Self::InvalidReplicationAssignment => "INVALID_REPLICATION_ASSIGNMENT",
            Self::InvalidConfig => "INVALID_CONFIG",
            Self::NotController => "NOT_CONTROLLER",
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::UnsupportedForMessageFormat => "UNSUPPORTED_FOR_MESSAGE_FORMAT",
            Self::PolicyViolation => "POLICY_VIOLATION",
            Self::OutOfOrderSequenceNumber => "OUT_OF_ORDER_SEQUENCE_NUMBER",
            Self::DuplicateSequenceNumber => "DUPLICATE_SEQUENCE_NUMBER",
            Self::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
            Self::InvalidTxnState => "INVALID_TXN_STATE",
            Self::InvalidProducerIdMapping => "INVALID_PRODUCER_ID_MAPPING",
            Self::InvalidTransactionTimeout => "INVALID_TRANSACTION_TIMEOUT",
            Self::ConcurrentTransactions => "CONCURRENT_TRANSACTIONS",
            Self::TransactionCoordinatorFenced => "TRANSACTION_COORDINATOR_FENCED",
            Self::TransactionalIdAuthorizationFailed => "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
            Self::SecurityDisabled => "SECURITY_DISABLED",
            Self::OperationNotAttempted => "OPERATION_NOT_ATTEMPTED",
            Self::KafkaStorageError => "KAFKA_STORAGE_ERROR",
            Self::LogDirNotFound => "LOG_DIR_NOT_FOUND",
            Self::SaslAuthenticationFailed => "SASL_AUTHENTICATION_FAILED",
            Self::UnknownProducerId => "UNKNOWN_PRODUCER_ID",
            Self::ReassignmentInProgress => "REASSIGNMENT_IN_PROGRESS",
            Self::DelegationTokenAuthDisabled => "DELEGATION_TOKEN_AUTH_DISABLED",
            Self::DelegationTokenNotFound => "DELEGATION_TOKEN_NOT_FOUND",
            Self::DelegationTokenOwnerMismatch => "DELEGATION_TOKEN_OWNER_MISMATCH",
            Self::DelegationTokenRequestNotAllowed => "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
            Self::DelegationTokenAuthorizationFailed => "DELEGATION_TOKEN_AUTHORIZATION_FAILED",
            Self::DelegationTokenExpired => "DELEGATION_TOKEN_EXPIRED",
            Self::InvalidPrincipalType => "INVALID_PRINCIPAL_TYPE",
            Self::NonEmptyGroup => "NON_EMPTY_GROUP",
            Self::GroupIdNotFound => "GROUP_ID_NOT_FOUND",
            Self::FetchSessionIdNotFound => "FETCH_SESSION_ID_NOT_FOUND",
            Self::InvalidFetchSessionEpoch => "INVALID_FETCH_SESSION_EPOCH",
            Self::ListenerNotFound => "LISTENER_NOT_FOUND",
            Self::TopicDeletionDisabled => "TOPIC_DELETION_DISABLED",
            Self::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            Self::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
            Self::UnsupportedCompressionType => "UNSUPPORTED_COMPRESSION_TYPE",
            Self::StaleBrokerEpoch => "STALE_BROKER_EPOCH",
            Self::OffsetNotAvailable => "OFFSET_NOT_AVAILABLE",
            Self::MemberIdRequired => "MEMBER_ID_REQUIRED",
            Self::PreferredLeaderNotAvailable => "PREFERRED_LEADER_NOT_AVAILABLE",
            Self::GroupMaxSizeReached => "GROUP_MAX_SIZE_REACHED",
            Self::FencedInstanceId => "FENCED_INSTANCE_ID",
            Self::EligibleLeadersNotAvailable => "ELIGIBLE_LEADERS_NOT_AVAILABLE",
            Self::ElectionNotNeeded => "ELECTION_NOT_NEEDED",
            Self::NoReassignmentInProgress => "NO_REASSIGNMENT_IN_PROGRESS",
            Self::GroupSubscribedToTopic => "GROUP_SUBSCRIBED_TO_TOPIC",
            Self::InvalidRecord => "INVALID_RECORD",
            Self::UnstableOffsetCommit => "UNSTABLE_OFFSET_COMMIT",
            Self::ThrottlingQuotaExceeded => "THROTTLING_QUOTA_EXCEEDED",
            Self::ProducerFenced => "PRODUCER_FENCED",
            Self::ResourceNotFound => "RESOURCE_NOT_FOUND",
            Self::DuplicateResource => "DUPLICATE_RESOURCE",
            Self::UnacceptableCredential => "UNACCEPTABLE_CREDENTIAL",
            Self::InconsistentVoterSet => "INCONSISTENT_VOTER_SET",
            Self::InvalidUpdateVersion => "INVALID_UPDATE_VERSION",
            Self::FeatureUpdateFailed => "FEATURE_UPDATE_FAILED",
            Self::PrincipalDeserializationFailure => "PRINCIPAL_DESERIALIZATION_FAILURE",
            Self::SnapshotNotFound => "SNAPSHOT_NOT_FOUND",
            Self::PositionOutOfRange => "POSITION_OUT_OF_RANGE",
            Self::UnknownTopicId => "UNKNOWN_TOPIC_ID",
            Self::DuplicateBrokerRegistration => "DUPLICATE_BROKER_REGISTRATION",
            Self::BrokerIdNotRegistered => "BROKER_ID_NOT_REGISTERED",
            Self::InconsistentTopicId => "INCONSISTENT_TOPIC_ID",
            Self::InconsistentClusterId => "INCONSISTENT_CLUSTER_ID",
            Self::TransactionalIdNotFound => "TRANSACTIONAL_ID_NOT_FOUND",
            Self::FetchSessionTopicIdError => "FETCH_SESSION_TOPIC_ID_ERROR",
            Self::IneligibleReplica => "INELIGIBLE_REPLICA",
            Self::NewLeaderElected => "NEW_LEADER_ELECTED",
            Self::OffsetMovedToTieredStorage => "OFFSET_MOVED_TO_TIERED_STORAGE",
            Self::FencedMemberEpoch => "FENCED_MEMBER_EPOCH",
            Self::UnreleasedInstanceId => "UNRELEASED_INSTANCE_ID",
            Self::UnsupportedAssignor => "UNSUPPORTED_ASSIGNOR",
            Self::StaleMemberEpoch => "STALE_MEMBER_EPOCH",
            Self::MismatchedEndpointType => "MISMATCHED_ENDPOINT_TYPE",
            Self::UnsupportedEndpointType => "UNSUPPORTED_ENDPOINT_TYPE",
            Self::UnknownControllerId => "UNKNOWN_CONTROLLER_ID",
            Self::UnknownSubscriptionId => "UNKNOWN_SUBSCRIPTION_ID",
            Self::TelemetryTooLarge => "TELEMETRY_TOO_LARGE",
            Self::InvalidRegistration => "INVALID_REGISTRATION",
            Self::TransactionAbortable => "TRANSACTION_ABORTABLE",
            Self::InvalidRecordState => "INVALID_RECORD_STATE",
            Self::ShareSessionNotFound => "SHARE_SESSION_NOT_FOUND",
            Self::InvalidShareSessionEpoch => "INVALID_SHARE_SESSION_EPOCH",
            Self::FencedStateEpoch => "FENCED_STATE_EPOCH",
            Self::InvalidVoterKey => "INVALID_VOTER_KEY",
            Self::DuplicateVoter => "DUPLICATE_VOTER",
            Self::VoterNotFound => "VOTER_NOT_FOUND",
        }
    }

    /// Whether a client may retry the request that received this code.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            Self::CorruptMessage
                | Self::UnknownTopicOrPartition
                | Self::LeaderNotAvailable
                | Self::NotLeaderOrFollower
                | Self::RequestTimedOut
                | Self::NetworkException
                | Self::CoordinatorLoadInProgress
                | Self::CoordinatorNotAvailable
                | Self::NotCoordinator
                | Self::NotEnoughReplicas
                | Self::NotEnoughReplicasAfterAppend
                | Self::KafkaStorageError
                | Self::OffsetNotAvailable
                | Self::UnstableOffsetCommit
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_keep_kafka_numbers() {
        // Proves the numbers clients depend on did not drift.
        assert_eq!(ErrorCode::UnsupportedVersion.code(), 35);
        assert_eq!(ErrorCode::NotLeaderOrFollower.code(), 6);
        assert_eq!(ErrorCode::KafkaStorageError.code(), 56);
        for code in -1..=200 {
            if let Some(error) = ErrorCode::from_code(code) {
                assert_eq!(error.code(), code);
            }
        }
    }
}
