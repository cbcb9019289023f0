//! Committed offsets in a cluster: kept in the replicated internal topic `__consumer_offsets`,
//! as Kafka keeps them, so they survive the loss of any one broker.
//!
//! A group belongs to one partition of the topic (a hash of its id); the shard holding that
//! partition's leading replica coordinates the group. A commit is a record batch written through
//! the partition's Raft group and answered once a majority holds it. The coordinator's view of
//! the offsets is the committed log read back in order: rebuilt from the log start when its
//! replica becomes leader (the groups answer COORDINATOR_LOAD_IN_PROGRESS meanwhile), then
//! kept current by applying each committed batch as it lands, its own commits included. So a new
//! leader serves every offset its predecessor acknowledged, and concurrent commits are applied
//! in the log's order, never their callers'.
//!
//! Record format: each Kafka record's key is the group id and its value one offset-store
//! record (`offset_store::encode_record`: kind, group, topic, partition, offset, leader epoch,
//! time, metadata, with its own CRC). Records that do not decode (none can be produced: clients
//! may not write to the topic) are skipped with a warning, never applied.
//!
//! Membership: when a group becomes Stable its coordinator also writes its generation and members
//! (Kafka's group metadata record), and an Empty record when its last member leaves. A new
//! leader restores the last one it loads, so after a failover the members carry on at their
//! generation (each with a fresh session) rather than rejoining; once loaded, the coordinator's
//! own membership records are not applied again (its memory is ahead of them).
//!
//! Compaction: a leader whose partition holds many dead records writes a checkpoint (every
//! live offset and Stable membership of the partition, in batches after every earlier record is
//! applied) and then
//! moves the log start to the checkpoint's first batch through the group, so every replica drops
//! the records the checkpoint replaces.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::io::deadline::within;
use crate::log::PartitionLog;
use crate::log::signal::Signal;
use crate::protocol::record_batch::{
    ATTRIBUTE_COMPRESSION_MASK, ATTRIBUTE_CONTROL, BatchIter, RECORD_BATCH_HEADER_BYTES, crc32c,
    header,
};
use crate::protocol::records::{BatchBuilder, Record, RecordIter};

use super::GroupError;
use super::offset_store::{OffsetRecord, decode_whole_record, encode_record};

/// The internal topic's name, Kafka's.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How long a commit waits for its batch to be committed and applied (Kafka's
/// offsets.commit.timeout.ms default); then the client gets COORDINATOR_NOT_AVAILABLE and
/// looks the coordinator up again.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest batch of offset records written at once, so a checkpoint of many groups or a topic
/// deletion touching many offsets stays far below any message size limit.
const BATCH_BYTES_MAX: usize = 512 * 1024;

/// Bytes read from the log per step while applying.
const READ_BYTES_MAX: usize = 1024 * 1024;

/// How long the applier waits after a failed read before it tries again.
const READ_RETRY: Duration = Duration::from_millis(100);

/// The partition of the offsets topic holding `group_id`'s offsets, among `partitions`.
pub fn offsets_partition(group_id: &str, partitions: usize) -> u32 {
    // CRC-32C: fixed across processes, brokers and Rust versions, as routing must be.
    (crc32c(group_id.as_bytes()) as usize % partitions.max(1)) as u32
}

/// A future of the shard's executor.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The replica of an offsets partition that this shard's coordinator writes through: the
/// shard layer implements it over the partition's Raft group.
pub trait OffsetsLog {
    /// The replica's log as it is now.
    fn log(&self) -> Rc<PartitionLog>;
    /// Whether the replica still leads its group.
    fn is_leader(&self) -> bool;
    /// Writes `batch` through the group; resolves to the offset after it once committed.
    fn append(&self, batch: Bytes) -> LocalFuture<'_, Result<i64, GroupError>>;
    /// Moves every replica's log start to `offset` (a batch boundary), through the group.
    fn move_log_start(&self, offset: i64) -> LocalFuture<'_, Result<(), GroupError>>;
}

/// Encodes `records` as uncompressed record batches of at most about [`BATCH_BYTES_MAX`].
pub fn encode_batches(records: &[OffsetRecord], now_ms: i64) -> Vec<Bytes> {
    let mut batches = Vec::new();
    let mut builder = BatchBuilder::new(now_ms);
    let mut value = Vec::with_capacity(128);
    for record in records {
        value.clear();
        encode_record(record, &mut value);
        if builder.records_count() > 0 && builder.size_bytes() + value.len() > BATCH_BYTES_MAX {
            batches.push(std::mem::replace(&mut builder, BatchBuilder::new(now_ms)).finish());
        }
        builder.push(&Record {
            timestamp_delta: 0,
            key: Some(record_group(record).as_bytes()),
            value: Some(&value),
            headers: &[],
        });
    }
    if builder.records_count() > 0 {
        batches.push(builder.finish());
    }
    batches
}

fn record_group(record: &OffsetRecord) -> &str {
    match record {
        OffsetRecord::Commit { group, .. }
        | OffsetRecord::Delete { group, .. }
        | OffsetRecord::Membership { group, .. } => group,
    }
}

/// The offset records of the batches in `bytes` at offsets from `from` on, and the offset after
/// the last whole batch read. Control batches are passed over; a batch or record that does not
/// decode is passed over with a warning.
pub fn decode_batches(bytes: Bytes, from: i64) -> (Vec<OffsetRecord>, Option<i64>) {
    let mut records = Vec::new();
    let mut next = None;
    for batch in BatchIter::new(bytes) {
        let Ok(batch) = batch else {
            tracing::warn!("an offsets batch has an impossible length; the rest is skipped");
            break;
        };
        let Ok(fields) = header(&batch) else {
            break;
        };
        let base_offset = fields.base_offset.get();
        let last_offset = base_offset + i64::from(fields.last_offset_delta.get());
        next = Some(last_offset + 1);
        let attributes = fields.attributes.get();
        if attributes & ATTRIBUTE_CONTROL != 0 || last_offset < from {
            continue;
        }
        if attributes & ATTRIBUTE_COMPRESSION_MASK != 0 {
            tracing::warn!(base_offset, "a compressed offsets batch is skipped");
            continue;
        }
        let region = batch.slice(RECORD_BATCH_HEADER_BYTES..);
        for record in RecordIter::new(region, fields.records_count.get()) {
            let Ok(record) = record else {
                tracing::warn!(base_offset, "an offsets batch holds a malformed record");
                break;
            };
            if base_offset + i64::from(record.offset_delta) < from {
                continue;
            }
            match record.value.as_deref().and_then(decode_whole_record) {
                Some(decoded) => records.push(decoded),
                None => tracing::warn!(base_offset, "an offsets record does not decode; skipped"),
            }
        }
    }
    (records, next)
}

/// One offsets partition this shard's replica leads: its groups are coordinated here.
pub struct HostedPartition {
    /// The partition index.
    pub partition: u32,
    log: Rc<dyn OffsetsLog>,
    /// The next offset to apply.
    applied: Cell<i64>,
    /// Whether everything committed when leadership began has been applied.
    loaded: Cell<bool>,
    /// Set when this replica stops leading: the applier ends and writes are refused.
    stopped: Cell<bool>,
    /// Notified when `applied`, `loaded` or `stopped` changes.
    progress: Rc<Signal>,
    /// Held by writes (shared) and by a checkpoint (alone), so a checkpoint sees every earlier
    /// write applied and no later one in flight.
    writes: glommio::sync::RwLock<()>,
    /// Records and bytes of batches from the log start on, as applied: what a checkpoint
    /// would replace.
    records_in_log: Cell<u64>,
    bytes_in_log: Cell<u64>,
    /// Set while a checkpoint runs, so two never overlap.
    checkpointing: Cell<bool>,
}

impl HostedPartition {
    /// A partition whose offsets are still to be loaded from `log`.
    pub fn new(partition: u32, log: Rc<dyn OffsetsLog>) -> Rc<Self> {
        Rc::new(Self {
            partition,
            log,
            applied: Cell::new(0),
            loaded: Cell::new(false),
            stopped: Cell::new(false),
            progress: Signal::new(),
            writes: glommio::sync::RwLock::new(()),
            records_in_log: Cell::new(0),
            bytes_in_log: Cell::new(0),
            checkpointing: Cell::new(false),
        })
    }

    /// Whether the offsets are loaded (and the replica still leads).
    pub fn is_loaded(&self) -> bool {
        self.loaded.get() && !self.stopped.get()
    }

    /// Whether the replica stopped leading.
    pub fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    /// The topic's segment.bytes.
    pub fn segment_bytes(&self) -> u64 {
        self.log.log().config().topic.segment_bytes
    }

    /// Stops the applier and refuses further writes: the replica no longer leads.
    pub fn stop(&self) {
        self.stopped.set(true);
        self.progress.notify();
    }

    /// Applies the committed log in order with `apply`, from the log start, until stopped; its
    /// flag says whether the records are still being loaded (no request was served yet).
    pub async fn apply_log(self: Rc<Self>, apply: impl Fn(Vec<OffsetRecord>, bool)) {
        while !self.stopped.get() {
            let log = self.log.log();
            let changed = log.changed();
            let from = self.applied.get().max(log.log_start_offset());
            let end = log.high_watermark();
            if from >= end {
                if !self.loaded.get() {
                    self.loaded.set(true);
                    self.progress.notify();
                    tracing::info!(partition = self.partition, end, "group offsets loaded");
                }
                // Bounded, so a leadership lost while idle ends the task soon.
                within(Duration::from_secs(1), changed).await;
                continue;
            }
            let chunks = match log.read(from, READ_BYTES_MAX).await {
                Ok(chunks) => chunks,
                Err(error) => {
                    tracing::warn!(partition = self.partition, %error, "reading group offsets failed; retrying");
                    glommio::timer::sleep(READ_RETRY).await;
                    continue;
                }
            };
            let bytes: Bytes = match chunks.len() {
                0 => continue,
                1 => chunks.into_iter().next().expect("one chunk"),
                _ => chunks.concat().into(),
            };
            let read_bytes = bytes.len() as u64;
            let (records, next) = decode_batches(bytes, from);
            if self.stopped.get() {
                return;
            }
            self.records_in_log
                .set(self.records_in_log.get() + records.len() as u64);
            self.bytes_in_log.set(self.bytes_in_log.get() + read_bytes);
            apply(records, !self.loaded.get());
            match next {
                Some(next) if next > from => self.applied.set(next),
                _ => {
                    tracing::warn!(
                        partition = self.partition,
                        from,
                        "no whole offsets batch could be read; retrying"
                    );
                    glommio::timer::sleep(READ_RETRY).await;
                }
            }
            self.progress.notify();
        }
    }

    /// Whether a checkpoint would pay: the log holds at least `segment_bytes` (the topic's
    /// segment.bytes, as Kafka's cleaner works on whole segments) and at least half its records
    /// are dead (Kafka's min.cleanable.dirty.ratio default), with `live` offsets live.
    pub fn needs_checkpoint(&self, live: u64, segment_bytes: u64) -> bool {
        self.is_loaded()
            && self.bytes_in_log.get() >= segment_bytes
            && self.records_in_log.get() >= live.saturating_mul(2).max(1)
    }

    /// Writes `records` through the group and returns once they are committed and applied.
    pub async fn write(&self, records: &[OffsetRecord], now_ms: i64) -> Result<(), GroupError> {
        if records.is_empty() {
            return Ok(());
        }
        let _shared = self
            .writes
            .read()
            .await
            .map_err(|_| GroupError::NotCoordinator)?;
        self.write_batches(encode_batches(records, now_ms)).await
    }

    async fn write_batches(&self, batches: Vec<Bytes>) -> Result<(), GroupError> {
        let mut end = 0;
        for batch in batches {
            if self.stopped.get() || !self.log.is_leader() {
                return Err(GroupError::NotCoordinator);
            }
            end = within(COMMIT_TIMEOUT, self.log.append(batch))
                .await
                .ok_or_else(|| timed_out("the commit"))??;
        }
        self.wait_applied(end).await
    }

    /// Waits until the applier passed `end`.
    async fn wait_applied(&self, end: i64) -> Result<(), GroupError> {
        within(COMMIT_TIMEOUT, async {
            loop {
                let progressed = self.progress.listen();
                if self.stopped.get() {
                    return Err(GroupError::NotCoordinator);
                }
                if self.applied.get() >= end {
                    return Ok(());
                }
                progressed.await;
            }
        })
        .await
        .ok_or_else(|| timed_out("applying the commit"))?
    }

    /// Writes a checkpoint of `live()` (taken once every earlier write is applied) and moves the
    /// log start to it, if no checkpoint is running; returns whether one was written.
    pub async fn checkpoint(
        &self,
        live: impl FnOnce() -> Vec<OffsetRecord>,
        now_ms: i64,
    ) -> Result<bool, GroupError> {
        if self.checkpointing.replace(true) {
            return Ok(false);
        }
        let result = self.checkpoint_alone(live, now_ms).await;
        self.checkpointing.set(false);
        result.map(|()| true)
    }

    async fn checkpoint_alone(
        &self,
        live: impl FnOnce() -> Vec<OffsetRecord>,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let start = {
            let _alone = self
                .writes
                .write()
                .await
                .map_err(|_| GroupError::NotCoordinator)?;
            // Every write before this one finished (applied or failed); one that failed on a
            // timeout may still commit later, so wait until everything in the log is applied.
            let end = self.log.log().log_end_offset();
            self.wait_applied(end).await?;
            let start = self.log.log().log_end_offset();
            let records = live();
            let count = records.len() as u64;
            let batches = encode_batches(&records, now_ms);
            let bytes: usize = batches.iter().map(Bytes::len).sum();
            self.write_batches(batches).await?;
            self.records_in_log.set(count);
            self.bytes_in_log.set(bytes as u64);
            start
        };
        self.log.move_log_start(start).await
    }
}

fn timed_out(what: &str) -> GroupError {
    GroupError::CoordinatorNotAvailable(format!(
        "{what} timed out after {} s",
        COMMIT_TIMEOUT.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::classic_group::{MemberRecord, Membership};
    use crate::group::offset_store::CommittedOffset;

    fn commit(group: &str, partition: i32, offset: i64) -> OffsetRecord {
        OffsetRecord::Commit {
            group: group.into(),
            topic: "t".into(),
            partition,
            value: CommittedOffset {
                offset,
                leader_epoch: 3,
                metadata: Some("m".into()),
                commit_timestamp_ms: 17,
            },
        }
    }

    #[test]
    fn offset_records_round_trip_through_record_batches() {
        // Proves records survive encoding into batches (split at the size bound, in order) and
        // decoding, that records below `from` are passed over, and that a record whose value is
        // not an offset record is skipped rather than applied.
        let mut records: Vec<OffsetRecord> =
            (0..20_000).map(|i| commit("g", i, i.into())).collect();
        records.push(OffsetRecord::Delete {
            group: "g".into(),
            topic: "t".into(),
            partition: 4,
        });
        records.push(OffsetRecord::Membership {
            group: "g".into(),
            membership: Membership {
                generation_id: 7,
                protocol_type: "consumer".into(),
                protocol_name: "range".into(),
                leader: "m1".into(),
                members: vec![MemberRecord {
                    member_id: "m1".into(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: 6000,
                    rebalance_timeout_ms: 30000,
                    metadata: Bytes::from_static(b"meta"),
                    assignment: Bytes::from_static(b"assigned"),
                }],
            },
        });
        let batches = encode_batches(&records, 1_000);
        assert!(batches.len() > 1, "split into several batches");
        let mut next_offset: i64 = 0;
        let mut stored = Vec::new();
        for batch in batches {
            let mut batch = batch.to_vec();
            batch[..8].copy_from_slice(&next_offset.to_be_bytes());
            let fields = header(&batch).expect("a header");
            next_offset += i64::from(fields.last_offset_delta.get()) + 1;
            stored.extend_from_slice(&batch);
        }
        let (decoded, next) = decode_batches(Bytes::from(stored.clone()), 0);
        assert_eq!(decoded, records);
        assert_eq!(next, Some(next_offset));
        let (tail, _) = decode_batches(Bytes::from(stored), 19_999);
        assert_eq!(tail, records[19_999..].to_vec());
        assert_eq!(tail.len(), 3, "a commit, a deletion, a membership");

        let mut builder = BatchBuilder::new(0);
        builder.push(&Record {
            timestamp_delta: 0,
            key: Some(b"g"),
            value: Some(b"not an offset record"),
            headers: &[],
        });
        let (none, next) = decode_batches(builder.finish(), 0);
        assert!(none.is_empty());
        assert_eq!(next, Some(1));
    }

    #[test]
    fn groups_spread_over_offsets_partitions() {
        // Proves the group-to-partition hash is stable and reaches every partition.
        assert_eq!(
            offsets_partition("orders", 16),
            offsets_partition("orders", 16)
        );
        let used: std::collections::HashSet<u32> = (0..400)
            .map(|i| offsets_partition(&format!("group-{i}"), 16))
            .collect();
        assert_eq!(used.len(), 16);
    }
}
