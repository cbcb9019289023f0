//! `GroupError`: why the group coordinator refused a request. Only `src/api/errors.rs` turns these
//! into Kafka error codes.

/// A refused group or offset operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// The session timeout is outside the broker's bounds.
    #[error("session timeout {0} ms is outside the allowed range")]
    InvalidSessionTimeout(i32),
    /// A new dynamic member must rejoin with the member id it was given.
    #[error("member id required")]
    MemberIdRequired,
    /// The member is not (or no longer) in the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The request carries another generation than the group's.
    #[error("illegal generation")]
    IllegalGeneration,
    /// The group is rebalancing: the member must rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// The member's protocol type or protocols do not match the group's.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// Another member now holds this static instance id.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// The offset store is still being loaded.
    #[error("coordinator loading")]
    CoordinatorLoading,
    /// This coordinator does not (or no longer) hold the group: its offsets partition is led
    /// elsewhere.
    #[error("not the group's coordinator")]
    NotCoordinator,
    /// The offset store could not be loaded or has failed.
    #[error("coordinator not available: {0}")]
    CoordinatorNotAvailable(String),
    /// The group does not exist.
    #[error("group id not found")]
    GroupIdNotFound,
    /// The group still has members.
    #[error("group is not empty")]
    NonEmptyGroup,
    /// The group's members subscribe to the topic whose offsets were to be deleted.
    #[error("group subscribed to topic")]
    GroupSubscribedToTopic,
    /// Commit metadata beyond the 4 KiB limit.
    #[error("offset metadata of {0} bytes is too large")]
    OffsetMetadataTooLarge(usize),
}
