//! Fetch: whole batches from each partition's log or cache, with long polling.
//!
//! A fetch answers at once when it has `min_bytes` of data (so `min_bytes` 0 never waits) or an
//! error; otherwise it parks until `max_wait_ms` passes or enough data arrives. While parked it is
//! subscribed to each requested partition's high-watermark signal with the partition's place in
//! the request as key, and on waking it re-reads only the partitions whose watermark moved: a
//! watermark move costs O(fetches waiting on that partition), never O(fetches x partitions).
//! Subscriptions are taken before reading, so a write landing between a read and the wait still
//! wakes it. Record bytes go out as the `Bytes` the log holds (see `RecordSet`), never joined or
//! copied here. Fetch sessions are declined (session id 0), so every fetch is full.
//!
//! A response holds at most `min(max_bytes, fetch.max.bytes)` record bytes, and never much more
//! than the shard's request budget has free when it reads (at least one batch, KIP-74, so a
//! consumer always progresses); the connection charges the response to that budget until it
//! is written.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::log::signal::{Subscription, WakeSet};
use crate::protocol::field::RecordSet;
use crate::protocol::messages::fetch::{
    FetchPartition, FetchRequest, FetchResponse, FetchableTopicResponse, PartitionData,
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
    let mut state = FetchState::new(shard, request);
    let wake = WakeSet::new();
    for key in 0..state.targets.len() {
        state.subscribe(shard, &wake, key);
        state.read(shard, key).await;
        glommio::yield_if_needed().await;
    }
    loop {
        let now = Instant::now();
        if state.total_bytes >= min_bytes
            || state.budget_limited
            || state.failed
            || now >= deadline
            || state.subscribed == 0
        {
            return state.into_response();
        }
        let timer = async {
            glommio::timer::sleep(deadline - now).await;
            Vec::new()
        };
        let fired = futures_lite::future::or(wake.fired(), timer).await;
        for key in fired {
            state.subscribe(shard, &wake, key);
            state.read(shard, key).await;
            glommio::yield_if_needed().await;
        }
    }
}

/// One fetch's partitions in request order, with what was last read from each.
struct FetchState<'a> {
    request: &'a FetchRequest,
    /// (topic index, partition index in that topic) for each key.
    targets: Vec<(usize, usize)>,
    data: Vec<PartitionData>,
    subscriptions: Vec<Option<Subscription>>,
    subscribed: usize,
    total_bytes: usize,
    failed: bool,
    /// A read got less room than the request allowed because the shard's request budget was
    /// short: answer with what fits now rather than park holding it.
    budget_limited: bool,
    max_bytes: usize,
}

impl<'a> FetchState<'a> {
    fn new(shard: &Shard, request: &'a FetchRequest) -> Self {
        let targets: Vec<(usize, usize)> = request
            .topics
            .iter()
            .enumerate()
            .flat_map(|(topic, fetch_topic)| {
                (0..fetch_topic.partitions.len()).map(move |partition| (topic, partition))
            })
            .collect();
        let count = targets.len();
        Self {
            request,
            targets,
            data: Vec::with_capacity(count),
            subscriptions: (0..count).map(|_| None).collect(),
            subscribed: 0,
            total_bytes: 0,
            failed: false,
            budget_limited: false,
            max_bytes: (request.max_bytes.max(0) as usize).min(shard.config.fetch_max_bytes),
        }
    }

    fn partition(&self, key: usize) -> (&'a str, &'a FetchPartition) {
        let (topic, partition) = self.targets[key];
        let topic = &self.request.topics[topic];
        (&topic.topic, &topic.partitions[partition])
    }

    /// Subscribes `key` to its partition's next watermark move (again, after it fired).
    fn subscribe(&mut self, shard: &Shard, wake: &Rc<WakeSet>, key: usize) {
        let (topic, partition) = self.partition(key);
        if let PartitionRoute::Here(log) = shard.route(topic, partition.partition) {
            let subscription = log.changed().subscribe(wake, key);
            if self.subscriptions[key].replace(subscription).is_none() {
                self.subscribed += 1;
            }
        }
    }

    /// Reads partition `key` (again), within what the response and the budget have room for.
    async fn read(&mut self, shard: &Shard, key: usize) {
        let (topic, partition) = self.partition(key);
        let size_before = self.data.get(key).map_or(0, record_bytes);
        let others_bytes = self.total_bytes - size_before;
        let request_room = (partition.partition_max_bytes.max(0) as usize)
            .min(self.max_bytes.saturating_sub(others_bytes));
        let limit = request_room.min(shard.request_budget.available_bytes());
        // Once the response is full, later partitions report their watermarks only; the
        // first partition with data always gets at least one whole batch (KIP-74).
        let limit = if others_bytes == 0 {
            limit.max(1)
        } else {
            limit
        };
        let data = read_partition(shard, topic, partition, limit, self.request).await;
        self.failed |= data.error_code != 0;
        self.budget_limited |= limit < request_room && data.high_watermark > partition.fetch_offset;
        self.total_bytes = others_bytes + record_bytes(&data);
        if key == self.data.len() {
            self.data.push(data);
        } else {
            self.data[key] = data;
        }
    }

    fn into_response(self) -> FetchResponse {
        let mut data = self.data.into_iter();
        let responses = self
            .request
            .topics
            .iter()
            .map(|topic| FetchableTopicResponse {
                topic: topic.topic.clone(),
                partitions: data.by_ref().take(topic.partitions.len()).collect(),
            })
            .collect();
        FetchResponse {
            responses,
            ..FetchResponse::default()
        }
    }
}

fn record_bytes(data: &PartitionData) -> usize {
    data.records.as_ref().map_or(0, RecordSet::len)
}

async fn read_partition(
    shard: &Shard,
    topic: &str,
    partition: &FetchPartition,
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
    // A replicated partition's latest leader epoch, which Metadata reports; an unreplicated one
    // is always reported at epoch 0. -1 means the client does not check. A newer epoch than
    // ours: this replica has not caught up (retriable); an older one: the client's metadata is
    // stale (KIP-320).
    let current = if shard.replica(topic, partition.partition).is_some() {
        log.leader_epoch()
    } else {
        0
    };
    match partition.current_leader_epoch {
        epoch if epoch > current => return failure(ErrorCode::UnknownLeaderEpoch),
        epoch if epoch < -1 || (epoch >= 0 && epoch < current) => {
            return failure(ErrorCode::FencedLeaderEpoch);
        }
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
