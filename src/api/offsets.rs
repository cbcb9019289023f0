//! ListOffsets (earliest, latest, by timestamp) and OffsetForLeaderEpoch.
//!
//! A single node has one leader epoch, 0, for every partition: OffsetForLeaderEpoch answers it
//! with the log end offset, so clients that validate their position after a metadata change get
//! a real answer and find no truncation.

use std::rc::Rc;

use crate::protocol::ErrorCode;
use crate::protocol::messages::list_offsets::{
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use crate::protocol::messages::offset_for_leader_epoch::{
    EpochEndOffset, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    OffsetForLeaderTopicResult,
};
use crate::shard::{PartitionRoute, Shard};

use super::errors::log_error_code;

/// ListOffsets timestamp asking for the latest offset (the high watermark).
const LATEST_TIMESTAMP: i64 = -1;
/// ListOffsets timestamp asking for the earliest offset (the log start).
const EARLIEST_TIMESTAMP: i64 = -2;
/// The only leader epoch a single node has.
const LEADER_EPOCH: i32 = 0;

fn route_error(route: &PartitionRoute) -> Option<ErrorCode> {
    match route {
        PartitionRoute::Here(_) => None,
        PartitionRoute::Elsewhere(_) => Some(ErrorCode::NotLeaderOrFollower),
        PartitionRoute::UnknownTopic | PartitionRoute::UnknownPartition => {
            Some(ErrorCode::UnknownTopicOrPartition)
        }
    }
}

/// Answers a ListOffsets request.
pub async fn handle_list_offsets(
    shard: &Rc<Shard>,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            let answer =
                |error: ErrorCode, timestamp: i64, offset: i64| ListOffsetsPartitionResponse {
                    partition_index: partition.partition_index,
                    error_code: error.code(),
                    timestamp,
                    offset,
                    leader_epoch: LEADER_EPOCH,
                };
            let route = shard.route(&topic.name, partition.partition_index);
            let log = match route {
                PartitionRoute::Here(log) => log,
                ref other => {
                    let code = route_error(other).unwrap_or(ErrorCode::UnknownServerError);
                    partitions.push(answer(code, -1, -1));
                    continue;
                }
            };
            if let Err(error) = log.health() {
                partitions.push(answer(log_error_code(&error), -1, -1));
                continue;
            }
            partitions.push(match partition.timestamp {
                LATEST_TIMESTAMP => answer(ErrorCode::NoError, -1, log.high_watermark()),
                EARLIEST_TIMESTAMP => answer(ErrorCode::NoError, -1, log.log_start_offset()),
                timestamp if timestamp >= 0 => match log.offset_for_timestamp(timestamp).await {
                    Ok(Some((offset, found))) => answer(ErrorCode::NoError, found, offset),
                    Ok(None) => answer(ErrorCode::NoError, -1, -1),
                    Err(error) => answer(log_error_code(&error), -1, -1),
                },
                // -3 (max timestamp) and the tiered-storage markers are not kept by this log.
                _ => answer(ErrorCode::InvalidRequest, -1, -1),
            });
        }
        topics.push(ListOffsetsTopicResponse {
            name: topic.name,
            partitions,
        });
    }
    ListOffsetsResponse {
        topics,
        ..ListOffsetsResponse::default()
    }
}

/// Answers an OffsetForLeaderEpoch request.
pub fn handle_offset_for_leader_epoch(
    shard: &Rc<Shard>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| OffsetForLeaderTopicResult {
            partitions: topic
                .partitions
                .iter()
                .map(|partition| {
                    let route = shard.route(&topic.topic, partition.partition);
                    let failed = |error: ErrorCode| EpochEndOffset {
                        error_code: error.code(),
                        partition: partition.partition,
                        leader_epoch: -1,
                        end_offset: -1,
                    };
                    if let Some(error) = route_error(&route) {
                        return failed(error);
                    }
                    if partition.current_leader_epoch > LEADER_EPOCH {
                        return failed(ErrorCode::UnknownLeaderEpoch);
                    }
                    let PartitionRoute::Here(log) = route else {
                        return failed(ErrorCode::UnknownServerError);
                    };
                    if let Err(error) = log.health() {
                        return failed(log_error_code(&error));
                    }
                    if partition.leader_epoch > LEADER_EPOCH || partition.leader_epoch < 0 {
                        // An epoch this log never had: Kafka answers "undefined".
                        return failed(ErrorCode::NoError);
                    }
                    EpochEndOffset {
                        error_code: 0,
                        partition: partition.partition,
                        leader_epoch: LEADER_EPOCH,
                        end_offset: log.log_end_offset(),
                    }
                })
                .collect(),
            topic: topic.topic,
        })
        .collect();
    OffsetForLeaderEpochResponse {
        topics,
        ..OffsetForLeaderEpochResponse::default()
    }
}
