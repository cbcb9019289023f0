//! Fetch: whole batches from each partition's log or cache, with long polling.
//!
//! A fetch answers at once when it has `min_bytes` of data or an error; otherwise it waits until
//! a requested partition's high watermark moves or `max_wait_ms` passes, then reads again. The
//! listeners are registered before reading, so a write landing between the read and the wait
//! still wakes it. Record bytes go out as the `Bytes` the log holds (see `RecordSet`), never
//! joined or copied here. Fetch sessions are declined (session id 0), so every fetch is full.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::protocol::field::RecordSet;
use crate::protocol::messages::fetch::{
    FetchRequest, FetchResponse, FetchableTopicResponse, PartitionData,
};
use crate::protocol::{ErrorCode, Response};
use crate::shard::{PartitionRoute, Shard};

use super::Pending;
use super::errors::log_error_code;

/// Longest long poll honoured, whatever the client asks: a parked fetch holds its connection's
/// later responses, so an absurd `max_wait_ms` must not park it for hours.
const FETCH_WAIT_MAX: Duration = Duration::from_secs(30);

/// Kafka's isolation level for read_committed.
const READ_COMMITTED: i8 = 1;

/// Handles a Fetch request; all of its work happens in the returned future.
pub fn handle_fetch(shard: &Rc<Shard>, request: FetchRequest) -> Pending {
    let shard = Rc::clone(shard);
    Box::pin(async move { Some(Response::Fetch(fetch(&shard, &request).await)) })
}

async fn fetch(shard: &Rc<Shard>, request: &FetchRequest) -> FetchResponse {
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MAX);
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    loop {
        let listeners = listen(shard, request);
        let (response, bytes, failed) = read_all(shard, request).await;
        let now = Instant::now();
        if bytes >= min_bytes.max(1) || failed || now >= deadline || listeners.is_empty() {
            return response;
        }
        let timer = glommio::timer::sleep(deadline - now);
        futures_lite::future::or(AnyOf(listeners), timer).await;
    }
}

/// A future that resolves when any of its futures does.
struct AnyOf(Vec<Pin<Box<dyn Future<Output = ()>>>>);

impl Future for AnyOf {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        for future in self.0.iter_mut() {
            if future.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

fn listen(shard: &Shard, request: &FetchRequest) -> Vec<Pin<Box<dyn Future<Output = ()>>>> {
    let mut listeners = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            if let PartitionRoute::Here(log) = shard.route(&topic.topic, partition.partition) {
                let changed = log.changed();
                listeners.push(Box::pin(async move {
                    changed.await;
                }) as Pin<Box<dyn Future<Output = ()>>>);
            }
        }
    }
    listeners
}

/// Reads every requested partition once: the response, its record bytes, and whether any
/// partition failed (a failure is answered at once, as Kafka does).
async fn read_all(shard: &Shard, request: &FetchRequest) -> (FetchResponse, usize, bool) {
    let mut bytes_remaining = request.max_bytes.max(0) as usize;
    let mut total_bytes = 0;
    let mut failed = false;
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let limit = (partition.partition_max_bytes.max(0) as usize).min(bytes_remaining);
            // Once the response is full, later partitions report their watermarks only; the
            // first partition with data always gets at least one whole batch (KIP-74).
            let limit = if total_bytes == 0 {
                limit.max(1)
            } else {
                limit
            };
            let data = read_partition(shard, &topic.topic, partition, limit, request).await;
            let size = data.records.as_ref().map_or(0, RecordSet::len);
            failed |= data.error_code != 0;
            total_bytes += size;
            bytes_remaining = bytes_remaining.saturating_sub(size);
            partitions.push(data);
        }
        responses.push(FetchableTopicResponse {
            topic: topic.topic.clone(),
            partitions,
        });
    }
    let response = FetchResponse {
        responses,
        ..FetchResponse::default()
    };
    (response, total_bytes, failed)
}

async fn read_partition(
    shard: &Shard,
    topic: &str,
    partition: &crate::protocol::messages::fetch::FetchPartition,
    limit: usize,
    request: &FetchRequest,
) -> PartitionData {
    let failure = |code: ErrorCode| PartitionData {
        partition_index: partition.partition,
        error_code: code.code(),
        high_watermark: -1,
        records: Some(RecordSet::default()),
        ..PartitionData::default()
    };
    let log = match shard.route(topic, partition.partition) {
        PartitionRoute::Here(log) => log,
        PartitionRoute::Elsewhere(_) => return failure(ErrorCode::NotLeaderOrFollower),
        PartitionRoute::UnknownTopic | PartitionRoute::UnknownPartition => {
            return failure(ErrorCode::UnknownTopicOrPartition);
        }
    };
    // A single node has one leader epoch, 0; -1 means the client does not check.
    match partition.current_leader_epoch {
        epoch if epoch > 0 => return failure(ErrorCode::UnknownLeaderEpoch),
        epoch if epoch < -1 => return failure(ErrorCode::FencedLeaderEpoch),
        _ => {}
    }
    let chunks = if limit == 0 {
        Ok(Vec::new())
    } else {
        log.read(partition.fetch_offset, limit).await
    };
    let high_watermark = log.high_watermark();
    let (error_code, records) = match chunks {
        Ok(chunks) => (0, RecordSet(chunks)),
        Err(error) => (log_error_code(&error).code(), RecordSet::default()),
    };
    PartitionData {
        partition_index: partition.partition,
        error_code,
        high_watermark,
        // No transactions: everything below the high watermark is stable.
        last_stable_offset: high_watermark,
        log_start_offset: log.log_start_offset(),
        aborted_transactions: (request.isolation_level == READ_COMMITTED).then(Vec::new),
        preferred_read_replica: -1,
        records: Some(records),
        ..PartitionData::default()
    }
}
