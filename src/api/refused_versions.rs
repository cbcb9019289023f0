//! Requests at old versions that are decoded only to be refused with an error response, so an old
//! client reads a Kafka error instead of seeing its connection close.
//!
//! Produce v0-2 carry, and Fetch v0-3 would return, magic 0/1 message sets, which Spate neither
//! stores nor converts: each partition is answered UNSUPPORTED_VERSION, as Kafka 4 refuses them.
//! OffsetCommit v0 and OffsetFetch v0 are ZooKeeper-stored offsets in Kafka 3.9; a 3.9 broker
//! without ZooKeeper (KRaft, which Spate resembles) answers them UNSUPPORTED_VERSION per
//! partition (`KafkaApis.commitOffsetsToZookeeper` / `handleOffsetFetchRequestFromZookeeper`),
//! and Spate does the same: their offsets never mix with the coordinator's.

use crate::protocol::ErrorCode;
use crate::protocol::field::RecordSet;
use crate::protocol::messages::fetch::{
    FetchRequest, FetchResponse, FetchableTopicResponse, PartitionData,
};
use crate::protocol::messages::offset_commit::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
};
use crate::protocol::messages::offset_fetch::{
    OffsetFetchRequest, OffsetFetchResponse, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use crate::protocol::messages::produce::{
    PartitionProduceResponse, ProduceRequest, ProduceResponse, TopicProduceResponse,
};
use crate::shard::{PartitionRoute, Shard};

/// OffsetCommit and OffsetFetch versions whose offsets Kafka 3.9 keeps in ZooKeeper.
pub const ZOOKEEPER_OFFSETS_VERSION_MAX: i16 = 0;

/// Produce v0-2: every partition UNSUPPORTED_VERSION, nothing appended. `None` for acks=0, which
/// gets no response at any version.
pub fn refuse_produce(request: ProduceRequest) -> Option<ProduceResponse> {
    if request.acks == 0 {
        return None;
    }
    let responses = request
        .topic_data
        .into_iter()
        .map(|topic| TopicProduceResponse {
            name: topic.name,
            partition_responses: topic
                .partition_data
                .iter()
                .map(|partition| PartitionProduceResponse {
                    index: partition.index,
                    error_code: ErrorCode::UnsupportedVersion.code(),
                    base_offset: -1,
                    ..PartitionProduceResponse::default()
                })
                .collect(),
        })
        .collect();
    Some(ProduceResponse {
        responses,
        ..ProduceResponse::default()
    })
}

/// Fetch v0-3: every partition UNSUPPORTED_VERSION with no records.
pub fn refuse_fetch(request: FetchRequest) -> FetchResponse {
    let responses = request
        .topics
        .into_iter()
        .map(|topic| FetchableTopicResponse {
            topic: topic.topic,
            partitions: topic
                .partitions
                .iter()
                .map(|partition| PartitionData {
                    partition_index: partition.partition,
                    error_code: ErrorCode::UnsupportedVersion.code(),
                    high_watermark: -1,
                    // Old clients read a -1 size as a broken message set: send an empty one.
                    records: Some(RecordSet::default()),
                    ..PartitionData::default()
                })
                .collect(),
        })
        .collect();
    FetchResponse {
        responses,
        ..FetchResponse::default()
    }
}

/// OffsetCommit v0: UNKNOWN_TOPIC_OR_PARTITION when no partition exists (Kafka checks that
/// first), else UNSUPPORTED_VERSION for every partition, nothing committed.
pub fn refuse_offset_commit(shard: &Shard, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let any_known = request.topics.iter().any(|topic| {
        topic.partitions.iter().any(|partition| {
            !matches!(
                shard.route(&topic.name, partition.partition_index),
                PartitionRoute::UnknownTopic | PartitionRoute::UnknownPartition
            )
        })
    });
    let error = if any_known {
        ErrorCode::UnsupportedVersion
    } else {
        ErrorCode::UnknownTopicOrPartition
    };
    let topics = request
        .topics
        .into_iter()
        .map(|topic| OffsetCommitResponseTopic {
            name: topic.name,
            partitions: topic
                .partitions
                .iter()
                .map(|partition| OffsetCommitResponsePartition {
                    partition_index: partition.partition_index,
                    error_code: error.code(),
                })
                .collect(),
        })
        .collect();
    OffsetCommitResponse {
        topics,
        ..OffsetCommitResponse::default()
    }
}

/// OffsetFetch v0: every requested partition UNSUPPORTED_VERSION, offset -1, no metadata.
pub fn refuse_offset_fetch(request: OffsetFetchRequest) -> OffsetFetchResponse {
    let topics = request
        .topics
        .unwrap_or_default()
        .into_iter()
        .map(|topic| OffsetFetchResponseTopic {
            name: topic.name,
            partitions: topic
                .partition_indexes
                .iter()
                .map(|&partition_index| OffsetFetchResponsePartition {
                    partition_index,
                    committed_offset: -1,
                    metadata: Some(String::new()),
                    error_code: ErrorCode::UnsupportedVersion.code(),
                    ..OffsetFetchResponsePartition::default()
                })
                .collect(),
        })
        .collect();
    OffsetFetchResponse {
        topics,
        ..OffsetFetchResponse::default()
    }
}
