//! ListOffsets (earliest, latest, by timestamp, max timestamp, earliest local; v0's segment
//! offsets) and OffsetForLeaderEpoch.
//!
//! A single node has one leader epoch, 0, for every partition: OffsetForLeaderEpoch answers it
//! with the log end offset, so clients that validate their position after a metadata change get
//! a real answer and find no truncation.

use std::rc::Rc;

use crate::log::{LogError, PartitionLog};
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
use super::now_ms;

/// ListOffsets timestamp asking for the latest offset (the high watermark).
const LATEST_TIMESTAMP: i64 = -1;
/// ListOffsets timestamp asking for the earliest offset (the log start).
const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp asking for the record with the largest timestamp (v7+, KIP-734).
const MAX_TIMESTAMP: i64 = -3;
/// ListOffsets timestamp asking for the earliest offset on local disk (v8+, KIP-405): without
/// tiered storage, the log start.
const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
/// ListOffsets `replica_id` of a consumer, whose v0 answers stop at the high watermark.
const CONSUMER_REPLICA_ID: i32 = -1;
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
    version: i16,
) -> ListOffsetsResponse {
    let consumer = request.replica_id == CONSUMER_REPLICA_ID;
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
                    old_style_offsets: Vec::new(),
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
            if version == 0 {
                let mut response = answer(ErrorCode::NoError, -1, -1);
                match legacy_offsets(
                    &log,
                    partition.timestamp,
                    partition.max_num_offsets,
                    consumer,
                ) {
                    Ok(offsets) => response.old_style_offsets = offsets,
                    Err(code) => response.error_code = code.code(),
                }
                partitions.push(response);
                continue;
            }
            partitions.push(match partition.timestamp {
                LATEST_TIMESTAMP => answer(ErrorCode::NoError, -1, log.high_watermark()),
                EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => {
                    answer(ErrorCode::NoError, -1, log.log_start_offset())
                }
                MAX_TIMESTAMP => match max_timestamp_offset(&log).await {
                    Ok(Some((offset, found))) => answer(ErrorCode::NoError, found, offset),
                    Ok(None) => answer(ErrorCode::NoError, -1, -1),
                    Err(error) => answer(log_error_code(&error), -1, -1),
                },
                timestamp if timestamp >= 0 => match log.offset_for_timestamp(timestamp).await {
                    Ok(Some((offset, found))) => answer(ErrorCode::NoError, found, offset),
                    Ok(None) => answer(ErrorCode::NoError, -1, -1),
                    Err(error) => answer(log_error_code(&error), -1, -1),
                },
                // -5 (latest tiered, v9+) and other negative markers: nothing here answers them.
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

/// The first record carrying the log's largest timestamp, and that timestamp: Kafka answers
/// MAX_TIMESTAMP with the earliest record holding it, which is the first record at or after it.
async fn max_timestamp_offset(log: &PartitionLog) -> Result<Option<(i64, i64)>, LogError> {
    let max_timestamp_ms = log.max_timestamp_ms();
    if max_timestamp_ms < 0 {
        return Ok(None);
    }
    log.offset_for_timestamp(max_timestamp_ms).await
}

/// ListOffsets v0's offsets, newest first; a consumer's are clipped to the high watermark as
/// Kafka clips them (the watermark replaces every offset above it).
fn legacy_offsets(
    log: &PartitionLog,
    timestamp: i64,
    max_num_offsets: i32,
    consumer: bool,
) -> Result<Vec<i64>, ErrorCode> {
    // v0 knows only latest and earliest among the negative markers.
    if timestamp < EARLIEST_TIMESTAMP {
        return Err(ErrorCode::UnsupportedVersion);
    }
    let offsets = log.legacy_offsets_before(timestamp, max_num_offsets, now_ms());
    let high_watermark = log.high_watermark();
    if !consumer || offsets.iter().all(|&offset| offset <= high_watermark) {
        return Ok(offsets);
    }
    let mut clipped = vec![high_watermark];
    clipped.extend(
        offsets
            .into_iter()
            .skip_while(|&offset| offset > high_watermark),
    );
    Ok(clipped)
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
                    let PartitionRoute::Here(log) = route else {
                        return failed(ErrorCode::UnknownServerError);
                    };
                    if let Err(error) = log.health() {
                        return failed(log_error_code(&error));
                    }
                    // -1: the client does not know the current epoch (no fencing check).
                    let current = log.leader_epoch();
                    if partition.current_leader_epoch > current {
                        return failed(ErrorCode::UnknownLeaderEpoch);
                    }
                    if partition.current_leader_epoch >= 0
                        && partition.current_leader_epoch < current
                    {
                        return failed(ErrorCode::FencedLeaderEpoch);
                    }
                    let (leader_epoch, end_offset) =
                        log.end_offset_for_epoch(partition.leader_epoch);
                    EpochEndOffset {
                        error_code: 0,
                        partition: partition.partition,
                        leader_epoch,
                        end_offset,
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
