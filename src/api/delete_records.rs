//! DeleteRecords: moves a partition's log start offset up, on the shard that owns it.
//!
//! Like produce and fetch, the request must reach the partition's owner (its leader in
//! Metadata); elsewhere it is answered NOT_LEADER_OR_FOLLOWER so the client refreshes metadata.
//! A replicated partition's leader writes the new log start to its Raft log, so every replica
//! moves to it and no failover brings the deleted records back (`Replica::delete_records`).

use std::rc::Rc;
use std::time::Duration;

use crate::protocol::ErrorCode;
use crate::protocol::messages::delete_records::{
    DeleteRecordsPartitionResult, DeleteRecordsRequest, DeleteRecordsResponse,
    DeleteRecordsTopicResult,
};
use crate::shard::{PartitionRoute, Shard};

use super::errors::log_error_code;

/// The deletion offset meaning "up to the high watermark".
const HIGH_WATERMARK_OFFSET: i64 = -1;
/// Bounds on how long a replicated partition's deletion waits for its replicas (the request's
/// timeout_ms, clamped): a hostile 0 or i32::MAX neither fails at once nor holds the
/// connection for weeks.
const REPLICATED_WAIT_MS: (u64, u64) = (1_000, 60_000);

/// Answers a DeleteRecords request, one partition at a time.
pub async fn handle_delete_records(
    shard: &Rc<Shard>,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            let (low_watermark, error) = delete_partition(
                shard,
                &topic.name,
                partition.partition_index,
                partition.offset,
                request.timeout_ms,
            )
            .await;
            partitions.push(DeleteRecordsPartitionResult {
                partition_index: partition.partition_index,
                low_watermark,
                error_code: error.code(),
            });
        }
        topics.push(DeleteRecordsTopicResult {
            name: topic.name,
            partitions,
        });
    }
    DeleteRecordsResponse {
        throttle_time_ms: 0,
        topics,
    }
}

/// The partition's new low watermark (log start offset), or -1 with the error.
async fn delete_partition(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout_ms: i32,
) -> (i64, ErrorCode) {
    if let Some(replica) = shard.replica(topic, partition) {
        let (least, most) = REPLICATED_WAIT_MS;
        let limit =
            Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0).clamp(least, most));
        return match replica.delete_records(offset, limit).await {
            Ok(low_watermark) => (low_watermark, ErrorCode::NoError),
            Err(code) => (-1, code),
        };
    }
    let log = match shard.route(topic, partition) {
        PartitionRoute::Here(log) => log,
        PartitionRoute::Elsewhere(_) => return (-1, ErrorCode::NotLeaderOrFollower),
        PartitionRoute::UnknownTopic | PartitionRoute::UnknownPartition => {
            return (-1, ErrorCode::UnknownTopicOrPartition);
        }
    };
    let offset = match offset {
        HIGH_WATERMARK_OFFSET => log.high_watermark(),
        offset => offset,
    };
    match log.delete_records(offset).await {
        Ok(low_watermark) => (low_watermark, ErrorCode::NoError),
        Err(error) => (-1, log_error_code(&error)),
    }
}
