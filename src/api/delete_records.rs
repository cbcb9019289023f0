//! DeleteRecords: moves a partition's log start offset up, on the shard that owns it.
//!
//! Like produce and fetch, the request must reach the partition's owner (its leader in
//! Metadata); elsewhere it is answered NOT_LEADER_OR_FOLLOWER so the client refreshes metadata.

use std::rc::Rc;

use crate::protocol::ErrorCode;
use crate::protocol::messages::delete_records::{
    DeleteRecordsPartitionResult, DeleteRecordsRequest, DeleteRecordsResponse,
    DeleteRecordsTopicResult,
};
use crate::shard::{PartitionRoute, Shard};

use super::errors::log_error_code;

/// The deletion offset meaning "up to the high watermark".
const HIGH_WATERMARK_OFFSET: i64 = -1;

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
) -> (i64, ErrorCode) {
    if shard.replica(topic, partition).is_some() {
        // Moving a replicated partition's log start must go through its Raft group, or a
        // failover would bring the deleted records back; not built yet.
        return (-1, ErrorCode::PolicyViolation);
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
