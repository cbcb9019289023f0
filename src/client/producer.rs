//! The batching producer: per-partition accumulators, one Produce request per leader node holding
//! its ready batches, pipelined up to a per-node limit, with retries and optional idempotence.
//!
//! Guarantees:
//! - each batch is reported exactly once to `on_delivery`: acknowledged (acks 1/all), written
//!   (acks 0), or failed for good, with the caller's tags of its records in send order;
//! - a partition's batches are built, sequenced and first sent in send order; with idempotence a
//!   retried batch keeps its bytes and its sequence, so the broker drops duplicates;
//! - memory is bounded: `send` waits while `buffer_bytes_max` bytes are queued but unreported;
//! - a batch is sent when it reaches `batch_bytes`, when `linger` has passed since its first
//!   record (checked by a timer task every `linger / 4`, at least 1 ms), or on `flush`;
//! - retriable failures (stale leader, unknown topic, lost connection, timeouts) refresh
//!   metadata and retry with backoff, at most `RETRIES_MAX` times; a partition with no leader
//!   for longer than `request_timeout` fails its queued batches with `NoLeader`.
//!
//! Without idempotence, a retry may reorder a partition's batches (like Kafka with more than one
//! request in flight). Callers must not: use a producer from another executor, call `send`
//! from `on_delivery` (the callback cannot await; queueing there would also recurse), or drop
//! the producer before `flush` if they need every record sent (dropping stops the linger timer;
//! requests already in flight still complete and report, records still open are dropped).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use glommio::sync::Semaphore;
use glommio::task::JoinHandle;

use crate::protocol::messages::init_producer_id::InitProducerIdRequest;
use crate::protocol::messages::produce::{
    PartitionProduceData, ProduceRequest, ProduceResponse, TopicProduceData,
};
use crate::protocol::record_batch::RECORD_BATCH_HEADER_BYTES;
use crate::protocol::records::{BatchBuilder, Record};
use crate::protocol::{ErrorCode, Request, Response};

use super::cluster::Cluster;
use super::compression::{CompressionCodec, compress_batch};
use super::error::ClientError;

/// Attempts after the first before a batch fails for good. With the backoff below this spans
/// about 17 s: enough for a broker restart or a leader election, short enough to surface a
/// broker that is really gone.
pub const RETRIES_MAX: u32 = 20;
/// First retry backoff; it doubles per attempt up to `RETRY_BACKOFF_MAX`.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest pause between two attempts of one batch.
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Shortest gap between two metadata refreshes the producer starts itself, so a missing topic
/// does not turn into a Metadata storm.
const METADATA_REFRESH_INTERVAL_MIN: Duration = Duration::from_millis(100);
/// How often `flush` checks whether every batch has been reported.
const FLUSH_POLL_INTERVAL: Duration = Duration::from_millis(1);
/// Upper bound of one record's framing inside a batch (length, attributes, timestamp and offset
/// deltas, key and value lengths, header count), for buffer accounting and batch sizing.
const RECORD_OVERHEAD_BYTES: usize = 24;
/// Framing of one header (two varint lengths).
const HEADER_OVERHEAD_BYTES: usize = 10;
/// Transaction timeout sent with InitProducerId; unused without a transactional id.
const TRANSACTION_TIMEOUT_MS: i32 = 60_000;
/// Most bytes a new batch reserves up front (a larger batch.size still works: it grows).
const BATCH_CAPACITY_RESERVED_MAX: usize = 16 * 1024 * 1024;

/// How a producer batches, sends and bounds its memory.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// 0 (no response), 1 (leader wrote it) or -1 (all in-sync replicas have it).
    pub acks: i16,
    /// How long a partition batch may wait to fill.
    pub linger: Duration,
    /// Close a partition batch at this size (a single larger record gets a batch of its own).
    pub batch_bytes: usize,
    /// Codec for the records region of every batch.
    pub compression: CompressionCodec,
    /// InitProducerId once, then per-partition sequences so retries never duplicate.
    pub idempotent: bool,
    /// Pipelined produce requests per broker connection (at most 5 with idempotence, Kafka's
    /// limit for the broker's duplicate detection).
    pub in_flight_per_connection_max: usize,
    /// Bytes queued but unacknowledged; `send` waits when over.
    pub buffer_bytes_max: usize,
    /// How long a produce request may wait for its answer, and how long a partition may go
    /// without a leader before its batches fail.
    pub request_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: 1,
            linger: Duration::from_millis(5),
            batch_bytes: 1 << 20,
            compression: CompressionCodec::None,
            idempotent: false,
            in_flight_per_connection_max: 5,
            buffer_bytes_max: 64 << 20,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The outcome of one batch, passed to `on_delivery`.
#[derive(Debug)]
pub struct DeliveryReport<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The offset of the batch's first record; -1 with acks=0 or on error.
    pub base_offset: i64,
    /// The tags passed to `send`, one per record, in order.
    pub tags: &'a [u64],
    /// Why the batch failed for good, or `None`.
    pub error: Option<&'a ClientError>,
}

/// The delivery callback a producer calls once per batch.
pub type DeliveryCallback = Box<dyn Fn(&DeliveryReport<'_>)>;

/// A batch still taking records.
struct OpenBatch {
    builder: BatchBuilder,
    base_timestamp_ms: i64,
    tags: Vec<u64>,
    created: Instant,
    buffer_bytes: usize,
}

/// A finished batch waiting to be sent, in flight, or waiting to be retried.
struct ClosedBatch {
    /// Position among the partition's batches, to keep retries in order.
    number: u64,
    bytes: Bytes,
    tags: Vec<u64>,
    created: Instant,
    buffer_bytes: usize,
    attempts: u32,
}

/// One partition's accumulator.
#[derive(Default)]
struct PartitionState {
    open: Option<OpenBatch>,
    queue: VecDeque<ClosedBatch>,
    sequence_next: i32,
    number_next: u64,
    retry_at: Option<Instant>,
    /// The node whose answer (or silence) put the partition in backoff, when that answer meant
    /// the leader moved: a leader other than it in fresher metadata ends the backoff at once
    /// (as Kafka's clients do since KIP-951), and metadata is refreshed until one shows up.
    retry_leader: Option<i32>,
    /// Numbers of the closed batches not yet reported, ascending.
    unreported: VecDeque<u64>,
}

/// A batch inside a produce request.
struct InFlightBatch {
    topic: Rc<str>,
    partition: i32,
    batch: ClosedBatch,
}

struct Inner {
    cluster: Rc<Cluster>,
    config: ProducerConfig,
    on_delivery: DeliveryCallback,
    /// Producer id and epoch when idempotent.
    identity: Option<(i64, i16)>,
    topics: RefCell<HashMap<Rc<str>, Vec<PartitionState>>>,
    buffer: Semaphore,
    in_flight: RefCell<HashMap<i32, usize>>,
    batches_outstanding: Cell<usize>,
    flushing: Cell<usize>,
    refreshing: Cell<bool>,
    refreshed_at: Cell<Option<Instant>>,
    error_first: RefCell<Option<ClientError>>,
}

/// A batching producer bound to one executor.
pub struct Producer {
    inner: Rc<Inner>,
    linger_task: Option<JoinHandle<()>>,
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Some(task) = self.linger_task.take() {
            task.cancel();
        }
    }
}

impl Producer {
    /// A producer on `cluster`. `on_delivery` is called once per batch when it is acknowledged
    /// (acks 1/all), sent (acks 0) or failed for good, with the caller's tags of its records in
    /// order. With `idempotent`, asks a broker for a producer id first.
    pub async fn new(
        cluster: Rc<Cluster>,
        config: ProducerConfig,
        on_delivery: DeliveryCallback,
    ) -> Result<Rc<Producer>, ClientError> {
        validate_config(&config)?;
        let identity = if config.idempotent {
            Some(init_producer_id(&cluster).await?)
        } else {
            None
        };
        let inner = Rc::new(Inner {
            cluster,
            buffer: Semaphore::new(config.buffer_bytes_max as u64),
            config,
            on_delivery,
            identity,
            topics: RefCell::new(HashMap::new()),
            in_flight: RefCell::new(HashMap::new()),
            batches_outstanding: Cell::new(0),
            flushing: Cell::new(0),
            refreshing: Cell::new(false),
            refreshed_at: Cell::new(None),
            error_first: RefCell::new(None),
        });
        let tick =
            (inner.config.linger / 4).clamp(Duration::from_millis(1), Duration::from_millis(50));
        let linger_task = glommio::spawn_local(linger_loop(Rc::downgrade(&inner), tick)).detach();
        Ok(Rc::new(Producer {
            inner,
            linger_task: Some(linger_task),
        }))
    }

    /// The producer id and epoch, when idempotent.
    pub fn identity(&self) -> Option<(i64, i16)> {
        self.inner.identity
    }

    /// Queues one record for topic/partition; `tag` comes back in the delivery report (the load
    /// generator passes the record's intended send time). Waits while the buffer is full.
    pub async fn send(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&[u8], Option<&[u8]>)],
        tag: u64,
    ) -> Result<(), ClientError> {
        if partition < 0 {
            return Err(ClientError::InvalidArgument(format!(
                "partition {partition}"
            )));
        }
        let inner = &self.inner;
        let size = record_size_estimate(key, value, headers);
        let permits = size.min(inner.config.buffer_bytes_max) as u64;
        let acquired = inner
            .buffer
            .try_acquire(permits)
            .map_err(|_| ClientError::Closed)?;
        if !acquired {
            // The buffer is full: send open batches now instead of waiting out their linger,
            // since only reports free buffer space.
            let _flushing = Flushing::start(inner);
            inner.drain();
            inner
                .buffer
                .acquire(permits)
                .await
                .map_err(|_| ClientError::Closed)?;
        }
        let record = Record {
            timestamp_delta: 0,
            key,
            value: Some(value),
            headers,
        };
        let closed = inner.append(topic, partition, record, tag, permits as usize);
        if closed || inner.config.linger.is_zero() {
            inner.drain();
        }
        Ok(())
    }

    /// Sends everything queued and waits until every batch is reported. Returns the first
    /// error any batch failed with since the previous flush (each is also in its report).
    pub async fn flush(&self) -> Result<(), ClientError> {
        let inner = &self.inner;
        let flushing = Flushing::start(inner);
        while inner.batches_outstanding.get() > 0 {
            inner.drain();
            // Polling is enough here: flush is not on the per-record path.
            glommio::timer::sleep(FLUSH_POLL_INTERVAL).await;
        }
        drop(flushing);
        match inner.error_first.borrow_mut().take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// While alive, open batches are sent without waiting for their linger. A guard, so a
/// cancelled `send` or `flush` cannot leave the producer flushing for good.
struct Flushing<'a>(&'a Cell<usize>);

impl<'a> Flushing<'a> {
    fn start(inner: &'a Inner) -> Self {
        inner.flushing.set(inner.flushing.get() + 1);
        Flushing(&inner.flushing)
    }
}

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

fn validate_config(config: &ProducerConfig) -> Result<(), ClientError> {
    let invalid = |what: String| Err(ClientError::InvalidArgument(what));
    if ![0, 1, -1].contains(&config.acks) {
        return invalid(format!("acks {}", config.acks));
    }
    if config.in_flight_per_connection_max == 0 {
        return invalid("in_flight_per_connection_max 0".into());
    }
    if config.idempotent && config.in_flight_per_connection_max > 5 {
        return invalid("idempotence allows at most 5 requests in flight".into());
    }
    if config.idempotent && config.acks != -1 {
        // Kafka requires acks=all with idempotence; a lost ack would otherwise go unnoticed.
        return invalid("idempotence needs acks=-1".into());
    }
    if config.buffer_bytes_max == 0 || config.batch_bytes == 0 {
        return invalid("buffer_bytes_max and batch_bytes must be positive".into());
    }
    Ok(())
}

fn record_size_estimate(
    key: Option<&[u8]>,
    value: &[u8],
    headers: &[(&[u8], Option<&[u8]>)],
) -> usize {
    let headers_bytes: usize = headers
        .iter()
        .map(|(key, value)| key.len() + value.map_or(0, <[u8]>::len) + HEADER_OVERHEAD_BYTES)
        .sum();
    RECORD_OVERHEAD_BYTES + key.map_or(0, <[u8]>::len) + value.len() + headers_bytes
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// `sequence + increment`, wrapping to 0 after i32::MAX as Kafka does.
fn sequence_add(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

async fn init_producer_id(cluster: &Cluster) -> Result<(i64, i16), ClientError> {
    let mut attempts = 0;
    loop {
        let result = async {
            let connection = cluster.any_connection().await?;
            let request = InitProducerIdRequest {
                transactional_id: None,
                transaction_timeout_ms: TRANSACTION_TIMEOUT_MS,
                ..InitProducerIdRequest::default()
            };
            let Response::InitProducerId(response) =
                connection.call(Request::InitProducerId(request)).await?
            else {
                return Err(ClientError::UnexpectedResponse("InitProducerId"));
            };
            if let Some(error) =
                ClientError::from_code(response.error_code, || "InitProducerId".into())
            {
                return Err(error);
            }
            Ok((response.producer_id, response.producer_epoch))
        }
        .await;
        match result {
            Err(error) if error.is_retriable() && attempts < RETRIES_MAX => {
                attempts += 1;
                glommio::timer::sleep(backoff(attempts)).await;
            }
            other => return other,
        }
    }
}

fn backoff(attempts: u32) -> Duration {
    let factor = 1u32 << attempts.min(10);
    (RETRY_BACKOFF_MIN * factor).min(RETRY_BACKOFF_MAX)
}

async fn linger_loop(inner: Weak<Inner>, tick: Duration) {
    loop {
        glommio::timer::sleep(tick).await;
        let Some(inner) = inner.upgrade() else { return };
        inner.drain();
    }
}

impl Inner {
    /// Appends a record to its partition's open batch; returns whether a batch was closed.
    fn append(
        &self,
        topic: &str,
        partition: i32,
        mut record: Record<'_>,
        tag: u64,
        size: usize,
    ) -> bool {
        let mut topics = self.topics.borrow_mut();
        let partitions = match topics.get_mut(topic) {
            Some(partitions) => partitions,
            // One allocation per topic, on its first record.
            None => topics.entry(Rc::from(topic)).or_default(),
        };
        let index = partition as usize;
        if partitions.len() <= index {
            partitions.resize_with(index + 1, PartitionState::default);
        }
        let state = &mut partitions[index];
        let mut closed = false;
        let full = state.open.as_ref().is_some_and(|open| {
            open.builder.records_count() > 0
                && open.builder.size_bytes() + size > self.config.batch_bytes
        });
        if full {
            self.close_open(state);
            closed = true;
        }
        let now_ms = now_ms();
        // Room for a whole batch (or this record alone), so building never regrows the buffer.
        let batch_capacity = self
            .config
            .batch_bytes
            .max(size + RECORD_BATCH_HEADER_BYTES + 64)
            .min(BATCH_CAPACITY_RESERVED_MAX);
        let open = state.open.get_or_insert_with(|| {
            self.batches_outstanding
                .set(self.batches_outstanding.get() + 1);
            OpenBatch {
                builder: BatchBuilder::with_capacity(now_ms, batch_capacity),
                base_timestamp_ms: now_ms,
                tags: Vec::new(),
                created: Instant::now(),
                buffer_bytes: 0,
            }
        });
        record.timestamp_delta = (now_ms - open.base_timestamp_ms).max(0);
        open.builder.push(&record);
        open.tags.push(tag);
        open.buffer_bytes += size;
        if open.builder.size_bytes() >= self.config.batch_bytes {
            self.close_open(state);
            closed = true;
        }
        closed
    }

    /// Finishes the partition's open batch (sequence, compression, CRC) into its queue. A batch
    /// that cannot be encoded is queued empty and fails when it is sent.
    fn close_open(&self, state: &mut PartitionState) {
        let Some(mut open) = state.open.take() else {
            return;
        };
        if let Some((producer_id, producer_epoch)) = self.identity {
            open.builder
                .idempotent(producer_id, producer_epoch, state.sequence_next);
            state.sequence_next = sequence_add(state.sequence_next, open.builder.records_count());
        }
        let bytes = compress_batch(open.builder.finish(), self.config.compression).unwrap_or_else(
            |error| {
                tracing::error!(%error, "cannot compress a batch");
                Bytes::new()
            },
        );
        state.queue.push_back(ClosedBatch {
            number: state.number_next,
            bytes,
            tags: open.tags,
            created: open.created,
            buffer_bytes: open.buffer_bytes,
            attempts: 0,
        });
        state.unreported.push_back(state.number_next);
        state.number_next += 1;
    }

    /// Sends what is ready: for each node with a free in-flight slot, one request holding the
    /// first ready batch of each of its partitions. Never awaits.
    fn drain(self: &Rc<Self>) {
        let now = Instant::now();
        let mut requests: Vec<(i32, Vec<InFlightBatch>)> = Vec::new();
        let mut expired: Vec<InFlightBatch> = Vec::new();
        let mut leader_missing = false;
        {
            let mut topics = self.topics.borrow_mut();
            let mut in_flight = self.in_flight.borrow_mut();
            for (topic, partitions) in topics.iter_mut() {
                for (index, state) in partitions.iter_mut().enumerate() {
                    let partition = index as i32;
                    let leader = self.cluster.leader(topic, partition);
                    if let Some(stale) = state.retry_leader {
                        if leader.is_some_and(|leader| leader != stale) {
                            state.retry_leader = None;
                            state.retry_at = None;
                        } else {
                            leader_missing = true;
                        }
                    }
                    if !self.is_ready(state, now) {
                        continue;
                    }
                    let Some(leader) = leader else {
                        leader_missing = true;
                        self.expire_leaderless(topic, partition, state, now, &mut expired);
                        continue;
                    };
                    let slot = match requests.iter().position(|(node, _)| *node == leader) {
                        Some(slot) => slot,
                        None => {
                            let count = in_flight.entry(leader).or_insert(0);
                            if *count >= self.config.in_flight_per_connection_max {
                                continue;
                            }
                            *count += 1;
                            requests.push((leader, Vec::new()));
                            requests.len() - 1
                        }
                    };
                    if state.queue.is_empty() {
                        self.close_open(state);
                    }
                    let batch = state
                        .queue
                        .pop_front()
                        .expect("a ready partition has a batch");
                    requests[slot].1.push(InFlightBatch {
                        topic: topic.clone(),
                        partition,
                        batch,
                    });
                }
            }
        }
        let error = |batch: &InFlightBatch| ClientError::NoLeader {
            topic: batch.topic.to_string(),
            partition: batch.partition,
        };
        for batch in expired {
            let error = error(&batch);
            self.report(&batch, -1, Some(error));
        }
        for (node, batches) in requests {
            glommio::spawn_local(self.clone().send_request(node, batches)).detach();
        }
        if leader_missing {
            self.refresh_metadata_soon();
        }
    }

    /// Whether the partition has a batch to send now: a closed one, or an open one whose
    /// linger has passed (or a flush is waiting), and no retry backoff pending.
    fn is_ready(&self, state: &PartitionState, now: Instant) -> bool {
        if state.retry_at.is_some_and(|retry_at| retry_at > now) {
            return false;
        }
        if !state.queue.is_empty() {
            return true;
        }
        state.open.as_ref().is_some_and(|open| {
            self.flushing.get() > 0 || now.duration_since(open.created) >= self.config.linger
        })
    }

    /// Fails the partition's batches once it has been without a leader for `request_timeout`.
    fn expire_leaderless(
        &self,
        topic: &Rc<str>,
        partition: i32,
        state: &mut PartitionState,
        now: Instant,
        expired: &mut Vec<InFlightBatch>,
    ) {
        let oldest = state
            .queue
            .front()
            .map(|batch| batch.created)
            .or(state.open.as_ref().map(|open| open.created));
        let Some(oldest) = oldest else { return };
        if now.duration_since(oldest) < self.config.request_timeout {
            return;
        }
        self.close_open(state);
        expired.extend(state.queue.drain(..).map(|batch| InFlightBatch {
            topic: topic.clone(),
            partition,
            batch,
        }));
    }

    /// Sends one produce request to `node` and settles each of its batches.
    async fn send_request(self: Rc<Self>, node: i32, batches: Vec<InFlightBatch>) {
        let result = self.produce(node, &batches).await;
        if let Some(count) = self.in_flight.borrow_mut().get_mut(&node) {
            *count -= 1;
        }
        let mut refresh = false;
        for batch in batches {
            let outcome = match &result {
                Err(error) => Err(error.clone()),
                Ok(None) => Ok(-1),
                Ok(Some(response)) => partition_outcome(response, &batch),
            };
            match outcome {
                Ok(base_offset) => self.report(&batch, base_offset, None),
                Err(error) => {
                    refresh |= error.needs_metadata_refresh();
                    let retriable = error.is_retriable() || self.is_behind_a_retry(&batch, &error);
                    let moved = error.needs_metadata_refresh().then_some(node);
                    self.retry_or_fail(batch, error, retriable, moved);
                }
            }
        }
        if refresh {
            self.refresh_metadata_soon();
        }
        self.drain();
    }

    /// The Produce round trip; `Ok(None)` for acks=0 once the request is written.
    async fn produce(
        &self,
        node: i32,
        batches: &[InFlightBatch],
    ) -> Result<Option<ProduceResponse>, ClientError> {
        if batches.iter().any(|batch| batch.batch.bytes.is_empty()) {
            return Err(ClientError::Compression(
                "batch could not be encoded".into(),
            ));
        }
        let connection = self.cluster.connection(node).await?;
        let request = Request::Produce(produce_request(&self.config, batches));
        if self.config.acks == 0 {
            connection.send_without_response(request).await?;
            return Ok(None);
        }
        let timeout = self.config.request_timeout;
        let response =
            glommio::timer::timeout(timeout, async { Ok(connection.call(request).await) })
                .await
                .map_err(|_| ClientError::Timeout)??;
        match response {
            Response::Produce(response) => Ok(Some(response)),
            _ => Err(ClientError::UnexpectedResponse("Produce")),
        }
    }

    /// Whether an OUT_OF_ORDER_SEQUENCE_NUMBER only means an earlier batch of the partition
    /// failed and is being retried: the broker refuses the later one until the earlier lands
    /// (pipelined requests race a retriable error), so the later one is retried too, in order.
    fn is_behind_a_retry(&self, in_flight: &InFlightBatch, error: &ClientError) -> bool {
        if error.kafka_code() != Some(ErrorCode::OutOfOrderSequenceNumber) {
            return false;
        }
        let topics = self.topics.borrow();
        topics
            .get(&in_flight.topic)
            .and_then(|partitions| partitions.get(in_flight.partition as usize))
            .and_then(|state| state.unreported.front())
            .is_some_and(|&first| first < in_flight.batch.number)
    }

    /// Requeues a batch for another attempt, in order, or reports it failed.
    fn retry_or_fail(
        &self,
        mut in_flight: InFlightBatch,
        error: ClientError,
        retriable: bool,
        moved_from: Option<i32>,
    ) {
        if !retriable || in_flight.batch.attempts >= RETRIES_MAX {
            self.report(&in_flight, -1, Some(error));
            return;
        }
        tracing::debug!(topic = %in_flight.topic, partition = in_flight.partition, %error, "retrying a batch");
        in_flight.batch.attempts += 1;
        let retry_at = Instant::now() + backoff(in_flight.batch.attempts);
        let mut topics = self.topics.borrow_mut();
        let state = topics
            .get_mut(&in_flight.topic)
            .and_then(|partitions| partitions.get_mut(in_flight.partition as usize))
            .expect("an in-flight batch's partition exists");
        let position = state
            .queue
            .iter()
            .position(|queued| queued.number > in_flight.batch.number)
            .unwrap_or(state.queue.len());
        state.queue.insert(position, in_flight.batch);
        state.retry_at = Some(retry_at);
        state.retry_leader = moved_from;
    }

    /// Settles a batch: frees its buffer bytes and calls `on_delivery` (no borrow held).
    fn report(&self, in_flight: &InFlightBatch, base_offset: i64, error: Option<ClientError>) {
        self.buffer.signal(in_flight.batch.buffer_bytes as u64);
        if let Some(state) = self
            .topics
            .borrow_mut()
            .get_mut(&in_flight.topic)
            .and_then(|partitions| partitions.get_mut(in_flight.partition as usize))
        {
            let number = in_flight.batch.number;
            if let Some(position) = state.unreported.iter().position(|&n| n == number) {
                state.unreported.remove(position);
            }
        }
        self.batches_outstanding
            .set(self.batches_outstanding.get() - 1);
        (self.on_delivery)(&DeliveryReport {
            topic: &in_flight.topic,
            partition: in_flight.partition,
            base_offset,
            tags: &in_flight.batch.tags,
            error: error.as_ref(),
        });
        if let Some(error) = error {
            self.error_first.borrow_mut().get_or_insert(error);
        }
    }

    /// Starts a metadata refresh for the producer's topics unless one ran very recently.
    fn refresh_metadata_soon(self: &Rc<Self>) {
        let recent = self
            .refreshed_at
            .get()
            .is_some_and(|at| at.elapsed() < METADATA_REFRESH_INTERVAL_MIN);
        if self.refreshing.get() || recent {
            return;
        }
        self.refreshing.set(true);
        let inner = self.clone();
        glommio::spawn_local(async move {
            let topics: Vec<Rc<str>> = inner.topics.borrow().keys().cloned().collect();
            let names: Vec<&str> = topics.iter().map(|topic| &**topic).collect();
            if let Err(error) = inner.cluster.refresh_metadata(&names).await {
                tracing::debug!(%error, "metadata refresh failed");
            }
            inner.refreshed_at.set(Some(Instant::now()));
            inner.refreshing.set(false);
            inner.drain();
        })
        .detach();
    }
}

fn produce_request(config: &ProducerConfig, batches: &[InFlightBatch]) -> ProduceRequest {
    let mut topic_data: Vec<TopicProduceData> = Vec::new();
    for in_flight in batches {
        let data = PartitionProduceData {
            index: in_flight.partition,
            records: Some(in_flight.batch.bytes.clone()),
        };
        match topic_data
            .iter_mut()
            .find(|topic| *topic.name == *in_flight.topic)
        {
            Some(topic) => topic.partition_data.push(data),
            None => topic_data.push(TopicProduceData {
                name: in_flight.topic.to_string(),
                partition_data: vec![data],
            }),
        }
    }
    ProduceRequest {
        transactional_id: None,
        acks: config.acks,
        timeout_ms: i32::try_from(config.request_timeout.as_millis()).unwrap_or(i32::MAX),
        topic_data,
    }
}

/// The base offset a response gives a batch, or the error it reports for its partition.
fn partition_outcome(
    response: &ProduceResponse,
    in_flight: &InFlightBatch,
) -> Result<i64, ClientError> {
    let partition = response
        .responses
        .iter()
        .filter(|topic| *topic.name == *in_flight.topic)
        .flat_map(|topic| topic.partition_responses.iter())
        .find(|partition| partition.index == in_flight.partition)
        .ok_or(ClientError::UnexpectedResponse(
            "Produce without the partition",
        ))?;
    // A duplicate means an earlier attempt of this very batch was appended: success.
    if partition.error_code == ErrorCode::DuplicateSequenceNumber.code() {
        return Ok(partition.base_offset);
    }
    match ClientError::from_code(partition.error_code, || {
        format!("produce to {}-{}", in_flight.topic, in_flight.partition)
    }) {
        Some(error) => Err(error),
        None => Ok(partition.base_offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafka() {
        // Proves the sequence after i32::MAX is 0, as the broker expects.
        assert_eq!(sequence_add(0, 5), 5);
        assert_eq!(sequence_add(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(sequence_add(i32::MAX, 1), 0);
        assert_eq!(sequence_add(i32::MAX - 2, 5), 2);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        // Proves retries back off exponentially from 100 ms and never wait more than a second.
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(30), RETRY_BACKOFF_MAX);
    }

    #[test]
    fn invalid_configs_are_refused() {
        // Proves nonsense acks and idempotence without acks=all are errors, not surprises.
        let bad_acks = ProducerConfig {
            acks: 2,
            ..ProducerConfig::default()
        };
        assert!(validate_config(&bad_acks).is_err());
        let idempotent_acks_one = ProducerConfig {
            idempotent: true,
            ..ProducerConfig::default()
        };
        assert!(validate_config(&idempotent_acks_one).is_err());
        assert!(validate_config(&ProducerConfig::default()).is_ok());
    }
}
