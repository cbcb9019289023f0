//! The replicas of the offsets topic seen by the group coordinator: each replica of
//! `__consumer_offsets` that becomes leader hands its partition to its shard's coordinator, and
//! the coordinator writes the groups' commits through it.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::group::GroupError;
use crate::group::offsets_topic::{LocalFuture, OFFSETS_TOPIC, OffsetsLog};
use crate::log::PartitionLog;
use crate::protocol::ErrorCode;
use crate::protocol::record_batch::header;

use super::Shard;
use super::replicas::Replica;

/// How long moving the offsets log start waits for the followers (DeleteRecords' own bound).
const MOVE_LOG_START_LIMIT: Duration = Duration::from_secs(30);

/// An offsets partition's replica, as the coordinator writes through it.
struct OffsetsReplica(Rc<Replica>);

impl OffsetsLog for OffsetsReplica {
    fn log(&self) -> Rc<PartitionLog> {
        self.0.log()
    }

    fn is_leader(&self) -> bool {
        self.0.is_leader()
    }

    fn append(&self, batch: Bytes) -> LocalFuture<'_, Result<i64, GroupError>> {
        Box::pin(async move {
            let records = header(&batch)
                .map(|fields| i64::from(fields.last_offset_delta.get()) + 1)
                .map_err(|error| GroupError::CoordinatorNotAvailable(error.to_string()))?;
            let proposal = self.0.propose(batch, false).await.map_err(write_error)?;
            let committed = proposal
                .committed(crate::group::offsets_topic::COMMIT_TIMEOUT)
                .await
                .map_err(write_error)?;
            Ok(committed.base_offset + records)
        })
    }

    fn move_log_start(&self, offset: i64) -> LocalFuture<'_, Result<(), GroupError>> {
        Box::pin(async move {
            self.0
                .delete_records(offset, MOVE_LOG_START_LIMIT)
                .await
                .map(|_| ())
                .map_err(write_error)
        })
    }
}

/// Kafka's mapping of a failed offsets write to what the committing client is told: a replica
/// that no longer leads means another coordinator; anything else, try again later.
fn write_error(code: ErrorCode) -> GroupError {
    match code {
        ErrorCode::NotLeaderOrFollower => GroupError::NotCoordinator,
        other => GroupError::CoordinatorNotAvailable(format!(
            "writing the offsets failed: {}",
            other.name()
        )),
    }
}

/// Tells the shard's coordinator that `replica` started or stopped leading, if it is a replica
/// of the offsets topic.
pub fn leadership_changed(shard: &Shard, replica: &Rc<Replica>, leading: bool) {
    if replica.topic != OFFSETS_TOPIC || !shard.config.replicated_offsets() {
        return;
    }
    if !leading {
        shard.groups.offsets_partition_lost(replica.partition);
        return;
    }
    let partitions = shard
        .cluster
        .borrow()
        .topic(OFFSETS_TOPIC)
        .map_or(0, |topic| topic.partitions.len());
    if partitions == 0 {
        return;
    }
    shard.groups.offsets_partition_led(
        replica.partition,
        partitions,
        Rc::new(OffsetsReplica(Rc::clone(replica))),
    );
}
