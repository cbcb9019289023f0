//! Produce: validate each partition's batch, route it, sequence it into its log, and answer when
//! the acks level is met.
//!
//! The produce path is three hops: `api/mod.rs` (dispatch) → [`handle_produce`] (validate, route,
//! map errors) → `PartitionLog::append_batch` (assign offsets, queue the write). Sequencing
//! happens here, before the connection reads its next request, so a partition's batches get
//! offsets in the order they arrived. The answer waits for the O_DIRECT write (acks=1) or for the
//! fdatasync after it (acks=all); acks=0 gets no answer at all.

use std::rc::Rc;

use bytes::Bytes;

use crate::log::{AppendOutcome, PartitionLog};
use crate::meta::controller::CreateTopicSpec;
use crate::protocol::messages::produce::{
    PartitionProduceResponse, ProduceRequest, ProduceResponse, TopicProduceResponse,
};
use crate::protocol::record_batch::{
    ATTRIBUTE_CONTROL, ATTRIBUTE_TRANSACTIONAL, batch_size, validate,
};
use crate::protocol::{ErrorCode, Response};
use crate::shard::control::create_topics;
use crate::shard::{PartitionRoute, Shard};

use super::errors::{batch_error_code, log_error_code};
use super::{Pending, now_ms};

/// One partition's outcome of the sequencing step.
struct Sequenced {
    index: i32,
    outcome: Result<(Rc<PartitionLog>, AppendOutcome), ErrorCode>,
}

/// Handles a Produce request: sequences every partition now, answers later.
pub async fn handle_produce(shard: &Rc<Shard>, request: ProduceRequest) -> Pending {
    let acks = request.acks;
    if shard.config.auto_create_topics {
        create_missing_topics(shard, &request).await;
    }
    let now = now_ms();
    let topics: Vec<(String, Vec<Sequenced>)> = request
        .topic_data
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .into_iter()
                .map(|partition| Sequenced {
                    index: partition.index,
                    outcome: if (-1..=1).contains(&acks) {
                        sequence(shard, &topic.name, partition.index, partition.records, now)
                    } else {
                        Err(ErrorCode::InvalidRequiredAcks)
                    },
                })
                .collect();
            (topic.name, partitions)
        })
        .collect();
    Box::pin(async move {
        let mut responses = Vec::with_capacity(topics.len());
        for (name, partitions) in topics {
            let mut partition_responses = Vec::with_capacity(partitions.len());
            for partition in partitions {
                partition_responses.push(answer(acks, partition).await);
            }
            responses.push(TopicProduceResponse {
                name,
                partition_responses,
            });
        }
        (acks != 0).then(|| {
            Response::Produce(ProduceResponse {
                responses,
                ..ProduceResponse::default()
            })
        })
    })
}

/// Waits for the acks level of one sequenced partition and builds its answer.
async fn answer(acks: i16, partition: Sequenced) -> PartitionProduceResponse {
    let (log, outcome) = match partition.outcome {
        Ok(appended) => appended,
        Err(code) => {
            return PartitionProduceResponse {
                index: partition.index,
                error_code: code.code(),
                base_offset: -1,
                ..PartitionProduceResponse::default()
            };
        }
    };
    let waited = match acks {
        -1 => log.wait_durable(&outcome).await,
        0 | 1 => log.wait_written(&outcome).await,
        _ => unreachable!("acks checked before sequencing"),
    };
    let error_code = match waited {
        Ok(()) => 0,
        Err(error) => log_error_code(&error).code(),
    };
    PartitionProduceResponse {
        index: partition.index,
        error_code,
        base_offset: outcome.base_offset,
        log_append_time_ms: outcome.log_append_time_ms,
        log_start_offset: outcome.log_start_offset,
        ..PartitionProduceResponse::default()
    }
}

/// Validates one partition's records and appends them to its log, if this shard owns it.
fn sequence(
    shard: &Shard,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
    now_ms: i64,
) -> Result<(Rc<PartitionLog>, AppendOutcome), ErrorCode> {
    let log = match shard.route(topic, partition) {
        PartitionRoute::Here(log) => log,
        PartitionRoute::Elsewhere(_) => return Err(ErrorCode::NotLeaderOrFollower),
        PartitionRoute::UnknownTopic | PartitionRoute::UnknownPartition => {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
    };
    let max_message_bytes = shard
        .cluster
        .borrow()
        .topic(topic)
        .map(|meta| meta.config.max_message_bytes)
        .unwrap_or(0);
    let records = records
        .filter(|r| !r.is_empty())
        .ok_or(ErrorCode::InvalidRecord)?;
    if records.len() as u64 > max_message_bytes {
        return Err(ErrorCode::MessageTooLarge);
    }
    check_single_batch(&records)?;
    let header = validate(&records).map_err(|error| batch_error_code(&error))?;
    let attributes = header.attributes.get();
    // Control batches come only from transaction coordinators, and transactions are not
    // supported; a producer id without a sequence cannot be checked for duplicates.
    let invalid = attributes & (ATTRIBUTE_CONTROL | ATTRIBUTE_TRANSACTIONAL) != 0
        || header.base_offset.get() != 0
        || (header.producer_id.get() >= 0 && header.base_sequence.get() < 0);
    if invalid {
        return Err(ErrorCode::InvalidRecord);
    }
    let outcome = log
        .append_batch(records, now_ms)
        .map_err(|error| log_error_code(&error))?;
    Ok((log, outcome))
}

/// Produce v3+ carries exactly one batch per partition.
fn check_single_batch(records: &Bytes) -> Result<(), ErrorCode> {
    match batch_size(records) {
        Ok(Some(size)) if size == records.len() => Ok(()),
        Ok(Some(size)) if size < records.len() => Err(ErrorCode::InvalidRecord),
        _ => Err(ErrorCode::CorruptMessage),
    }
}

async fn create_missing_topics(shard: &Rc<Shard>, request: &ProduceRequest) {
    let missing: Vec<CreateTopicSpec> = {
        let cluster = shard.cluster.borrow();
        request
            .topic_data
            .iter()
            .filter(|topic| cluster.topic(&topic.name).is_none())
            .map(|topic| CreateTopicSpec {
                name: topic.name.clone(),
                num_partitions: -1,
                replication_factor: -1,
                manual_assignment: false,
                configs: Vec::new(),
            })
            .collect()
    };
    if !missing.is_empty() {
        // A failure shows up as UNKNOWN_TOPIC_OR_PARTITION when the batch is routed.
        let _ = create_topics(shard, missing, false).await;
    }
}
