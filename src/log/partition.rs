//! `PartitionLog`: one partition's log, the public face of `src/log/`.
//!
//! Produce: `append_batch` *sequences* a validated batch synchronously (idempotence check,
//! offsets, broker-set header fields, in-memory tail, cache), so arrival order is offset order;
//! the partition's writer task then writes all pending batches in one aligned O_DIRECT write
//! (group commit). `wait_written` answers acks=1 (the write holding the batch completed),
//! `wait_durable` acks=all (also fdatasync'ed; one fdatasync serves every waiter whose data was
//! written before it started).
//!
//! Guarantees: the high watermark is the end of the last completed write; `read` never returns a
//! batch at or beyond it, so a consumer never sees a record a crash can take back. A failed
//! fdatasync (or a failed write other than ENOSPC) poisons the partition: every later call answers
//! `LogError::Poisoned` until the log is reopened, and the sync is never retried. ENOSPC drops
//! every batch not yet written (the log end goes back to the high watermark; see `writer`) and
//! fails their waiters, so a batch answered with an error never reaches the disk later, and a
//! client's retry is appended once. A log whose recovery finds corruption
//! (damage followed by valid data) opens offline: untouched on disk, every call answering
//! `LogError::Offline` (refusals logged at a rate-limited WARN); a read that finds a stored batch
//! corrupt takes the log offline the same way. Each roll snapshots the idempotent-producer state
//! (`producer_snapshot`) for recovery after a crash. Segments roll at `segment.bytes` or
//! `segment.ms`; `enforce_retention` (called periodically by the shard) deletes whole sealed
//! segments.
//!
//! Callers must: validate each batch (`record_batch::validate`) before `append_batch`; use a
//! `PartitionLog` only on the executor that opened it (`!Send`); `close` it for a clean shutdown
//! (dropping it is an unclean one: the next open scans and recovers).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use bytes::Bytes;

use crate::config::{TimestampType, TopicConfig};
use crate::io::DirectFile;
use crate::protocol::record_batch::{self, BatchError, BatchIter, RECORD_BATCH_HEADER_BYTES};

use super::appender::{Appender, PREALLOCATE_STEP_BYTES_MIN};
use super::cache::{CacheKey, CachedBatch, ShardCache};
use super::error::LogError;
use super::leader_epochs::{self, LeaderEpochs};
use super::producer_snapshot;
use super::producer_state::{ProducerBatch, ProducerState, SequenceCheck};
use super::recovery;
use super::refusal_warnings::RefusalWarnings;
use super::retention::{self, SegmentInfo};
use super::segment::{self, Segment, SegmentMark};
use super::shutdown_marker::{SHUTDOWN_MARKER_FILE_NAME, ShutdownMarker};
use super::signal::{Listener, Signal};
use super::stored_batch::StoredBatch;
use super::tail_generation::TailGeneration;
use super::{reader, writer};

/// Most bytes of batches one write takes (more stay pending for the next write; a single batch
/// bigger than this is written alone). Bounds the aligned buffer one partition holds while a write
/// is in flight, and how far a torn write can reach (recovery uses it).
pub const WRITE_BYTES_MAX: usize = 1024 * 1024;

/// A partition log's configuration.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The topic's configuration (segment.bytes, max.message.bytes, timestamp type, ...).
    pub topic: TopicConfig,
}

/// The answer to one `append_batch`; `wait_written` / `wait_durable` take it.
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Offset of the batch's last record.
    pub last_offset: i64,
    /// The broker's append time for LogAppendTime topics, else -1.
    pub log_append_time_ms: i64,
    /// The log start offset when the batch was appended.
    pub log_start_offset: i64,
    /// True when the batch was a retry of one already appended: nothing was appended and the
    /// offsets are the original ones.
    pub duplicate: bool,
    /// The generation the batch was sequenced in: tells its waiter whether it was dropped.
    generation: Rc<TailGeneration>,
}

impl AppendOutcome {
    /// One past the batch's last offset.
    pub fn end_offset(&self) -> i64 {
        self.last_offset + 1
    }
}

/// What `check_idempotence` found.
#[derive(Debug)]
pub enum IdempotenceCheck {
    /// The batch has no producer id: nothing to check.
    NoProducer,
    /// An idempotent producer's batch.
    Producer {
        /// The producer id.
        producer_id: i64,
        /// Its epoch.
        epoch: i16,
        /// The batch's first sequence.
        first_sequence: i32,
        /// The batch's last sequence.
        last_sequence: i32,
        /// Against the log: next (`None`), a duplicate at these offsets, or refused.
        in_log: Result<Option<(i64, i64)>, LogError>,
    },
}

/// Counters of one partition log's disk work (for metrics, and tests of grouping).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Completed O_DIRECT writes (each may carry many batches).
    pub writes: u64,
    /// Bytes of batches those writes carried (without the rewritten tail block and padding).
    pub batch_bytes_written: u64,
    /// Completed fdatasyncs of segment files for acks=all (rolls and close not counted).
    pub fdatasyncs: u64,
}

/// A batch sequenced but not yet handed to a write.
#[derive(Debug)]
pub(super) struct PendingBatch {
    pub(super) segment: Rc<Segment>,
    /// `segment`'s state before this batch: where it goes back to if the batch is dropped.
    pub(super) mark: SegmentMark,
    pub(super) batch: StoredBatch,
    pub(super) end_offset: i64,
    /// The batch's max timestamp: an idempotent producer's age in the written state.
    pub(super) max_timestamp_ms: i64,
    /// The idempotent producer's batch, recorded in the written state once it is written.
    pub(super) identity: Option<ProducerBatch>,
}

/// One partition's log.
#[derive(Debug)]
pub struct PartitionLog {
    pub(super) dir: PathBuf,
    /// Replaced by `set_config` (topic config changes); read in short borrows, never across an
    /// await.
    pub(super) config: RefCell<LogConfig>,
    pub(super) cache: Rc<ShardCache>,
    pub(super) cache_key: CacheKey,
    /// In base-offset order; the last one receives new batches.
    pub(super) segments: RefCell<Vec<Rc<Segment>>>,
    pub(super) producers: RefCell<ProducerState>,
    /// The producer state of the written batches only: what `producers` goes back to when the
    /// unwritten ones are dropped.
    pub(super) producers_written: RefCell<ProducerState>,
    /// The generation new batches are sequenced in (replaced when the unwritten tail is dropped).
    pub(super) tail_generation: RefCell<Rc<TailGeneration>>,
    pub(super) pending: RefCell<VecDeque<PendingBatch>>,
    /// Bytes in `pending`.
    pub(super) pending_bytes: Cell<usize>,
    pub(super) log_start_offset: Cell<i64>,
    pub(super) log_end_offset: Cell<i64>,
    /// Stamped in the `partition_leader_epoch` of every batch `append_batch` sequences.
    pub(super) leader_epoch: Cell<i32>,
    /// Each epoch's first offset (OffsetForLeaderEpoch). Read and changed in short borrows.
    pub(super) epochs: RefCell<LeaderEpochs>,
    /// Bumped at each change of `epochs`.
    pub(super) epochs_generation: Cell<u64>,
    /// The generation of `epochs` last written to its file.
    pub(super) epochs_persisted: Cell<u64>,
    /// Whether a task is writing the epochs file (one at a time, so writes land in order).
    pub(super) epochs_writing: Cell<bool>,
    /// Whether the epochs file exists. Without it the log is all epoch 0 from its start, so a
    /// cache saying just that is not written (RF=1 partitions never write one).
    pub(super) epochs_file: Cell<bool>,
    pub(super) high_watermark: Cell<i64>,
    /// For a replica of a replicated partition, the Raft commit point: readers see nothing at
    /// or beyond it, so nothing a consumer read is taken back by a failover. `i64::MAX` for an
    /// unreplicated partition.
    pub(super) commit_limit: Cell<i64>,
    pub(super) durable_offset: Cell<i64>,
    /// Files written since the last fdatasync started.
    pub(super) unsynced_files: RefCell<Vec<Rc<DirectFile>>>,
    pub(super) sync_in_flight: Cell<bool>,
    pub(super) poison: RefCell<Option<String>>,
    /// When the active segment got its first append in this run (for `segment.ms`).
    pub(super) active_since_ms: Cell<Option<i64>>,
    /// Set when recovery, or a read, found corruption: why the log is offline.
    pub(super) offline: RefCell<Option<String>>,
    /// Rate-limits the WARN each refused request of an offline log logs.
    pub(super) refusals: RefusalWarnings,
    pub(super) closing: Cell<bool>,
    pub(super) writer_done: Cell<bool>,
    /// Wakes the writer: batches are pending, or the log is closing.
    pub(super) work: Rc<Signal>,
    /// Notified when the high watermark moves or a write fails.
    pub(super) watermark: Rc<Signal>,
    /// Notified when an fdatasync finishes (or fails), and when the writer exits.
    pub(super) durable: Rc<Signal>,
    pub(super) stats: Cell<LogStats>,
    pub(super) self_ref: Weak<PartitionLog>,
}

impl PartitionLog {
    /// Opens (creating if missing) the partition log in `dir`, recovering it, and starts its
    /// writer task on the current executor.
    ///
    /// A log whose recovery finds corruption (`LogError::Corrupt`: damage followed by valid data,
    /// bit rot rather than a torn write) opens *offline*: nothing on disk is changed, every call
    /// answers `LogError::Offline` with the file and offset, and close leaves no clean-shutdown
    /// marker, so the next start checks it again. Other errors fail the open.
    pub async fn open(
        dir: PathBuf,
        config: TopicConfig,
        cache: Rc<ShardCache>,
    ) -> Result<Rc<PartitionLog>, LogError> {
        match Self::open_recovered(dir.clone(), config.clone(), cache.clone()).await {
            Err(error @ LogError::Corrupt { .. }) => {
                tracing::error!(
                    dir = %dir.display(),
                    %error,
                    "partition offline: its log is corrupt (restart with \
                     --unsafe-truncate-corrupt-logs to cut it at the corruption)"
                );
                Ok(Self::offline(dir, config, cache, error.to_string()))
            }
            other => other,
        }
    }

    /// Ok while the log can serve; else the error every call answers (offline or poisoned).
    pub fn health(&self) -> Result<(), LogError> {
        self.failure().map_or(Ok(()), Err)
    }

    /// Whether the log is offline (corrupt at open; see `open`).
    pub fn is_offline(&self) -> bool {
        self.offline.borrow().is_some()
    }

    /// An offline log: no files open, no writer task, every call fails with `reason`.
    fn offline(
        dir: PathBuf,
        config: TopicConfig,
        cache: Rc<ShardCache>,
        reason: String,
    ) -> Rc<PartitionLog> {
        let cache_key = cache.register();
        let segment = Segment::new(&dir, 0);
        Rc::new_cyclic(|self_ref| PartitionLog {
            segments: RefCell::new(vec![segment]),
            dir,
            config: RefCell::new(LogConfig { topic: config }),
            cache,
            cache_key,
            producers: RefCell::new(ProducerState::default()),
            producers_written: RefCell::new(ProducerState::default()),
            tail_generation: RefCell::new(Rc::default()),
            pending: RefCell::new(VecDeque::new()),
            pending_bytes: Cell::new(0),
            log_start_offset: Cell::new(0),
            log_end_offset: Cell::new(0),
            leader_epoch: Cell::new(0),
            epochs: RefCell::new(LeaderEpochs::default()),
            epochs_generation: Cell::new(0),
            epochs_persisted: Cell::new(0),
            epochs_writing: Cell::new(false),
            epochs_file: Cell::new(false),
            high_watermark: Cell::new(0),
            commit_limit: Cell::new(i64::MAX),
            durable_offset: Cell::new(0),
            unsynced_files: RefCell::new(Vec::new()),
            sync_in_flight: Cell::new(false),
            poison: RefCell::new(None),
            active_since_ms: Cell::new(None),
            offline: RefCell::new(Some(reason)),
            refusals: RefusalWarnings::default(),
            closing: Cell::new(false),
            writer_done: Cell::new(true),
            work: Signal::new(),
            watermark: Signal::new(),
            durable: Signal::new(),
            stats: Cell::new(LogStats::default()),
            self_ref: self_ref.clone(),
        })
    }

    async fn open_recovered(
        dir: PathBuf,
        config: TopicConfig,
        cache: Rc<ShardCache>,
    ) -> Result<Rc<PartitionLog>, LogError> {
        let config = LogConfig { topic: config };
        let torn_reach_bytes = (WRITE_BYTES_MAX as u64).max(config.topic.max_message_bytes);
        let recovered = recovery::recover(&dir, torn_reach_bytes).await?;
        let active = recovered
            .segments
            .last()
            .expect("recovery yields a segment")
            .clone();
        let file = active.file().expect("recovery opens the active file");
        let appender = Appender::open(
            file,
            active.written_bytes(),
            config.topic.segment_bytes,
            PREALLOCATE_STEP_BYTES_MIN,
        )
        .await?;
        let log_end_offset = active.next_offset();
        let log_dir = dir.clone();
        let deleted_up_to = glommio::executor()
            .spawn_blocking(move || retention::read_log_start_offset(&log_dir))
            .await;
        let log_start_offset = deleted_up_to
            .unwrap_or(i64::MIN)
            .clamp(recovered.segments[0].base_offset(), log_end_offset);
        let cache_key = cache.register();
        let log = Rc::new_cyclic(|self_ref| PartitionLog {
            dir,
            config: RefCell::new(config),
            cache,
            cache_key,
            segments: RefCell::new(recovered.segments),
            producers_written: RefCell::new(recovered.producers.clone()),
            producers: RefCell::new(recovered.producers),
            tail_generation: RefCell::new(Rc::default()),
            pending: RefCell::new(VecDeque::new()),
            pending_bytes: Cell::new(0),
            log_start_offset: Cell::new(log_start_offset),
            log_end_offset: Cell::new(log_end_offset),
            leader_epoch: Cell::new(0),
            epochs: RefCell::new(LeaderEpochs::default()),
            epochs_generation: Cell::new(0),
            epochs_persisted: Cell::new(0),
            epochs_writing: Cell::new(false),
            epochs_file: Cell::new(false),
            high_watermark: Cell::new(log_end_offset),
            commit_limit: Cell::new(i64::MAX),
            // Recovered data may not be synced yet; the first acks=all append syncs it too.
            durable_offset: Cell::new(log_start_offset),
            unsynced_files: RefCell::new(vec![appender.file().clone()]),
            sync_in_flight: Cell::new(false),
            poison: RefCell::new(None),
            active_since_ms: Cell::new(None),
            offline: RefCell::new(None),
            refusals: RefusalWarnings::default(),
            closing: Cell::new(false),
            writer_done: Cell::new(false),
            work: Signal::new(),
            watermark: Signal::new(),
            durable: Signal::new(),
            stats: Cell::new(LogStats::default()),
            self_ref: self_ref.clone(),
        });
        glommio::spawn_local(writer::run(
            Rc::downgrade(&log),
            log.work.clone(),
            appender,
            active,
        ))
        .detach();
        log.load_epochs().await?;
        Ok(log)
    }

    /// Loads the leader-epoch cache at open, trimmed to the log. A log without the file was
    /// written before epochs were kept (all epoch 0); a damaged file is rebuilt from the
    /// batches' own epochs. An empty cache starts epoch 0 at the log end.
    async fn load_epochs(&self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        let log_start = self.log_start_offset.get();
        let log_end = self.log_end_offset.get();
        let read = glommio::executor()
            .spawn_blocking(move || leader_epochs::read(&dir))
            .await;
        let (mut epochs, mut changed) = match read {
            Ok(Some(epochs)) => {
                self.epochs_file.set(true);
                (epochs, false)
            }
            Ok(None) => (LeaderEpochs::epoch_zero_from(log_start), true),
            Err(error) => {
                tracing::warn!(
                    dir = %self.dir.display(),
                    %error,
                    "rebuilding the leader-epoch cache from the log's batches"
                );
                (self.scan_epochs().await?, true)
            }
        };
        changed |= epochs.truncate_from_end(log_end);
        changed |= epochs.truncate_from_start(log_start);
        if epochs.latest().is_none() {
            epochs.assign(0, log_end);
            changed = true;
        }
        self.leader_epoch
            .set(epochs.latest().map_or(0, |latest| latest.epoch));
        *self.epochs.borrow_mut() = epochs;
        if changed {
            self.epochs_changed();
        }
        self.epochs_on_disk().await
    }

    /// The leader-epoch cache as the stored batches say it: each epoch's first batch.
    async fn scan_epochs(&self) -> Result<LeaderEpochs, LogError> {
        let mut epochs = LeaderEpochs::default();
        for (base_offset, epoch) in self.batch_epochs(self.log_start_offset.get()).await? {
            epochs.assign(epoch, base_offset);
        }
        Ok(epochs)
    }

    /// The base offset and leader epoch of every stored batch from the one holding `from` to
    /// the high watermark, in order. Reads the batches whole: for scans at open, not a hot path.
    pub async fn batch_epochs(&self, from: i64) -> Result<Vec<(i64, i32)>, LogError> {
        let mut batches = Vec::new();
        let mut offset = from;
        while offset < self.high_watermark.get() {
            // From the stored batch holding `from`, though DeleteRecords put the log start
            // inside it: a replicated log's store scans its entries from there.
            let chunks = self
                .read_below(
                    offset,
                    recovery::SCAN_READ_BYTES,
                    self.high_watermark(),
                    true,
                )
                .await?;
            let before = offset;
            for batch in BatchIter::new(Bytes::from(chunks.concat())) {
                let batch = batch?;
                let header = record_batch::header(&batch)?;
                let base_offset = header.base_offset.get();
                let next_offset = base_offset + i64::from(header.last_offset_delta.get()) + 1;
                if next_offset <= offset {
                    continue;
                }
                batches.push((base_offset, header.partition_leader_epoch.get()));
                offset = next_offset;
            }
            if offset <= before {
                return Err(LogError::Io(format!(
                    "{}: no batch found at offset {offset}",
                    self.dir.display()
                )));
            }
        }
        Ok(batches)
    }

    /// Moves the leader-epoch cache's start to the log start (after retention or
    /// DeleteRecords).
    fn trim_epochs_to_log_start(&self) {
        let log_start = self.log_start_offset.get();
        if self.epochs.borrow_mut().truncate_from_start(log_start) {
            self.epochs_changed();
        }
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's current configuration.
    pub fn config(&self) -> LogConfig {
        self.config.borrow().clone()
    }

    /// Applies a changed topic configuration (IncrementalAlterConfigs). It takes effect from the
    /// next append (max.message.bytes, timestamp type), roll (segment.bytes) or retention pass.
    pub fn set_config(&self, topic: TopicConfig) {
        self.config.borrow_mut().topic = topic;
    }

    /// The leader epoch new batches are stamped with: the latest epoch this log holds.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.get()
    }

    /// Starts leader epoch `epoch` at the log end: records it in the leader-epoch cache, on disk
    /// before this returns, and stamps it on every batch `append_batch` sequences from now on.
    /// A replica's leader calls it when it takes over (its Raft term, Kafka's
    /// partitionLeaderEpoch, which KIP-320 clients compare to detect truncation); a replica
    /// calls it before the first batch of a newer epoch (`append_replica` refuses that batch
    /// until then). So no batch of an epoch is ever on disk before the cache knows the epoch.
    /// RF=1 partitions stay at epoch 0.
    pub async fn begin_epoch(&self, epoch: i32) -> Result<(), LogError> {
        self.check_usable()?;
        let latest = self.epochs.borrow().latest();
        if let Some(latest) = latest
            && epoch < latest.epoch
        {
            return Err(LogError::StaleLeaderEpoch {
                epoch,
                latest: latest.epoch,
            });
        }
        self.leader_epoch.set(epoch);
        let changed = self
            .epochs
            .borrow_mut()
            .assign(epoch, self.log_end_offset.get());
        if changed {
            self.epochs_changed();
        }
        self.epochs_on_disk().await
    }

    /// Waits until the leader-epoch cache's current state is in its file.
    async fn epochs_on_disk(&self) -> Result<(), LogError> {
        let generation = self.epochs_generation.get();
        loop {
            let listener = self.durable.listen();
            if let Some(error) = self.failure() {
                return Err(error);
            }
            if self.epochs_persisted.get() >= generation {
                return Ok(());
            }
            listener.await;
        }
    }

    /// OffsetForLeaderEpoch: the largest epoch at or below `requested` this log has, and the
    /// offset where it ended here (the log end for the current one); (-1, -1) when unknown.
    pub fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        self.epochs
            .borrow()
            .end_offset_for(requested, self.log_end_offset.get())
    }

    /// Notes a change of the leader-epoch cache and has it written to its file, by one task at
    /// a time, always the newest state last.
    fn epochs_changed(&self) {
        self.epochs_generation.set(self.epochs_generation.get() + 1);
        if self.epochs_writing.get() {
            return;
        }
        let all_epoch_zero = self
            .epochs
            .borrow()
            .entries()
            .iter()
            .all(|entry| entry.epoch == 0);
        if !self.epochs_file.get() && all_epoch_zero {
            // What a missing file already says.
            self.epochs_persisted.set(self.epochs_generation.get());
            return;
        }
        let Some(log) = self.self_ref.upgrade() else {
            return;
        };
        self.epochs_writing.set(true);
        glommio::spawn_local(async move {
            while log.epochs_persisted.get() < log.epochs_generation.get() {
                let generation = log.epochs_generation.get();
                let epochs = log.epochs.borrow().clone();
                let dir = log.dir.clone();
                let written = glommio::executor()
                    .spawn_blocking(move || leader_epochs::write(&dir, &epochs))
                    .await;
                if let Err(error) = written {
                    log.poison_with(format!("writing the leader-epoch cache failed: {error}"));
                    break;
                }
                log.epochs_file.set(true);
                log.epochs_persisted.set(generation);
            }
            log.epochs_writing.set(false);
            log.durable.notify();
        })
        .detach();
    }

    /// Sequences one validated batch: checks idempotence, assigns offsets
    /// `[log_end, log_end + count)`, sets `base_offset` and `partition_leader_epoch` and, for
    /// LogAppendTime topics, `max_timestamp = now_ms` with a new CRC; adds it to the in-memory tail
    /// and the cache, and wakes the writer. Synchronous, so arrival order is offset order.
    pub fn append_batch(&self, batch: Bytes, now_ms: i64) -> Result<AppendOutcome, LogError> {
        self.check_usable()?;
        let topic = self.config().topic;
        let max_message_bytes = topic.max_message_bytes;
        if batch.len() as u64 > max_message_bytes {
            return Err(LogError::MessageTooLarge {
                batch_bytes: batch.len(),
                max_message_bytes,
            });
        }
        let header = record_batch::header(&batch)?;
        let last_offset_delta = header.last_offset_delta.get();
        if last_offset_delta < 0 {
            // validate() refuses this; checked again because an offset range running backwards
            // would corrupt the log, and it comes from a client.
            return Err(BatchError::InvalidRecordsCount {
                records_count: header.records_count.get(),
                last_offset_delta,
            }
            .into());
        }
        let log_append_time = topic.message_timestamp_type == TimestampType::LogAppendTime;
        let log_append_time_ms = if log_append_time { now_ms } else { -1 };
        let identity = producer_identity(header);
        if let Some(identity) = &identity {
            let check = self.producers.borrow().check(identity)?;
            if let SequenceCheck::Duplicate {
                base_offset,
                last_offset,
            } = check
            {
                // The original is written, or pending in the current generation (a drop rolls
                // the producer state back, so a dropped batch is never a duplicate).
                return Ok(AppendOutcome {
                    base_offset,
                    last_offset,
                    log_append_time_ms,
                    log_start_offset: self.log_start_offset.get(),
                    duplicate: true,
                    generation: self.tail_generation.borrow().clone(),
                });
            }
        }
        let max_timestamp_ms = if log_append_time {
            now_ms
        } else {
            header.max_timestamp.get()
        };
        let base_offset = self.log_end_offset.get();
        let last_offset = base_offset + i64::from(last_offset_delta);
        assert!(last_offset >= base_offset, "offsets must increase");
        let stored = StoredBatch::patch(
            &batch,
            base_offset,
            self.leader_epoch.get(),
            log_append_time.then_some(now_ms),
        )?;
        self.enqueue(stored, last_offset, max_timestamp_ms, now_ms, identity);
        if let Some(identity) = &identity {
            self.producers
                .borrow_mut()
                .record(identity, base_offset, max_timestamp_ms);
        }
        Ok(AppendOutcome {
            base_offset,
            last_offset,
            log_append_time_ms,
            log_start_offset: self.log_start_offset.get(),
            duplicate: false,
            generation: self.tail_generation.borrow().clone(),
        })
    }

    /// Decides idempotence for a replicated partition's leader before it proposes `batch`: no
    /// producer, or the producer's identity and, against this log's producer state, whether the
    /// batch is next (`Ok(None)`), a duplicate of the batch at these offsets, or refused.
    pub fn check_idempotence(&self, batch: &[u8]) -> Result<IdempotenceCheck, LogError> {
        let header = record_batch::header(batch)?;
        let Some(identity) = producer_identity(header) else {
            return Ok(IdempotenceCheck::NoProducer);
        };
        let in_log = match self.producers.borrow().check(&identity) {
            Ok(SequenceCheck::Append) => Ok(None),
            Ok(SequenceCheck::Duplicate {
                base_offset,
                last_offset,
            }) => Ok(Some((base_offset, last_offset))),
            Err(error) => Err(error),
        };
        Ok(IdempotenceCheck::Producer {
            producer_id: identity.producer_id,
            epoch: identity.producer_epoch,
            first_sequence: identity.base_sequence,
            last_sequence: identity.last_sequence(),
            in_log,
        })
    }

    /// Whether this log holds sequence `sequence` of idempotent producer `producer_id` in `epoch`,
    /// or a later one of it.
    pub fn producer_has_passed(&self, producer_id: i64, epoch: i16, sequence: i32) -> bool {
        self.producers
            .borrow()
            .has_passed(producer_id, epoch, sequence)
    }

    /// Appends a batch exactly as the partition's leader stored it (a replica's append): its base
    /// offset must be this log's end, and its bytes, leader epoch and timestamps are kept as they
    /// are, so every replica holds the same bytes at the same offsets. The leader already decided
    /// idempotence, so the batch is never refused as a duplicate; it is recorded in the producer
    /// state, which a replica that becomes leader needs. Checks the CRC: the bytes crossed the
    /// network. The batch's leader epoch must be this log's latest: an older one is refused, and
    /// a newer one must be started first with `begin_epoch`.
    pub fn append_replica(&self, batch: Bytes, now_ms: i64) -> Result<AppendOutcome, LogError> {
        self.check_usable()?;
        let header = record_batch::validate(&batch)?;
        let base_offset = header.base_offset.get();
        let log_end = self.log_end_offset.get();
        if base_offset != log_end {
            return Err(LogError::NotAtLogEnd {
                base_offset,
                log_end,
            });
        }
        let epoch = header.partition_leader_epoch.get();
        let latest = self
            .epochs
            .borrow()
            .latest()
            .map_or(-1, |latest| latest.epoch);
        if epoch < latest {
            return Err(LogError::StaleLeaderEpoch { epoch, latest });
        }
        if epoch > latest {
            return Err(LogError::EpochNotBegun { epoch, latest });
        }
        let stored = StoredBatch {
            head: batch.slice(..RECORD_BATCH_HEADER_BYTES),
            body: batch.slice(RECORD_BATCH_HEADER_BYTES..),
        };
        self.enqueue_entry(stored, now_ms)
    }

    /// Appends a batch as a replicated partition's leader stores a Raft entry: at the log end,
    /// stamped with the current leader epoch, with no idempotence check (the produce path
    /// decided it before the entry was proposed) and its other bytes as given. Copies only the
    /// header. `batch` must be a whole validated batch.
    pub fn append_entry(&self, batch: &Bytes, now_ms: i64) -> Result<AppendOutcome, LogError> {
        self.check_usable()?;
        let stored = StoredBatch::patch(
            batch,
            self.log_end_offset.get(),
            self.leader_epoch.get(),
            None,
        )?;
        self.enqueue_entry(stored, now_ms)
    }

    /// Places a batch whose header already holds its base offset (the log end) and epoch, and
    /// records its producer (a replicated entry's append).
    fn enqueue_entry(&self, stored: StoredBatch, now_ms: i64) -> Result<AppendOutcome, LogError> {
        let header = record_batch::header(&stored.head)?;
        let last_offset_delta = header.last_offset_delta.get();
        if last_offset_delta < 0 {
            return Err(BatchError::InvalidRecordsCount {
                records_count: header.records_count.get(),
                last_offset_delta,
            }
            .into());
        }
        let base_offset = header.base_offset.get();
        let last_offset = base_offset + i64::from(last_offset_delta);
        let max_timestamp_ms = header.max_timestamp.get();
        let identity = producer_identity(header);
        self.enqueue(stored, last_offset, max_timestamp_ms, now_ms, identity);
        if let Some(identity) = &identity {
            self.producers
                .borrow_mut()
                .record(identity, base_offset, max_timestamp_ms);
        }
        Ok(AppendOutcome {
            base_offset,
            last_offset,
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset.get(),
            duplicate: false,
            generation: self.tail_generation.borrow().clone(),
        })
    }

    /// Places a patched batch at the log end: segment (rolling if needed), cache, pending
    /// writes; wakes the writer.
    fn enqueue(
        &self,
        batch: StoredBatch,
        last_offset: i64,
        max_timestamp_ms: i64,
        now_ms: i64,
        identity: Option<ProducerBatch>,
    ) {
        let base_offset = self.log_end_offset.get();
        let len_bytes = batch.len() as u64;
        let segment = self.segment_for_append(base_offset, last_offset, len_bytes, now_ms);
        let mark = segment.mark();
        segment.on_sequenced(base_offset, last_offset, max_timestamp_ms, len_bytes);
        self.cache.insert(
            self.cache_key,
            CachedBatch {
                base_offset,
                last_offset,
                batch: batch.clone(),
            },
        );
        self.pending_bytes
            .set(self.pending_bytes.get() + batch.len());
        self.pending.borrow_mut().push_back(PendingBatch {
            segment,
            mark,
            batch,
            end_offset: last_offset + 1,
            max_timestamp_ms,
            identity,
        });
        self.log_end_offset.set(last_offset + 1);
        self.work.notify();
    }

    /// The segment a batch goes to: the active one, or a new one when the batch would take the
    /// active one past `segment.bytes` (a non-empty segment only, so any batch fits somewhere),
    /// when the active one's first append in this run is `segment.ms` old, or when the batch's
    /// offsets go past what the index's u32 relative offsets hold.
    fn segment_for_append(
        &self,
        base_offset: i64,
        last_offset: i64,
        len_bytes: u64,
        now_ms: i64,
    ) -> Rc<Segment> {
        let mut segments = self.segments.borrow_mut();
        let active = segments.last().expect("a log has a segment").clone();
        let (segment_bytes, segment_ms) = {
            let config = self.config.borrow();
            (config.topic.segment_bytes, config.topic.segment_ms)
        };
        let size_max_bytes = segment_bytes.min(u64::from(u32::MAX));
        let too_big = active.sequenced_bytes() + len_bytes > size_max_bytes;
        let too_many = last_offset - active.base_offset() > i64::from(u32::MAX);
        // A recovered segment's age counts from its first append after the open, as Kafka counts
        // from the segment object's creation when batches carry no usable time.
        let since_ms = self.active_since_ms.get().unwrap_or(now_ms);
        self.active_since_ms.set(Some(since_ms));
        let too_old = now_ms.saturating_sub(since_ms) >= segment_ms;
        if active.sequenced_bytes() == 0 || !(too_big || too_many || too_old) {
            return active;
        }
        self.active_since_ms.set(Some(now_ms));
        let rolled = Segment::new(&self.dir, base_offset);
        tracing::debug!(dir = %self.dir.display(), base_offset, "rolling segment");
        // The state before this batch is the state at the new segment's start. One copy per
        // roll, so recovery after a crash replays only from here.
        let producers = self.producers.borrow().clone();
        producer_snapshot::spawn_write(
            self.dir.clone(),
            base_offset,
            producers,
            active.base_offset(),
        );
        segments.push(rolled.clone());
        rolled
    }

    /// Waits until the write holding the appended batch has completed (acks=1). Fails if the
    /// batch was dropped unwritten (ENOSPC; it never reaches the disk, so a retry appends it
    /// once).
    pub async fn wait_written(&self, outcome: &AppendOutcome) -> Result<(), LogError> {
        let end_offset = outcome.end_offset();
        loop {
            let listener = self.watermark.listen();
            if let Some(error) = self.failure() {
                return Err(error);
            }
            // Before the high watermark: after a drop, later batches reuse the offsets.
            if let Some(error) = outcome.generation.dropped(end_offset) {
                return Err(error);
            }
            if self.high_watermark.get() >= end_offset {
                return Ok(());
            }
            if self.writer_done.get() {
                return Err(LogError::Closed);
            }
            listener.await;
        }
    }

    /// Waits until the appended batch is written and fdatasync'ed (acks=all). Waiters share
    /// fdatasyncs: one sync covers everything written before it started.
    pub async fn wait_durable(&self, outcome: &AppendOutcome) -> Result<(), LogError> {
        self.wait_written(outcome).await?;
        let end_offset = outcome.end_offset();
        loop {
            let listener = self.durable.listen();
            if let Some(error) = self.failure() {
                return Err(error);
            }
            if self.durable_offset.get() >= end_offset {
                return Ok(());
            }
            if !self.sync_in_flight.get() {
                self.start_sync();
            }
            listener.await;
        }
    }

    /// Waits until every offset below `end_offset` is written and fdatasync'ed (sharing
    /// fdatasyncs with other waiters).
    pub async fn sync_to(&self, end_offset: i64) -> Result<(), LogError> {
        loop {
            let written = self.watermark.listen();
            let durable = self.durable.listen();
            if let Some(error) = self.failure() {
                return Err(error);
            }
            if self.durable_offset.get() >= end_offset {
                return Ok(());
            }
            if self.high_watermark.get() < end_offset {
                if self.writer_done.get() {
                    return Err(LogError::Closed);
                }
                written.await;
                continue;
            }
            if !self.sync_in_flight.get() {
                self.start_sync();
            }
            durable.await;
        }
    }

    /// Starts one fdatasync of every file written since the last one, in its own task (so a
    /// waiter that goes away cannot leave it half done). When it completes, everything written
    /// before it started is durable.
    fn start_sync(&self) {
        let Some(log) = self.self_ref.upgrade() else {
            return;
        };
        self.sync_in_flight.set(true);
        let covered_offset = self.high_watermark.get();
        let files = std::mem::take(&mut *self.unsynced_files.borrow_mut());
        glommio::spawn_local(async move {
            for file in &files {
                if let Err(error) = file.fdatasync().await {
                    log.poison_with(format!(
                        "fdatasync of {} failed: {error}",
                        file.path().display()
                    ));
                    break;
                }
                let mut stats = log.stats.get();
                stats.fdatasyncs += 1;
                log.stats.set(stats);
            }
            if log.poison.borrow().is_none() {
                log.durable_offset
                    .set(log.durable_offset.get().max(covered_offset));
            }
            log.sync_in_flight.set(false);
            log.durable.notify();
        })
        .detach();
    }

    /// Poisons the partition: every later call fails with `reason`.
    pub(super) fn poison_with(&self, reason: String) {
        tracing::error!(dir = %self.dir.display(), %reason, "partition poisoned");
        let mut poison = self.poison.borrow_mut();
        if poison.is_none() {
            *poison = Some(reason);
        }
        drop(poison);
        self.watermark.notify();
        self.durable.notify();
        self.work.notify();
    }

    /// What every call answers once the log is offline or poisoned.
    fn failure(&self) -> Option<LogError> {
        if let Some(reason) = self.offline.borrow().as_ref() {
            self.refusals.refused(&self.dir, reason);
            return Some(LogError::Offline(reason.clone()));
        }
        let poison = self.poison.borrow();
        poison
            .as_ref()
            .map(|reason| LogError::Poisoned(reason.clone()))
    }

    fn check_usable(&self) -> Result<(), LogError> {
        if let Some(error) = self.failure() {
            return Err(error);
        }
        if self.closing.get() {
            return Err(LogError::Closed);
        }
        Ok(())
    }

    /// Counters of the log's disk work.
    pub fn stats(&self) -> LogStats {
        self.stats.get()
    }

    /// Bytes sequenced but not yet handed to a write. The log does not bound it: a shard that
    /// wants back-pressure (a slow disk) stops reading produce requests while it is high.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes.get()
    }

    /// What consumers may read up to: the end of the last completed write, and for a replica
    /// no further than the Raft commit point.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.get().min(self.commit_limit.get())
    }

    /// A replica's commit point (`i64::MAX` for an unreplicated partition).
    pub fn commit_limit(&self) -> i64 {
        self.commit_limit.get()
    }

    /// Sets a replica's commit point (reads stop there) and wakes waiting fetches.
    pub fn set_commit_limit(&self, offset: i64) {
        if self.commit_limit.get() != offset {
            self.commit_limit.set(offset);
            self.watermark.notify();
        }
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.get()
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.get()
    }

    /// Resolves the next time the high watermark moves (or the partition fails): for fetch long
    /// polls. Take it before checking, then await it.
    pub fn changed(&self) -> Listener {
        self.watermark.listen()
    }

    /// Whole batches starting with the one holding `offset`, up to `max_bytes` but at least one
    /// batch (KIP-74), never at or beyond the high watermark, as chunks whose concatenation is
    /// those batches (a cached batch is two chunks: `StoredBatch`). Empty at the high watermark.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Vec<Bytes>, LogError> {
        self.read_below(offset, max_bytes, self.high_watermark(), false)
            .await
    }

    /// As `read`, up to the end of the last completed write whatever the commit point, and from
    /// the first stored batch whatever the log start: a replicated partition's leader reads the
    /// entries it sends its followers with it, and DeleteRecords may have put the log start
    /// inside a batch that is still a Raft entry.
    pub async fn read_written(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, LogError> {
        self.read_below(offset, max_bytes, self.high_watermark.get(), true)
            .await
    }

    /// The first offset a read may start at: the log start, or with `stored` the first offset
    /// still on disk (below the log start when DeleteRecords cut inside a batch).
    fn read_floor(&self, stored: bool) -> i64 {
        let log_start = self.log_start_offset.get();
        if !stored {
            return log_start;
        }
        self.segments
            .borrow()
            .first()
            .map_or(log_start, |segment| segment.base_offset().min(log_start))
    }

    /// The end of the last completed write, whatever the commit point.
    pub fn written_end(&self) -> i64 {
        self.high_watermark.get()
    }

    /// Reads from `offset` below `high_watermark`; from the log start on, or with `stored`
    /// from the first stored batch on (`read_floor`).
    async fn read_below(
        &self,
        offset: i64,
        max_bytes: usize,
        high_watermark: i64,
        stored: bool,
    ) -> Result<Vec<Bytes>, LogError> {
        if let Some(error) = self.failure() {
            return Err(error);
        }
        let log_start = self.read_floor(stored);
        // As Kafka: an offset up to the log end is in range, and above the high watermark it
        // reads nothing yet (a new leader's commit point may trail what a consumer read).
        if offset < log_start || offset > high_watermark.max(self.log_end_offset.get()) {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark,
            });
        }
        if offset >= high_watermark {
            return Ok(Vec::new());
        }
        let cached = self
            .cache
            .read(self.cache_key, offset, high_watermark, max_bytes);
        if let Some(batches) = cached.filter(|batches| !batches.is_empty()) {
            return Ok(batches);
        }
        let read = reader::read_from_disk(self, offset, high_watermark, max_bytes).await;
        let log_start = self.read_floor(stored);
        let found = matches!(&read, Ok(batches) if !batches.is_empty());
        if offset < log_start && !found {
            // Retention deleted the segment while the read was under way (a read that had its
            // file open finishes with the bytes it held; one that came too late finds no file or
            // no segment): the offset is gone, as if the read had started after the deletion.
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark,
            });
        }
        read.map_err(|error| self.offline_if_corrupt(error))
    }

    /// ListOffsets by time: the first offset whose timestamp is ≥ `timestamp_ms` (for an
    /// uncompressed batch the first such record, else the batch's base offset), with that
    /// timestamp; `None` if no record below the high watermark has one.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        if let Some(error) = self.failure() {
            return Err(error);
        }
        reader::offset_for_timestamp(self, timestamp_ms, self.high_watermark())
            .await
            .map_err(|error| self.offline_if_corrupt(error))
    }

    /// Takes the log offline when a read found a stored batch corrupt (bit rot after it was
    /// written): from now on every call answers `LogError::Offline`, as for a log found corrupt
    /// at open. Other errors pass through.
    fn offline_if_corrupt(&self, error: LogError) -> LogError {
        let LogError::Corrupt {
            offset,
            file_position,
            ref path,
            ..
        } = error
        else {
            return error;
        };
        let reason = error.to_string();
        tracing::error!(
            dir = %self.dir.display(),
            path = %path,
            offset,
            file_position,
            %error,
            "partition offline: a stored batch failed its check when read back"
        );
        self.offline.borrow_mut().get_or_insert(reason);
        self.watermark.notify();
        self.durable.notify();
        LogError::Offline(self.offline.borrow().clone().unwrap_or_default())
    }

    /// Deletes the oldest segments that `retention.ms` / `retention.bytes` expire at `now_ms`
    /// (whole, sealed segments only; never the active one). Returns how many were deleted.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let count = self.expired_segments(now_ms)?;
        self.remove_oldest_segments(count).await?;
        Ok(count)
    }

    /// Where retention would move the log start at `now_ms` (the base offset of the first
    /// segment it keeps), without deleting anything; `None` when nothing expired. A replicated
    /// partition's leader decides its log start this way and every replica applies it.
    pub fn retention_cut(&self, now_ms: i64) -> Result<Option<i64>, LogError> {
        let count = self.expired_segments(now_ms)?;
        Ok((count > 0).then(|| self.segments.borrow()[count].base_offset()))
    }

    /// How many of the oldest segments `retention.ms` / `retention.bytes` expire at `now_ms`.
    fn expired_segments(&self, now_ms: i64) -> Result<usize, LogError> {
        self.check_usable()?;
        let infos: Vec<SegmentInfo> = self
            .segments
            .borrow()
            .iter()
            .map(|segment| SegmentInfo {
                size_bytes: segment.written_bytes(),
                max_timestamp_ms: segment.max_timestamp_ms(),
                sealed: segment.sealed(),
            })
            .collect();
        let topic = self.config().topic;
        Ok(retention::expired_segment_count(
            &infos,
            topic.retention_ms,
            topic.retention_bytes,
            now_ms,
        ))
    }

    /// Forgets the idempotent producers whose last batch is `expiration_ms` older than `now_ms`
    /// (producer.id.expiration.ms). Returns how many were forgotten.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        let expired = self.producers.borrow_mut().expire(now_ms, expiration_ms);
        // The written state (what an ENOSPC drop goes back to) forgets them too, or it would
        // keep every producer forever and bring expired ones back after a drop.
        self.producers_written
            .borrow_mut()
            .expire(now_ms, expiration_ms);
        if expired > 0 {
            tracing::debug!(dir = %self.dir.display(), expired, "idle producers expired");
        }
        expired
    }

    /// DeleteRecords: moves the log start offset up to `offset` (at most the high watermark),
    /// persists it, and deletes the segments wholly below it. Returns the new log start offset.
    pub async fn delete_records(&self, offset: i64) -> Result<i64, LogError> {
        self.check_usable()?;
        let high_watermark = self.high_watermark.get();
        let log_start = self.log_start_offset.get();
        if offset < 0 || offset > high_watermark {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark,
            });
        }
        if offset <= log_start {
            return Ok(log_start);
        }
        self.log_start_offset.set(offset);
        self.trim_epochs_to_log_start();
        let dir = self.dir.clone();
        glommio::executor()
            .spawn_blocking(move || retention::write_log_start_offset(&dir, offset))
            .await?;
        let count = self
            .segments
            .borrow()
            .iter()
            .take_while(|segment| segment.sealed() && segment.next_offset() <= offset)
            .count();
        self.remove_oldest_segments(count).await?;
        Ok(self.log_start_offset.get())
    }

    /// Removes the `count` oldest segments from the log and from disk; the log start offset
    /// moves to the first remaining segment (if it was below it).
    async fn remove_oldest_segments(&self, count: usize) -> Result<(), LogError> {
        if count == 0 {
            return Ok(());
        }
        let removed: Vec<Rc<Segment>> = {
            let mut segments = self.segments.borrow_mut();
            assert!(
                count < segments.len(),
                "the active segment is never removed"
            );
            segments.drain(..count).collect()
        };
        let first_base = self.segments.borrow()[0].base_offset();
        self.log_start_offset
            .set(self.log_start_offset.get().max(first_base));
        self.trim_epochs_to_log_start();
        for segment in removed {
            glommio::yield_if_needed().await;
            tracing::debug!(path = %segment.log_path().display(), "deleting segment");
            // Index files first: a crash in between leaves a .log without indexes, which the
            // next open scans; the other order would leave orphan index files.
            let paths = [
                segment.index_path(),
                segment.time_index_path(),
                segment.log_path(),
            ];
            glommio::executor()
                .spawn_blocking(move || {
                    for path in paths {
                        match std::fs::remove_file(&path) {
                            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                                return Err(error);
                            }
                            _ => {}
                        }
                    }
                    Ok(())
                })
                .await?;
            // Reads in flight keep the file open; it is closed when the last one is done.
            if let Some(Ok(file)) = segment.take_file().map(Rc::try_unwrap) {
                file.close().await?;
            }
        }
        // Deleted names must stay deleted after a power loss, or old data would come back.
        segment::sync_dir(&self.dir).await?;
        Ok(())
    }

    /// Closes the log cleanly: finishes pending writes, fdatasyncs, writes the active segment's
    /// index files and the clean-shutdown marker, closes the files.
    pub async fn close(&self) -> Result<(), LogError> {
        if self.is_offline() {
            // No marker: the next start must check the damaged log again.
            self.closing.set(true);
            self.cache.unregister(self.cache_key);
            return Ok(());
        }
        self.closing.set(true);
        self.work.notify();
        while !self.writer_done.get() {
            let listener = self.durable.listen();
            if self.writer_done.get() {
                break;
            }
            listener.await;
        }
        self.epochs_on_disk().await?;
        let segments = self.segments.borrow().clone();
        let active = segments.last().expect("a log has a segment");
        if let Some(file) = active.file() {
            file.fdatasync().await?;
        }
        active.persist_indexes().await?;
        self.unsynced_files.borrow_mut().clear();
        let marker = ShutdownMarker {
            log_end_offset: self.log_end_offset.get(),
            active_base_offset: active.base_offset(),
            active_size_bytes: active.written_bytes(),
            // The log is closing: nothing appends any more.
            producers: std::mem::take(&mut *self.producers.borrow_mut()),
        }
        .encode();
        let marker_path = self.dir.join(SHUTDOWN_MARKER_FILE_NAME);
        glommio::executor()
            .spawn_blocking(move || segment::write_file_atomically(&marker_path, &marker))
            .await?;
        self.close_files(&segments).await;
        self.cache.unregister(self.cache_key);
        Ok(())
    }

    async fn close_files(&self, segments: &[Rc<Segment>]) {
        for segment in segments {
            glommio::yield_if_needed().await;
            // A file still shared (a read in flight) is closed when its last user drops it.
            let Some(Ok(file)) = segment.take_file().map(Rc::try_unwrap) else {
                continue;
            };
            if let Err(error) = file.close().await {
                tracing::warn!(%error, "closing a segment file failed");
            }
        }
    }

    /// Closes the log (without the clean-shutdown work) and removes its directory.
    pub async fn delete(&self) -> Result<(), LogError> {
        self.closing.set(true);
        self.work.notify();
        while !self.writer_done.get() {
            let listener = self.durable.listen();
            if self.writer_done.get() {
                break;
            }
            listener.await;
        }
        self.unsynced_files.borrow_mut().clear();
        let segments = self.segments.borrow().clone();
        self.close_files(&segments).await;
        self.cache.unregister(self.cache_key);
        let dir = self.dir.clone();
        glommio::executor()
            .spawn_blocking(move || std::fs::remove_dir_all(&dir))
            .await?;
        Ok(())
    }
}

/// The idempotent-producer identity of a batch, if it has one.
fn producer_identity(header: &record_batch::RecordBatchHeader) -> Option<ProducerBatch> {
    let producer_id = header.producer_id.get();
    (producer_id >= 0).then(|| ProducerBatch {
        producer_id,
        producer_epoch: header.producer_epoch.get(),
        base_sequence: header.base_sequence.get(),
        last_offset_delta: header.last_offset_delta.get(),
    })
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        // Let the writer task see the log is gone and exit; the cache forgets the partition.
        self.closing.set(true);
        self.work.notify();
        self.cache.unregister(self.cache_key);
    }
}

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod truncation_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TimestampType;
    use crate::io::direct_file::tests::{TestDir, run_in_executor};
    use crate::protocol::record_batch::{ATTRIBUTE_LOG_APPEND_TIME, BatchIter};
    use crate::protocol::records::{BatchBuilder, Record, RecordIter};

    pub(super) const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;

    pub(super) fn topic(segment_bytes: u64, message_timestamp_type: TimestampType) -> TopicConfig {
        TopicConfig {
            segment_bytes,
            segment_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            retention_ms: -1,
            retention_bytes: -1,
            message_timestamp_type,
            compression_type: crate::config::CompressionType::Producer,
            min_insync_replicas: 1,
        }
    }

    /// A batch of `records` records whose values are `"{first_value + i}"` and whose timestamps
    /// are `BASE_TIMESTAMP_MS + first_value + i`.
    pub(super) fn batch(first_value: u64, records: u64) -> Bytes {
        let mut builder = BatchBuilder::new(BASE_TIMESTAMP_MS + first_value as i64);
        for i in 0..records {
            let value = format!("value-{}", first_value + i);
            builder.push(&Record {
                timestamp_delta: i as i64,
                key: None,
                value: Some(value.as_bytes()),
                headers: &[],
            });
        }
        builder.finish()
    }

    pub(super) fn idempotent_batch(producer_epoch: i16, base_sequence: i32, records: u64) -> Bytes {
        let mut builder = BatchBuilder::new(BASE_TIMESTAMP_MS);
        builder.idempotent(42, producer_epoch, base_sequence);
        for _ in 0..records {
            builder.push(&Record {
                timestamp_delta: 0,
                key: None,
                value: Some(b"v"),
                headers: &[],
            });
        }
        builder.finish()
    }

    /// The whole batches in the chunks `PartitionLog::read` returns.
    pub(super) fn whole_batches(chunks: Vec<Bytes>) -> Vec<Bytes> {
        let joined = Bytes::from(chunks.concat());
        let mut iter = BatchIter::new(joined);
        let batches: Vec<Bytes> = iter.by_ref().map(Result::unwrap).collect();
        assert!(iter.remainder().is_empty(), "read returns whole batches");
        batches
    }

    /// The record values of `batches`, checking every batch is valid and offsets are contiguous
    /// from the first batch's base offset.
    fn values(batches: &[Bytes]) -> Vec<String> {
        let mut out = Vec::new();
        let mut next_offset = None;
        for batch in batches {
            let header = record_batch::validate(batch).unwrap();
            let base_offset = header.base_offset.get();
            if let Some(next_offset) = next_offset {
                assert_eq!(base_offset, next_offset);
            }
            next_offset = Some(base_offset + i64::from(header.records_count.get()));
            let records = RecordIter::new(
                batch.slice(crate::protocol::record_batch::RECORD_BATCH_HEADER_BYTES..),
                header.records_count.get(),
            );
            for record in records {
                let value = record.unwrap().value.unwrap();
                out.push(String::from_utf8(value.to_vec()).unwrap());
            }
        }
        out
    }

    pub(super) async fn open(
        dir: &Path,
        topic: TopicConfig,
        cache_bytes: usize,
    ) -> Rc<PartitionLog> {
        let cache = Rc::new(ShardCache::new(cache_bytes));
        PartitionLog::open(dir.join("topic-0"), topic, cache)
            .await
            .unwrap()
    }

    /// Appends `count` batches of 1-3 records (values numbered from 0) and waits until written.
    /// Returns the number of records.
    pub(super) async fn append_numbered(log: &PartitionLog, count: u64) -> u64 {
        let mut value = log.log_end_offset() as u64;
        let mut last = None;
        for i in 0..count {
            let records = i % 3 + 1;
            let outcome = log.append_batch(batch(value, records), 0).unwrap();
            assert_eq!(outcome.base_offset, value as i64);
            value += records;
            last = Some(outcome);
        }
        log.wait_written(&last.unwrap()).await.unwrap();
        value
    }

    /// Reads everything from `offset` to the high watermark in fetches of `max_bytes`.
    pub(super) async fn read_all(
        log: &PartitionLog,
        mut offset: i64,
        max_bytes: usize,
    ) -> Vec<String> {
        let mut out = Vec::new();
        while offset < log.high_watermark() {
            let batches = whole_batches(log.read(offset, max_bytes).await.unwrap());
            assert!(!batches.is_empty());
            let mut got = values(&batches);
            let first = record_batch::header(&batches[0]).unwrap().base_offset.get();
            // The first batch may start before the offset: skip its earlier records.
            got.drain(..(offset - first) as usize);
            offset += got.len() as i64;
            out.extend(got);
        }
        out
    }

    pub(super) fn numbered(range: std::ops::Range<u64>) -> Vec<String> {
        range.map(|i| format!("value-{i}")).collect()
    }

    #[test]
    fn ten_thousand_batches_read_back_from_disk_and_cache() {
        // Proves the write path and both read paths: 10k small batches appended with group
        // commit read back identically from disk (no cache) and from the cache, from any offset
        // (including mid-batch offsets, which return the holding batch whole), with max_bytes
        // respected except for the first batch (KIP-74), and nothing at the high watermark.
        let dir = TestDir::new("log-10k");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            for cache_bytes in [0, 64 << 20] {
                let log_dir = path.join(format!("cache-{cache_bytes}"));
                let log = open(
                    &log_dir,
                    topic(1 << 30, TimestampType::CreateTime),
                    cache_bytes,
                )
                .await;
                let total = append_numbered(&log, 10_000).await;
                assert_eq!(log.high_watermark(), total as i64);
                assert_eq!(log.log_end_offset(), total as i64);
                assert_eq!(read_all(&log, 0, 1).await, numbered(0..total));
                assert_eq!(read_all(&log, 0, 100_000).await, numbered(0..total));
                for offset in [1, 2, 3, 4097, total - 1] {
                    let got = read_all(&log, offset as i64, 5000).await;
                    assert_eq!(got, numbered(offset..total), "from {offset}");
                }
                let batches = whole_batches(log.read(5000, 1000).await.unwrap());
                let bytes: usize = batches.iter().map(Bytes::len).sum();
                assert!(bytes <= 1000 || batches.len() == 1);
                assert!(log.read(total as i64, 1000).await.unwrap().is_empty());
                assert!(matches!(
                    log.read(total as i64 + 1, 1000).await,
                    Err(LogError::OffsetOutOfRange { .. })
                ));
                log.close().await.unwrap();
            }
        });
    }

    #[test]
    fn tailing_reads_from_disk_while_writes_rewrite_the_tail_block() {
        // Proves a consumer reading from disk (no cache) while the producer's writes keep
        // rewriting the partial last block always gets whole, valid batches below the high
        // watermark, in order, with no gaps: the rewritten bytes below the old end never change.
        let dir = TestDir::new("log-tailing");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let log = open(&path, topic(64 * 1024, TimestampType::CreateTime), 0).await;
            let producer = {
                let log = log.clone();
                glommio::spawn_local(async move {
                    let mut value = 0;
                    for i in 0..3000u64 {
                        let records = i % 3 + 1;
                        let outcome = log.append_batch(batch(value, records), 0).unwrap();
                        value += records;
                        if i % 7 == 0 {
                            log.wait_written(&outcome).await.unwrap();
                        }
                    }
                    value
                })
            };
            let mut consumed = Vec::new();
            let mut offset = 0i64;
            while consumed.len() < 6000 {
                let listener = log.changed();
                if offset == log.high_watermark() {
                    listener.await;
                    continue;
                }
                let batches = whole_batches(log.read(offset, 2000).await.unwrap());
                let mut got = values(&batches);
                let first = record_batch::header(&batches[0]).unwrap().base_offset.get();
                got.drain(..(offset - first) as usize);
                offset += got.len() as i64;
                consumed.extend(got);
            }
            let total = producer.await;
            assert_eq!(total, 6000);
            assert_eq!(consumed, numbered(0..total));
            log.close().await.unwrap();
        });
    }

    #[test]
    fn partitions_sharing_a_small_cache_read_their_own_data() {
        // Proves the per-shard cache keeps partitions apart: 8 logs appending interleaved into a
        // cache far smaller than their data each read back exactly their own records (from the
        // cache for the newest batches, from disk for the evicted ones), and the cache stays
        // within its budget.
        let dir = TestDir::new("log-shared-cache");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let cache = Rc::new(ShardCache::new(32 * 1024));
            let mut logs = Vec::new();
            for partition in 0..8 {
                let dir = path.join(format!("topic-{partition}"));
                let config = topic(1 << 30, TimestampType::CreateTime);
                logs.push(
                    PartitionLog::open(dir, config, cache.clone())
                        .await
                        .unwrap(),
                );
            }
            let mut ends = vec![0u64; logs.len()];
            let mut lasts = vec![None; logs.len()];
            for round in 0..300u64 {
                for (partition, log) in logs.iter().enumerate() {
                    // Partition p's values start at p * 1_000_000 so mixing would show.
                    let first = partition as u64 * 1_000_000 + ends[partition];
                    let records = round % 3 + 1;
                    lasts[partition] = Some(log.append_batch(batch(first, records), 0).unwrap());
                    ends[partition] += records;
                }
            }
            for (partition, log) in logs.iter().enumerate() {
                let last = lasts[partition].as_ref().unwrap();
                log.wait_written(last).await.unwrap();
                assert!(cache.used_bytes() <= 32 * 1024);
                let base = partition as u64 * 1_000_000;
                let expected = numbered(base..base + ends[partition]);
                assert_eq!(read_all(log, 0, 3000).await, expected);
                let tail_offset = ends[partition] as i64 - 2;
                let tail = read_all(log, tail_offset, 3000).await;
                assert_eq!(tail, expected[tail_offset as usize..].to_vec());
            }
            for log in logs {
                log.close().await.unwrap();
            }
            assert_eq!(cache.used_bytes(), 0);
        });
    }

    #[test]
    fn reopen_after_clean_close_and_after_unclean_drop() {
        // Proves recovery finds every written batch: after a clean close, and after the log was
        // dropped without close (as a crash leaves it), reopening yields the same high watermark
        // and bytes, and appends continue at the next offset.
        let dir = TestDir::new("log-reopen");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let config = topic(1 << 30, TimestampType::CreateTime);
            let log = open(&path, config.clone(), 0).await;
            let total = append_numbered(&log, 1000).await;
            log.close().await.unwrap();
            drop(log);
            assert!(
                path.join("topic-0")
                    .join(SHUTDOWN_MARKER_FILE_NAME)
                    .exists()
            );

            let log = open(&path, config.clone(), 0).await;
            assert_eq!(log.high_watermark(), total as i64);
            assert!(
                !path
                    .join("topic-0")
                    .join(SHUTDOWN_MARKER_FILE_NAME)
                    .exists()
            );
            let more = append_numbered(&log, 777).await;
            drop(log); // Unclean: no close.

            let log = open(&path, config.clone(), 0).await;
            assert_eq!(log.high_watermark(), more as i64);
            assert_eq!(read_all(&log, 0, 64 << 10).await, numbered(0..more));
            let again = append_numbered(&log, 5).await;
            assert_eq!(read_all(&log, 0, 64 << 10).await, numbered(0..again));
            log.close().await.unwrap();
        });
    }

    #[test]
    fn torn_tail_recovers_to_the_last_whole_batch() {
        // Proves a torn last write is cut off: the file is cut in the middle of the last batch
        // and zero-filled after (what a crash mid-write leaves); reopening recovers exactly the
        // batches before it, and new appends land where the torn batch was.
        let dir = TestDir::new("log-torn");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let config = topic(1 << 30, TimestampType::CreateTime);
            let log = open(&path, config.clone(), 0).await;
            let before = append_numbered(&log, 300).await;
            let torn = log.append_batch(batch(before, 50), 0).unwrap();
            log.wait_written(&torn).await.unwrap();
            let segment = log.segments.borrow()[0].clone();
            let torn_start = segment.written_bytes() - batch(before, 50).len() as u64;
            drop(segment);
            drop(log);

            let log_path = path.join("topic-0").join(segment::file_name(0, "log"));
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&log_path)
                .unwrap();
            file.set_len(torn_start + 100).unwrap();
            file.set_len(torn_start + 100 + 64 * 1024).unwrap(); // Zero-filled tail.
            drop(file);

            let log = open(&path, config.clone(), 0).await;
            assert_eq!(log.high_watermark(), before as i64);
            assert_eq!(read_all(&log, 0, 64 << 10).await, numbered(0..before));
            let after = append_numbered(&log, 10).await;
            assert_eq!(read_all(&log, 0, 64 << 10).await, numbered(0..after));
            log.close().await.unwrap();
        });
    }

    #[test]
    fn garbage_and_stale_batches_after_the_end_are_not_adopted() {
        // Proves the scan stops at the first byte that is not the next valid batch: a valid but
        // stale batch (an older copy, wrong base offset) and non-zero garbage after the end are
        // both cut off, not mistaken for data or for corruption (they are within one write's
        // reach of the end).
        let dir = TestDir::new("log-garbage");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let config = topic(1 << 30, TimestampType::CreateTime);
            let log = open(&path, config.clone(), 0).await;
            let total = append_numbered(&log, 100).await;
            let end = log.segments.borrow()[0].written_bytes() as usize;
            let stale = whole_batches(log.read(0, 1).await.unwrap())[0].clone();
            drop(log);
            let log_path = path.join("topic-0").join(segment::file_name(0, "log"));
            let mut bytes = std::fs::read(&log_path).unwrap();
            bytes.resize(end, 0);
            bytes.extend_from_slice(&stale);
            bytes.extend((0..5000u32).map(|i| (i % 253 + 1) as u8));
            std::fs::write(&log_path, &bytes).unwrap();

            let log = open(&path, config.clone(), 0).await;
            assert_eq!(log.high_watermark(), total as i64);
            assert_eq!(read_all(&log, 0, 64 << 10).await, numbered(0..total));
            log.close().await.unwrap();
        });
    }

    #[test]
    fn segments_roll_and_reads_cross_them() {
        // Proves segments roll at segment.bytes, each named by its base offset, and that reads
        // and recovery (closed segments trusted through their index files) work across them.
        let dir = TestDir::new("log-roll");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let config = topic(16 * 1024, TimestampType::CreateTime);
            let log = open(&path, config.clone(), 0).await;
            let total = append_numbered(&log, 2000).await;
            let segments = log.segments.borrow().len();
            assert!(segments > 5, "{segments} segments");
            for segment in log.segments.borrow().iter() {
                assert!(segment.sequenced_bytes() <= 16 * 1024);
            }
            assert_eq!(read_all(&log, 0, 3000).await, numbered(0..total));
            assert_eq!(read_all(&log, 1234, 100_000).await, numbered(1234..total));
            drop(log); // Unclean.
            let log = open(&path, config.clone(), 0).await;
            assert_eq!(log.segments.borrow().len(), segments);
            assert_eq!(log.high_watermark(), total as i64);
            assert_eq!(read_all(&log, 0, 7000).await, numbered(0..total));
            let second = log.segments.borrow()[1].base_offset();
            assert!(
                path.join("topic-0")
                    .join(segment::file_name(second, "index"))
                    .exists()
            );
            log.close().await.unwrap();
        });
    }

    #[test]
    fn idempotent_producer_duplicates_and_fencing() {
        // Proves append_batch applies the producer-state rules: a retry is answered with the
        // original offsets and appends nothing, gaps and old epochs are refused, and producer
        // state survives a reopen (rebuilt by the recovery scan).
        let dir = TestDir::new("log-idempotent");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let config = topic(1 << 30, TimestampType::CreateTime);
            let log = open(&path, config.clone(), 1 << 20).await;
            let first = log.append_batch(idempotent_batch(0, 0, 3), 0).unwrap();
            let second = log.append_batch(idempotent_batch(0, 3, 2), 0).unwrap();
            assert_eq!((second.base_offset, second.last_offset), (3, 4));
            let retry = log.append_batch(idempotent_batch(0, 0, 3), 0).unwrap();
            assert!(retry.duplicate);
            assert_eq!(
                (retry.base_offset, retry.last_offset),
                (first.base_offset, 2)
            );
            assert_eq!(log.log_end_offset(), 5);
            assert!(matches!(
                log.append_batch(idempotent_batch(0, 7, 1), 0),
                Err(LogError::OutOfOrderSequence { expected: 5, .. })
            ));
            log.wait_written(&second).await.unwrap();
            drop(log);
            let log = open(&path, config.clone(), 1 << 20).await;
            let retry = log.append_batch(idempotent_batch(0, 3, 2), 0).unwrap();
            assert!(retry.duplicate);
            assert_eq!(retry.base_offset, 3);
            log.append_batch(idempotent_batch(1, 0, 1), 0).unwrap();
            assert!(matches!(
                log.append_batch(idempotent_batch(0, 5, 1), 0),
                Err(LogError::InvalidProducerEpoch { .. })
            ));
            log.close().await.unwrap();
            drop(log);
            // A clean close: the state comes back from the shutdown marker, not a scan.
            let log = open(&path, config, 1 << 20).await;
            let retry = log.append_batch(idempotent_batch(1, 0, 1), 0).unwrap();
            assert!(retry.duplicate);
            assert_eq!(retry.base_offset, 5);
            assert_eq!(log.log_end_offset(), 6);
            log.close().await.unwrap();
        });
    }

    #[test]
    fn log_append_time_rewrites_timestamp_and_keeps_the_crc_valid() {
        // Proves a LogAppendTime topic stores the broker's time as max timestamp with the
        // attribute set and a valid CRC, on disk and in the cache, and reports it.
        let dir = TestDir::new("log-append-time");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let config = topic(1 << 30, TimestampType::LogAppendTime);
            for cache_bytes in [0, 1 << 20] {
                let log = open(
                    &path.join(cache_bytes.to_string()),
                    config.clone(),
                    cache_bytes,
                )
                .await;
                let now_ms = 1_900_000_000_000;
                let outcome = log.append_batch(batch(0, 3), now_ms).unwrap();
                assert_eq!(outcome.log_append_time_ms, now_ms);
                log.wait_written(&outcome).await.unwrap();
                let batches = whole_batches(log.read(0, 1 << 20).await.unwrap());
                let header = record_batch::validate(&batches[0]).unwrap();
                assert_eq!(header.max_timestamp.get(), now_ms);
                assert_ne!(header.attributes.get() & ATTRIBUTE_LOG_APPEND_TIME, 0);
                assert_eq!(
                    log.offset_for_timestamp(now_ms).await.unwrap(),
                    Some((0, now_ms))
                );
                log.close().await.unwrap();
            }
        });
    }

    #[test]
    fn acks_all_waits_for_a_shared_fdatasync() {
        // Proves group commit and shared fdatasyncs: 200 batches sequenced together go out in one
        // write, wait_durable completes for all 200 concurrent waiters with one or two
        // fdatasyncs, and durability implies the write completed.
        let dir = TestDir::new("log-durable");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let log = open(&path, topic(1 << 30, TimestampType::CreateTime), 1 << 20).await;
            let mut waiters = Vec::new();
            for i in 0..200u64 {
                let outcome = log.append_batch(batch(i, 1), 0).unwrap();
                let log = log.clone();
                waiters.push(glommio::spawn_local(async move {
                    log.wait_durable(&outcome).await.unwrap();
                    assert!(log.high_watermark() >= outcome.end_offset());
                    assert!(log.durable_offset.get() >= outcome.end_offset());
                }));
            }
            for waiter in waiters {
                waiter.await;
            }
            assert_eq!(log.durable_offset.get(), 200);
            // Sequenced back to back, the 200 batches went out in one write, and the 200 waiters
            // shared one fdatasync (two at most, if the first started before all were waiting).
            let stats = log.stats();
            assert_eq!(stats.writes, 1, "{stats:?}");
            assert!(stats.fdatasyncs <= 2, "{stats:?}");
            log.close().await.unwrap();
        });
    }

    #[test]
    fn offset_for_timestamp_finds_the_first_record_at_or_after() {
        // Proves ListOffsets by time: the first record whose timestamp reaches the target, found
        // through the time index across segments; None beyond the newest timestamp.
        let dir = TestDir::new("log-time");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let config = topic(16 * 1024, TimestampType::CreateTime);
            let log = open(&path, config.clone(), 0).await;
            let total = append_numbered(&log, 3000).await as i64;
            // Record n has timestamp BASE + n (see `batch`).
            for n in [0, 1, 2, 777, 4000, total - 1] {
                let found = log
                    .offset_for_timestamp(BASE_TIMESTAMP_MS + n)
                    .await
                    .unwrap();
                assert_eq!(found, Some((n, BASE_TIMESTAMP_MS + n)), "record {n}");
            }
            log.close().await.unwrap();
            drop(log);
            // Again with every segment's indexes loaded from their files.
            let log = open(&path, config, 0).await;
            for n in [0, 1, 2, 777, 4000, total - 1] {
                let found = log
                    .offset_for_timestamp(BASE_TIMESTAMP_MS + n)
                    .await
                    .unwrap();
                assert_eq!(found, Some((n, BASE_TIMESTAMP_MS + n)), "after reopen {n}");
            }
            assert_eq!(
                log.offset_for_timestamp(0).await.unwrap(),
                Some((0, BASE_TIMESTAMP_MS))
            );
            assert_eq!(
                log.offset_for_timestamp(BASE_TIMESTAMP_MS + total)
                    .await
                    .unwrap(),
                None
            );
            log.close().await.unwrap();
        });
    }

    #[test]
    fn poisoned_partition_answers_the_error_everywhere() {
        // Proves a poisoned partition (as a failed fdatasync leaves it) fails every later call,
        // including waiters already parked, and that reopening recovers it.
        let dir = TestDir::new("log-poison");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let config = topic(1 << 30, TimestampType::CreateTime);
            let log = open(&path, config.clone(), 1 << 20).await;
            let total = append_numbered(&log, 10).await as i64;
            // Poisoned before the writer runs again: this batch is never written.
            let outcome = log.append_batch(batch(total as u64, 1), 0).unwrap();
            let waiter = {
                let log = log.clone();
                let outcome = outcome.clone();
                glommio::spawn_local(async move { log.wait_durable(&outcome).await })
            };
            log.poison_with("injected fdatasync failure".to_owned());
            assert!(matches!(waiter.await, Err(LogError::Poisoned(_))));
            assert!(matches!(
                log.append_batch(batch(0, 1), 0),
                Err(LogError::Poisoned(_))
            ));
            assert!(matches!(log.read(0, 100).await, Err(LogError::Poisoned(_))));
            assert!(matches!(
                log.wait_written(&outcome).await,
                Err(LogError::Poisoned(_))
            ));
            assert!(matches!(log.close().await, Err(LogError::Poisoned(_))));
            drop(log);
            let log = open(&path, config, 1 << 20).await;
            assert_eq!(log.high_watermark(), total);
            assert_eq!(log.pending_bytes(), 0);
            log.close().await.unwrap();
        });
    }

    #[test]
    fn retention_and_delete_records_remove_old_segments() {
        // Proves retention.bytes deletes whole old segments (never the active one) and moves the
        // log start offset, reads below it are out of range, and a DeleteRecords offset inside a
        // segment survives a reopen.
        let dir = TestDir::new("log-retention");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let mut config = topic(16 * 1024, TimestampType::CreateTime);
            config.retention_bytes = 40 * 1024;
            let log = open(&path, config.clone(), 0).await;
            let total = append_numbered(&log, 2000).await as i64;
            // Let the writer finish the last roll before measuring.
            glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
            let before = log.segments.borrow().len();
            let deleted = log.enforce_retention(0).await.unwrap();
            assert!(deleted > 0);
            let segments = log.segments.borrow().clone();
            assert_eq!(segments.len(), before - deleted);
            let kept_bytes: u64 = segments.iter().map(|s| s.written_bytes()).sum();
            assert!(kept_bytes >= 40 * 1024);
            let log_start = log.log_start_offset();
            assert_eq!(log_start, segments[0].base_offset());
            assert!(
                !path
                    .join("topic-0")
                    .join(segment::file_name(0, "log"))
                    .exists()
            );
            assert!(matches!(
                log.read(log_start - 1, 100).await,
                Err(LogError::OffsetOutOfRange { .. })
            ));
            let start = log_start as u64;
            assert_eq!(
                read_all(&log, log_start, 10_000).await,
                numbered(start..total as u64)
            );

            let inside = log_start + 3;
            assert_eq!(log.delete_records(inside).await.unwrap(), inside);
            assert!(log.read(inside - 1, 100).await.is_err());
            drop(segments);
            log.close().await.unwrap();
            drop(log);
            let log = open(&path, config, 0).await;
            assert_eq!(log.log_start_offset(), inside);
            assert_eq!(log.high_watermark(), total);
            log.close().await.unwrap();
        });
    }

    #[test]
    fn config_changes_apply_to_the_next_append() {
        // Proves set_config takes effect at once: a lowered max.message.bytes refuses the next
        // batch, and switching to LogAppendTime stamps the next one.
        let dir = TestDir::new("log-config");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let log = open(&path, topic(1 << 30, TimestampType::CreateTime), 1 << 20).await;
            let mut config = log.config().topic;
            config.max_message_bytes = 10;
            log.set_config(config.clone());
            assert!(matches!(
                log.append_batch(batch(0, 1), 0),
                Err(LogError::MessageTooLarge { .. })
            ));
            config.max_message_bytes = 1 << 20;
            config.message_timestamp_type = TimestampType::LogAppendTime;
            log.set_config(config);
            let outcome = log.append_batch(batch(0, 1), 77).unwrap();
            assert_eq!(outcome.log_append_time_ms, 77);
            log.close().await.unwrap();
        });
    }

    #[test]
    fn delete_removes_the_partition_directory() {
        // Proves delete closes the log and removes its directory.
        let dir = TestDir::new("log-delete");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let log = open(&path, topic(1 << 30, TimestampType::CreateTime), 1 << 20).await;
            append_numbered(&log, 10).await;
            log.delete().await.unwrap();
            assert!(!path.join("topic-0").exists());
            assert!(matches!(
                log.append_batch(batch(0, 1), 0),
                Err(LogError::Closed)
            ));
        });
    }

    #[test]
    fn batch_iter_sees_the_stored_bytes() {
        // Proves what a fetch returns is a plain record set a client can split into batches.
        let dir = TestDir::new("log-iter");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let log = open(&path, topic(1 << 30, TimestampType::CreateTime), 0).await;
            append_numbered(&log, 20).await;
            let batches = whole_batches(log.read(0, 1 << 20).await.unwrap());
            let joined: Vec<u8> = batches.iter().flat_map(|b| b.iter().copied()).collect();
            let count = BatchIter::new(Bytes::from(joined)).count();
            assert_eq!(count, 20);
            log.close().await.unwrap();
        });
    }

    #[test]
    fn segments_roll_at_segment_ms() {
        // Proves segment.ms: the active segment rolls on the first append once its first append
        // in this run is segment.ms old, and not before; sealed segments then expire by
        // retention.ms against their largest timestamp.
        let dir = TestDir::new("log-segment-ms");
        let path = dir.path.clone();
        run_in_executor(dir.path.clone(), move || async move {
            let mut config = topic(1 << 30, TimestampType::CreateTime);
            config.segment_ms = 1000;
            let log = open(&path, config, 0).await;
            let mut value = 0;
            for (now_ms, segments_after) in [(0, 1), (500, 1), (999, 1), (1000, 2), (1999, 2)] {
                let outcome = log.append_batch(batch(value, 1), now_ms).unwrap();
                value += 1;
                log.wait_written(&outcome).await.unwrap();
                assert_eq!(
                    log.segments.borrow().len(),
                    segments_after,
                    "at {now_ms} ms"
                );
            }
            let outcome = log.append_batch(batch(value, 1), 2000).unwrap();
            log.wait_written(&outcome).await.unwrap();
            assert_eq!(log.segments.borrow().len(), 3);
            assert_eq!(log.segments.borrow()[1].base_offset(), 3);
            assert_eq!(log.segments.borrow()[2].base_offset(), 5);
            // Let the writer finish sealing the rolled segments.
            glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
            let mut config = log.config().topic;
            config.retention_ms = 1000;
            log.set_config(config);
            // Every batch carries BASE_TIMESTAMP_MS + value as its timestamp.
            let now_ms = BASE_TIMESTAMP_MS + 4 + 1001;
            assert_eq!(log.enforce_retention(now_ms).await.unwrap(), 2);
            assert_eq!(log.log_start_offset(), 5);
            log.close().await.unwrap();
        });
    }
}
