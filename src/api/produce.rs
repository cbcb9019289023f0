//! Produce: validate each partition's batch, route it, sequence it into its log, and answer when
//! the acks level is met.
//!
//! The produce path is three hops: `api/mod.rs` (dispatch) → [`handle_produce`] (validate, route,
//! map errors) → `PartitionLog::append_batch` (assign offsets, queue the write). Sequencing
//! happens here, before the connection reads its next request, so a partition's batches get
//! offsets in the order they arrived. The answer waits for the O_DIRECT write (acks=1) or for the
//! fdatasync after it (acks=all); acks=0 gets no answer at all. A replicated partition's batch
//! goes instead to its leader replica's Raft group (`Replica::propose`, in arrival order too) and
//! is answered once committed on a majority (acks=all), or once the leader's own write of it
//! completed (acks=1), as Kafka answers.
//!
//! Validation walks every record (decompressing a compressed batch as a stream), as Kafka's
//! LogValidator does, so a batch with a valid CRC around malformed records never reaches the log,
//! where it would stop every consumer of the partition. A topic whose `compression.type` names a
//! codec gets batches with another codec re-compressed. Both yield between bounded steps, so a
//! large batch does not stall the shard; the connection still reads nothing until its request is
//! sequenced, which keeps a partition's batches in arrival order.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::{BrokerConfig, CompressionType};
use crate::group::offsets_topic::OFFSETS_TOPIC;
use crate::log::{AppendOutcome, PartitionLog};
use crate::meta::controller::CreateTopicSpec;
use crate::protocol::compression::{CompressionError, RecordsEncoder};
use crate::protocol::messages::produce::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, ProduceRequest, ProduceResponse,
    TopicProduceResponse,
};
use crate::protocol::record_batch::{
    ATTRIBUTE_CONTROL, ATTRIBUTE_TRANSACTIONAL, Compression, RECORD_BATCH_HEADER_BYTES, batch_size,
    compression, validate, with_records,
};
use crate::protocol::record_validation::{RecordsValidation, STEP_BYTES, ValidationError};
use crate::protocol::{ErrorCode, Response};
use crate::shard::control::create_topics;
use crate::shard::replicas::Proposal;
use crate::shard::{PartitionRoute, Shard};

use super::errors::{batch_error_code, log_error_code, validation_error_code};
use super::{Pending, now_ms};

/// The least a replicated batch's commit is waited for, whatever the request's timeout_ms
/// (acks=1 and acks=0 clients may send 0): about two elections.
const PROPOSAL_WAIT_MIN: Duration = Duration::from_secs(5);

/// Why a partition's batch was not appended: its code and, for refused records, what Produce
/// v8+ reports beside it (older versions drop those fields when encoding).
struct Refusal {
    code: ErrorCode,
    record_errors: Vec<BatchIndexAndErrorMessage>,
    message: Option<String>,
}

impl From<ErrorCode> for Refusal {
    fn from(code: ErrorCode) -> Self {
        Self {
            code,
            record_errors: Vec::new(),
            message: None,
        }
    }
}

impl From<ValidationError> for Refusal {
    fn from(error: ValidationError) -> Self {
        let record_errors = match &error {
            ValidationError::Record(record) => vec![BatchIndexAndErrorMessage {
                batch_index: record.batch_index,
                batch_index_error_message: Some(record.fault.to_string()),
            }],
            ValidationError::Batch(_) | ValidationError::Compression(_) => Vec::new(),
        };
        Self {
            code: validation_error_code(&error),
            record_errors,
            message: Some(error.to_string()),
        }
    }
}

/// Where a sequenced batch went.
enum Appended {
    /// Into this shard's own log.
    Local(Rc<PartitionLog>, AppendOutcome),
    /// Proposed to a replicated partition's Raft group (or found there already).
    Replicated(Proposal),
}

/// One partition's outcome of the sequencing step.
struct Sequenced {
    index: i32,
    outcome: Result<Appended, Refusal>,
}

/// Handles a Produce request: sequences every partition now, answers later.
pub async fn handle_produce(shard: &Rc<Shard>, request: ProduceRequest) -> Pending {
    let acks = request.acks;
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    if shard.config.auto_create_topics {
        create_missing_topics(shard, &request).await;
    }
    let mut topics: Vec<(String, Vec<Sequenced>)> = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for partition in topic.partition_data {
            let outcome = if topic.name == OFFSETS_TOPIC {
                // Kafka's refusal of client writes to an internal topic: only the group
                // coordinators write offset records there.
                Err(ErrorCode::InvalidTopicException.into())
            } else if (-1..=1).contains(&acks) {
                sequence(shard, &topic.name, partition.index, partition.records, acks).await
            } else {
                Err(ErrorCode::InvalidRequiredAcks.into())
            };
            partitions.push(Sequenced {
                index: partition.index,
                outcome,
            });
        }
        topics.push((topic.name, partitions));
    }
    Box::pin(async move {
        let mut responses = Vec::with_capacity(topics.len());
        for (name, partitions) in topics {
            let mut partition_responses = Vec::with_capacity(partitions.len());
            for partition in partitions {
                partition_responses.push(answer(acks, timeout, partition).await);
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
async fn answer(acks: i16, timeout: Duration, partition: Sequenced) -> PartitionProduceResponse {
    let (log, outcome) = match partition.outcome {
        Ok(Appended::Local(log, outcome)) => (log, outcome),
        Ok(Appended::Replicated(proposal)) => {
            let committed = proposal.committed(timeout.max(PROPOSAL_WAIT_MIN)).await;
            return match committed {
                Ok(committed) => PartitionProduceResponse {
                    index: partition.index,
                    base_offset: committed.base_offset,
                    log_start_offset: committed.log_start_offset,
                    log_append_time_ms: -1,
                    ..PartitionProduceResponse::default()
                },
                Err(code) => PartitionProduceResponse {
                    index: partition.index,
                    error_code: code.code(),
                    base_offset: -1,
                    ..PartitionProduceResponse::default()
                },
            };
        }
        Err(refusal) => {
            return PartitionProduceResponse {
                index: partition.index,
                error_code: refusal.code.code(),
                base_offset: -1,
                record_errors: refusal.record_errors,
                error_message: refusal.message,
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

/// Validates one partition's records and appends them to its log, if this shard owns it, or
/// proposes them to its Raft group, if this shard holds its leading replica.
async fn sequence(
    shard: &Shard,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
    acks: i16,
) -> Result<Appended, Refusal> {
    let replica = shard.replica(topic, partition);
    let Some(replica) = replica else {
        return sequence_on(shard, topic, partition, records, acks, None).await;
    };
    let batch = records.clone();
    let result = sequence_on(
        shard,
        topic,
        partition,
        records,
        acks,
        Some(Rc::clone(&replica)),
    )
    .await;
    // A batch refused in a way its producer retries holds back that producer's later batches
    // here until it comes back (`Replica::note_refused`).
    if let (Err(refusal), Some(batch)) = (&result, batch)
        && matches!(
            refusal.code,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::RequestTimedOut
        )
    {
        replica.note_refused(&batch);
    }
    result
}

/// `sequence` with the shard's replica of the partition, if it holds one.
async fn sequence_on(
    shard: &Shard,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
    acks: i16,
    replica: Option<Rc<crate::shard::replicas::Replica>>,
) -> Result<Appended, Refusal> {
    let log = match shard.route(topic, partition) {
        PartitionRoute::Here(log) => log,
        PartitionRoute::Elsewhere(_) => return Err(ErrorCode::NotLeaderOrFollower.into()),
        PartitionRoute::UnknownTopic | PartitionRoute::UnknownPartition => {
            return Err(ErrorCode::UnknownTopicOrPartition.into());
        }
    };
    let (max_message_bytes, compression_type, min_insync_replicas) = shard
        .cluster
        .borrow()
        .topic(topic)
        .map(|meta| {
            (
                meta.config.max_message_bytes,
                meta.config.compression_type,
                meta.config.min_insync_replicas,
            )
        })
        .unwrap_or((0, CompressionType::Producer, 1));
    let records = records
        .filter(|r| !r.is_empty())
        .ok_or(ErrorCode::InvalidRecord)?;
    if records.len() as u64 > max_message_bytes {
        return Err(ErrorCode::MessageTooLarge.into());
    }
    check_single_batch(&records)?;
    let header = validate(&records).map_err(|error| Refusal {
        message: Some(error.to_string()),
        ..batch_error_code(&error).into()
    })?;
    let attributes = header.attributes.get();
    // Control batches come only from transaction coordinators, and transactions are not
    // supported; a producer id without a sequence cannot be checked for duplicates.
    let invalid = attributes & (ATTRIBUTE_CONTROL | ATTRIBUTE_TRANSACTIONAL) != 0
        || header.base_offset.get() != 0
        || (header.producer_id.get() >= 0 && header.base_sequence.get() < 0);
    if invalid {
        return Err(ErrorCode::InvalidRecord.into());
    }
    let records = check_records(records, compression_type, &shard.config).await?;
    if let Some(replica) = replica {
        // Every leader is in sync with itself: only a larger minimum needs the followers' state.
        if acks == -1 && min_insync_replicas > 1 {
            let lag_max = Duration::from_millis(shard.config.replica_lag_time_max_ms);
            if (replica.in_sync_replicas(lag_max) as i64) < min_insync_replicas {
                return Err(ErrorCode::NotEnoughReplicas.into());
            }
        }
        // acks=1 (and 0) is answered at the leader's own write, acks=all at the commit.
        let proposal = replica.propose(records, acks != -1).await?;
        return Ok(Appended::Replicated(proposal));
    }
    let outcome = log
        .append_batch(records, now_ms())
        .map_err(|error| log_error_code(&error))?;
    Ok(Appended::Local(log, outcome))
}

/// Walks every record of a header-validated batch and returns the batch to store: the same
/// bytes, or, when the topic stores another codec, the batch re-compressed with it.
async fn check_records(
    batch: Bytes,
    compression_type: CompressionType,
    config: &BrokerConfig,
) -> Result<Bytes, Refusal> {
    let header = crate::protocol::record_batch::header(&batch).map_err(ValidationError::from)?;
    let source = compression(header).map_err(ValidationError::from)?;
    let target = match compression_type {
        CompressionType::Codec(codec) if codec != source => Some(codec),
        CompressionType::Codec(_) | CompressionType::Producer => None,
    };
    let walk = source == Compression::None || config.validate_compressed_records;
    if target.is_none() && !walk {
        return Ok(batch);
    }
    let decompressed = {
        let bytes_max = config.decompressed_batch_bytes_max;
        let mut validation = RecordsValidation::new(&batch, header, bytes_max, target.is_some())?;
        while !validation.step()? {
            glommio::yield_if_needed().await;
        }
        validation.into_decompressed()
    };
    let Some(target) = target else {
        return Ok(batch);
    };
    let records = decompressed
        .as_deref()
        .unwrap_or(&batch[RECORD_BATCH_HEADER_BYTES..]);
    recompress(&batch, records, target).await
}

/// Builds the batch again around `records` compressed with `target`. It allocates the new batch:
/// this runs only for topics whose compression.type differs from what their producers send.
async fn recompress(batch: &[u8], records: &[u8], target: Compression) -> Result<Bytes, Refusal> {
    let refusal = |error: CompressionError| -> Refusal { ValidationError::from(error).into() };
    let compressed = if target == Compression::None {
        None
    } else {
        let mut encoder = RecordsEncoder::new(target, records.len()).map_err(refusal)?;
        for piece in records.chunks(STEP_BYTES) {
            encoder.write(piece).map_err(refusal)?;
            glommio::yield_if_needed().await;
        }
        Some(encoder.finish().map_err(refusal)?)
    };
    with_records(batch, target, compressed.as_deref().unwrap_or(records))
        .map_err(|error| ValidationError::from(error).into())
}

/// Produce v3+ carries exactly one batch per partition.
fn check_single_batch(records: &Bytes) -> Result<(), Refusal> {
    match batch_size(records) {
        Ok(Some(size)) if size == records.len() => Ok(()),
        Ok(Some(size)) if size < records.len() => Err(ErrorCode::InvalidRecord.into()),
        _ => Err(ErrorCode::CorruptMessage.into()),
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
