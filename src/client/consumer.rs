//! The fetching consumer: manually assigned partitions, one position each, long-poll Fetch rounds
//! to every leader at once. No consumer groups: the caller decides what to read.
//!
//! Guarantees:
//! - `poll` returns whole RecordBatches exactly as the broker stored them, each CRC-checked, in
//!   offset order per partition; a batch wholly before the position is dropped, and a batch that
//!   straddles it is returned with `position` set so `FetchedBatch::records` skips the records
//!   already consumed;
//! - positions advance only past batches that are returned: when a round fails, nothing is
//!   skipped and the next round fetches the same offsets;
//! - stale leaders, unknown partitions and lost connections refresh metadata and are retried on
//!   the next round (after a short backoff when the round returned nothing), at most
//!   `FAILED_ROUNDS_MAX` rounds in a row before `poll` reports the error.
//!
//! Callers must not: use a consumer from another executor, or assume a batch's `base_offset` is
//! the first record they have not seen (use `position` or `records`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::protocol::messages::fetch::{FetchPartition, FetchRequest, FetchResponse, FetchTopic};
use crate::protocol::messages::list_offsets::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use crate::protocol::record_batch::{
    BatchIter, Compression, RECORD_BATCH_HEADER_BYTES, compression, validate,
};
use crate::protocol::records::{RecordIter, RecordView};
use crate::protocol::{Request, Response};

use super::cluster::Cluster;
use super::compression::decompress;
use super::error::ClientError;

/// Rounds in a row that may fail (no leader, lost connection, broker error) before `poll`
/// returns the error instead of an empty result. With the backoff below, about 10 s.
pub const FAILED_ROUNDS_MAX: u32 = 50;
/// Pause before an empty, failed round returns, so a caller polling in a loop does not spin
/// against a broker that is down.
const FAILED_ROUND_BACKOFF: Duration = Duration::from_millis(200);
/// ListOffsets timestamp meaning "the log start offset".
const LIST_OFFSETS_EARLIEST: i64 = -2;
/// ListOffsets timestamp meaning "the high watermark".
const LIST_OFFSETS_LATEST: i64 = -1;
/// Attempts `assign` makes to resolve Earliest/Latest across leader changes.
const ASSIGN_ATTEMPTS_MAX: u32 = 20;

/// Where a newly assigned partition starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartOffset {
    /// The log start offset.
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// This offset.
    At(i64),
}

/// Fetch sizes and long-poll wait.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// How long the broker may hold a Fetch waiting for `min_bytes`.
    pub max_wait: Duration,
    /// Bytes the broker waits for before answering.
    pub min_bytes: i32,
    /// Bytes per Fetch response (the broker may exceed it by one batch, KIP-74).
    pub max_bytes: i32,
    /// Bytes per partition in a Fetch response.
    pub partition_max_bytes: i32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 50 << 20,
            partition_max_bytes: 1 << 20,
        }
    }
}

/// One whole, validated RecordBatch from a Fetch.
#[derive(Clone, Debug)]
pub struct FetchedBatch {
    /// The topic.
    pub topic: Rc<str>,
    /// The partition.
    pub partition: i32,
    /// The batch's first offset.
    pub base_offset: i64,
    /// The batch's last offset.
    pub last_offset: i64,
    /// The batch bytes (header and records, compressed if the producer compressed).
    pub batch: Bytes,
    /// The consumer's position when the batch was fetched: records before it were already
    /// returned (or skipped by `assign`). Equal to `base_offset` unless the batch straddles it.
    pub position: i64,
}

impl FetchedBatch {
    /// The records at or after `position`, decompressed.
    pub fn records(&self) -> Result<Vec<RecordView>, ClientError> {
        let mut records = batch_records(&self.batch)?;
        let skip = self.position - self.base_offset;
        if skip > 0 {
            records.retain(|record| i64::from(record.offset_delta) >= skip);
        }
        Ok(records)
    }
}

/// The records of a batch, decompressing lz4, zstd or gzip first (Snappy is refused).
pub fn batch_records(batch: &Bytes) -> Result<Vec<RecordView>, ClientError> {
    let header = validate(batch)?;
    let records_count = header.records_count.get();
    let region = match compression(header)? {
        Compression::None => batch.slice(RECORD_BATCH_HEADER_BYTES..),
        codec => Bytes::from(decompress(codec, &batch[RECORD_BATCH_HEADER_BYTES..])?),
    };
    Ok(RecordIter::new(region, records_count).collect::<Result<Vec<_>, _>>()?)
}

/// One assigned partition and its position.
struct Assignment {
    topic: Rc<str>,
    partition: i32,
    position: i64,
}

/// A consumer of manually assigned partitions.
pub struct Consumer {
    cluster: Rc<Cluster>,
    config: ConsumerConfig,
    assignments: RefCell<Vec<Assignment>>,
    failed_rounds: Cell<u32>,
}

/// What a round learned about one partition.
enum PartitionResult {
    Batches(Vec<FetchedBatch>),
    Retry(ClientError),
    Fatal(ClientError),
}

impl Consumer {
    /// A consumer with nothing assigned.
    pub fn new(cluster: Rc<Cluster>, config: ConsumerConfig) -> Consumer {
        Consumer {
            cluster,
            config,
            assignments: RefCell::new(Vec::new()),
            failed_rounds: Cell::new(0),
        }
    }

    /// Assigns a partition (or moves its position), resolving Earliest/Latest with ListOffsets.
    pub async fn assign(
        &self,
        topic: &str,
        partition: i32,
        start: StartOffset,
    ) -> Result<(), ClientError> {
        let position = match start {
            StartOffset::At(offset) => offset,
            StartOffset::Earliest => {
                self.list_offset(topic, partition, LIST_OFFSETS_EARLIEST)
                    .await?
            }
            StartOffset::Latest => {
                self.list_offset(topic, partition, LIST_OFFSETS_LATEST)
                    .await?
            }
        };
        let mut assignments = self.assignments.borrow_mut();
        match assignments
            .iter_mut()
            .find(|assigned| &*assigned.topic == topic && assigned.partition == partition)
        {
            Some(assigned) => assigned.position = position,
            None => assignments.push(Assignment {
                topic: Rc::from(topic),
                partition,
                position,
            }),
        }
        Ok(())
    }

    /// The next offset to read from a partition, if assigned.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.assignments
            .borrow()
            .iter()
            .find(|assigned| &*assigned.topic == topic && assigned.partition == partition)
            .map(|assigned| assigned.position)
    }

    /// One fetch round: a Fetch to every leader with assigned partitions, concurrently; returns
    /// whole batches at or after each position and advances positions. Refreshes metadata and
    /// retries (next round) on NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION and closed
    /// connections.
    pub async fn poll(&self) -> Result<Vec<FetchedBatch>, ClientError> {
        let (mut requests, mut leaderless) = self.fetch_requests();
        if leaderless.is_some() {
            // Usually a partition assigned before its metadata was loaded: load it now rather
            // than lose a round.
            self.refresh_assigned_metadata().await;
            (requests, leaderless) = self.fetch_requests();
        }
        let mut tasks = Vec::with_capacity(requests.len());
        for (node, request) in requests {
            let cluster = self.cluster.clone();
            tasks.push(glommio::spawn_local(fetch(cluster, node, request)));
        }
        let mut results: Vec<(Rc<str>, i32, PartitionResult)> = Vec::new();
        let mut retry: Option<ClientError> = leaderless;
        for task in tasks {
            match task.await {
                Ok(response) => self.read_response(response, &mut results),
                Err(error) if error.is_retriable() => retry = Some(error),
                Err(error) => return Err(error),
            }
        }
        for (_, _, result) in &results {
            match result {
                PartitionResult::Fatal(error) => return Err(error.clone()),
                PartitionResult::Retry(error) => retry = Some(error.clone()),
                PartitionResult::Batches(_) => {}
            }
        }
        let batches = self.advance(results);
        self.settle_round(batches, retry).await
    }

    /// Counts failed rounds, refreshes metadata after one, and backs off when nothing came.
    async fn settle_round(
        &self,
        batches: Vec<FetchedBatch>,
        retry: Option<ClientError>,
    ) -> Result<Vec<FetchedBatch>, ClientError> {
        let Some(error) = retry else {
            self.failed_rounds.set(0);
            return Ok(batches);
        };
        let failed_rounds = self.failed_rounds.get() + 1;
        self.failed_rounds.set(failed_rounds);
        if failed_rounds > FAILED_ROUNDS_MAX && batches.is_empty() {
            return Err(error);
        }
        tracing::debug!(%error, failed_rounds, "fetch round failed; refreshing metadata");
        self.refresh_assigned_metadata().await;
        if batches.is_empty() {
            glommio::timer::sleep(FAILED_ROUND_BACKOFF).await;
        }
        Ok(batches)
    }

    /// Reloads metadata for the assigned topics; a failure only means the next round retries.
    async fn refresh_assigned_metadata(&self) {
        let mut topics: Vec<Rc<str>> = Vec::new();
        for assigned in self.assignments.borrow().iter() {
            if !topics.contains(&assigned.topic) {
                topics.push(assigned.topic.clone());
            }
        }
        let names: Vec<&str> = topics.iter().map(|topic| &**topic).collect();
        if let Err(error) = self.cluster.refresh_metadata(&names).await {
            tracing::debug!(%error, "metadata refresh failed");
        }
    }

    /// One FetchRequest per leader holding its assigned partitions; an error if some
    /// partition has no known leader.
    fn fetch_requests(&self) -> (Vec<(i32, FetchRequest)>, Option<ClientError>) {
        let mut requests: Vec<(i32, FetchRequest)> = Vec::new();
        let mut leaderless = None;
        for assigned in self.assignments.borrow().iter() {
            let Some(leader) = self.cluster.leader(&assigned.topic, assigned.partition) else {
                leaderless = Some(ClientError::NoLeader {
                    topic: assigned.topic.to_string(),
                    partition: assigned.partition,
                });
                continue;
            };
            let slot = match requests.iter().position(|(node, _)| *node == leader) {
                Some(slot) => slot,
                None => {
                    requests.push((leader, self.empty_request()));
                    requests.len() - 1
                }
            };
            let partition = FetchPartition {
                partition: assigned.partition,
                fetch_offset: assigned.position,
                partition_max_bytes: self.config.partition_max_bytes,
                ..FetchPartition::default()
            };
            let topics = &mut requests[slot].1.topics;
            match topics
                .iter_mut()
                .find(|topic| *topic.topic == *assigned.topic)
            {
                Some(topic) => topic.partitions.push(partition),
                None => topics.push(FetchTopic {
                    topic: assigned.topic.to_string(),
                    partitions: vec![partition],
                }),
            }
        }
        (requests, leaderless)
    }

    fn empty_request(&self) -> FetchRequest {
        FetchRequest {
            replica_id: -1,
            max_wait_ms: i32::try_from(self.config.max_wait.as_millis()).unwrap_or(i32::MAX),
            min_bytes: self.config.min_bytes,
            max_bytes: self.config.max_bytes,
            // READ_UNCOMMITTED: this client writes no transactions.
            isolation_level: 0,
            // No fetch session (KIP-227): every request names all its partitions.
            session_id: 0,
            session_epoch: -1,
            ..FetchRequest::default()
        }
    }

    /// Turns a response into per-partition results: validated batches, or an error.
    fn read_response(
        &self,
        response: FetchResponse,
        results: &mut Vec<(Rc<str>, i32, PartitionResult)>,
    ) {
        let assignments = self.assignments.borrow();
        for topic in response.responses {
            for data in topic.partitions {
                let Some(assigned) = assignments.iter().find(|assigned| {
                    *assigned.topic == *topic.topic && assigned.partition == data.partition_index
                }) else {
                    continue;
                };
                let context = || format!("fetch {}-{}", topic.topic, data.partition_index);
                let result = match ClientError::from_code(data.error_code, context) {
                    Some(error) if error.needs_metadata_refresh() || error.is_retriable() => {
                        PartitionResult::Retry(error)
                    }
                    Some(error) => PartitionResult::Fatal(error),
                    None => match split_batches(assigned, data.records.map(|set| set.to_bytes())) {
                        Ok(batches) => PartitionResult::Batches(batches),
                        Err(error) => PartitionResult::Fatal(error),
                    },
                };
                results.push((assigned.topic.clone(), assigned.partition, result));
            }
        }
    }

    /// Advances each partition past its returned batches and collects them.
    fn advance(&self, results: Vec<(Rc<str>, i32, PartitionResult)>) -> Vec<FetchedBatch> {
        let mut assignments = self.assignments.borrow_mut();
        let mut out = Vec::new();
        for (topic, partition, result) in results {
            let PartitionResult::Batches(batches) = result else {
                continue;
            };
            let Some(last) = batches.last() else { continue };
            if let Some(assigned) = assignments
                .iter_mut()
                .find(|assigned| assigned.topic == topic && assigned.partition == partition)
            {
                assigned.position = last.last_offset + 1;
            }
            out.extend(batches);
        }
        out
    }

    async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        let mut attempts = 0;
        loop {
            match self.list_offset_once(topic, partition, timestamp).await {
                Err(error) if error.is_retriable() && attempts < ASSIGN_ATTEMPTS_MAX => {
                    attempts += 1;
                    if error.needs_metadata_refresh() {
                        let _ = self.cluster.refresh_metadata(&[topic]).await;
                    }
                    glommio::timer::sleep(FAILED_ROUND_BACKOFF).await;
                }
                other => return other,
            }
        }
    }

    async fn list_offset_once(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        let leader =
            self.cluster
                .leader(topic, partition)
                .ok_or_else(|| ClientError::NoLeader {
                    topic: topic.to_string(),
                    partition,
                })?;
        let connection = self.cluster.connection(leader).await?;
        let request = ListOffsetsRequest {
            replica_id: -1,
            isolation_level: 0,
            topics: vec![ListOffsetsTopic {
                name: topic.to_string(),
                partitions: vec![ListOffsetsPartition {
                    partition_index: partition,
                    timestamp,
                    ..ListOffsetsPartition::default()
                }],
            }],
        };
        let Response::ListOffsets(response) =
            connection.call(Request::ListOffsets(request)).await?
        else {
            return Err(ClientError::UnexpectedResponse("ListOffsets"));
        };
        let answer = response
            .topics
            .iter()
            .filter(|answer| answer.name == topic)
            .flat_map(|answer| answer.partitions.iter())
            .find(|answer| answer.partition_index == partition)
            .ok_or(ClientError::UnexpectedResponse(
                "ListOffsets without the partition",
            ))?;
        if let Some(error) = ClientError::from_code(answer.error_code, || {
            format!("list offsets {topic}-{partition}")
        }) {
            return Err(error);
        }
        Ok(answer.offset)
    }
}

async fn fetch(
    cluster: Rc<Cluster>,
    node: i32,
    request: FetchRequest,
) -> Result<FetchResponse, ClientError> {
    let connection = cluster.connection(node).await?;
    match connection.call(Request::Fetch(request)).await? {
        Response::Fetch(response) => {
            if let Some(error) = ClientError::from_code(response.error_code, || "fetch".into()) {
                return Err(error);
            }
            Ok(response)
        }
        _ => Err(ClientError::UnexpectedResponse("Fetch")),
    }
}

/// The whole batches of a partition's records that end at or after the position, each
/// validated; a partial batch at the end (KIP-74 truncation) is left for the next round.
fn split_batches(
    assigned: &Assignment,
    records: Option<Bytes>,
) -> Result<Vec<FetchedBatch>, ClientError> {
    let mut out = Vec::new();
    let Some(records) = records else {
        return Ok(out);
    };
    let mut position = assigned.position;
    for batch in BatchIter::new(records) {
        let batch = batch?;
        let header = validate(&batch)?;
        let base_offset = header.base_offset.get();
        let last_offset = base_offset + i64::from(header.last_offset_delta.get());
        if last_offset < position {
            continue;
        }
        out.push(FetchedBatch {
            topic: assigned.topic.clone(),
            partition: assigned.partition,
            base_offset,
            last_offset,
            batch,
            position: position.max(base_offset),
        });
        position = last_offset + 1;
    }
    Ok(out)
}
