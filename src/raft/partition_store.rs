//! `PartitionLogStore`: openraft's log storage for a replicated partition, over the partition's
//! own segment log (docs/architecture.md §8). The segment log is the Raft log: nothing is
//! written twice.
//!
//! One Raft entry is one batch of the partition log. A normal entry's data is a record batch;
//! the leader's append stamps it with the log end as base offset and the entry's term as leader
//! epoch (Kafka's partitionLeaderEpoch), and a follower appends the leader's stored bytes as
//! they are (`PartitionLog::append_replica`, CRC-checked), so every replica holds the same bytes
//! at the same offsets. Raft's own entries (a new leader's blank entry, membership changes) are
//! control batches (`protocol::control_batch`), which consumers skip. A new term starts a new
//! leader epoch in the log's leader-epoch cache before its first entry is written.
//!
//! Raft indexes are consecutive and batches are not one offset each, so the store keeps the
//! base offset and term of every live entry in memory, from `first_index` (the entry at
//! `first_offset`) on; `raft-log-meta` in the partition directory (CRC-sealed JSON, replaced
//! atomically) holds `first_index`, `first_offset` and the last purged log id, and the rest is
//! found again at open by reading the batch headers after `first_offset`. (A sparse, persisted
//! index that spares that read and the memory is the next step.)
//!
//! Truncation (`truncate_after`) cuts the partition log (`PartitionLog::truncate`, which reopens
//! it: readers take the log from the shared state each time). Purging moves the log start up
//! (retention, DeleteRecords, as the leader decided); a replica behind its leader's log start
//! empties its log to start after the leader's snapshot (`ReplicaLog::restart`, Kafka's reset),
//! marked in `raft-log-meta` while under way. The vote lives in the shard's
//! `ShardVotes`. An append returns once its batches are placed in the log and tells openraft
//! (`IOFlushed`) once they are fdatasync'ed, so the next entries are written while the last
//! ones sync, and appends share fdatasyncs.
//!
//! `!Send`: one shard's store, on that shard's executor.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::type_config::alias::{LogIdOf, VoteOf};
use openraft::{EntryPayload, OptionalSend, RaftLogReader, RaftTypeConfig};
use serde::{Deserialize, Serialize};

use crate::log::{AppendOutcome, LogError, PartitionLog, crc_sealed};
use crate::protocol::control_batch::{
    self, CONTROL_TYPE_LOG_START, CONTROL_TYPE_RAFT_BLANK, CONTROL_TYPE_RAFT_MEMBERSHIP,
    ControlRecord,
};
use crate::protocol::record_batch::{self, BatchIter};

use super::GlommioRuntime;
use super::recovery_throttle::{CATCH_UP_ENTRIES_BEHIND, RecoveryThrottle};
use super::vote_store::ShardVotes;

openraft::declare_raft_types!(
    /// The Raft types of a replicated partition: entries are record batches, terms are leader
    /// epochs (a committed leader id is the term alone, so a batch's epoch names it).
    pub PartitionRaft:
        D = RecordBatch,
        R = (),
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
        AsyncRuntime = GlommioRuntime,
);

/// A record batch as a Raft entry's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBatch(pub Bytes);

impl std::fmt::Display for RecordBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record batch of {} bytes", self.0.len())
    }
}

/// A replicated partition's Raft entry.
pub type PartitionEntry = <PartitionRaft as RaftTypeConfig>::Entry;
type LogId = LogIdOf<PartitionRaft>;
type Vote = VoteOf<PartitionRaft>;

/// The file holding the store's own state in the partition directory.
pub const META_FILE_NAME: &str = "raft-log-meta";

/// The timestamp of Raft's own entries (Kafka's "no timestamp"): every replica builds their
/// control batches itself, and the same entry must give the same bytes everywhere.
const RAFT_ENTRY_TIMESTAMP_MS: i64 = -1;

/// Bytes read per step when entries are read back.
const READ_STEP_BYTES: usize = 1024 * 1024;

/// What `raft-log-meta` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    /// The Raft index of the entry at `first_offset`; None before the first entry.
    first_index: Option<u64>,
    /// Where the entries start in the partition log.
    first_offset: i64,
    /// The last entry purged (openraft's `last_purged_log_id`).
    last_purged: Option<LogId>,
    /// Set while the partition log is being emptied to start at `first_offset` (`restart`): an
    /// open that finds it set finishes the job.
    #[serde(default)]
    restarting: bool,
}

/// What the store and its readers share.
struct Shared {
    /// Replaced when a truncation reopens it; cloned out, never borrowed across an await.
    log: Rc<PartitionLog>,
    group: String,
    votes: ShardVotes<Vote>,
    meta: Meta,
    /// Base offset and term of every live entry, from `meta.first_index` on.
    entries: VecDeque<(i64, u64)>,
    /// Proposals waiting to hear where the leader placed their batch (acks=1), by the address
    /// of the batch's bytes (which the waiter keeps alive, so no other batch has it meanwhile).
    placement_waiters: HashMap<usize, LocalSender<(Rc<PartitionLog>, AppendOutcome)>>,
    /// The shard's bound on catch-up reads, for readers made from now on.
    throttle: Option<Rc<RecoveryThrottle>>,
}

impl Shared {
    /// The index the next entry must have, if known.
    fn next_index(&self) -> Option<u64> {
        self.meta
            .first_index
            .map(|first| first + self.entries.len() as u64)
    }

    fn last_log_id(&self) -> Option<LogId> {
        let first = self.meta.first_index?;
        let (_, term) = *self.entries.back()?;
        Some(LogId::new_term_index(
            term,
            first + self.entries.len() as u64 - 1,
        ))
    }
}

/// openraft's log storage for one replicated partition.
pub struct PartitionLogStore {
    shared: Rc<RefCell<Shared>>,
}

/// The replicated log as the rest of the shard sees it (the state machine, reads): the current
/// partition log and where each entry ends. Shares the store's state.
#[derive(Clone)]
pub struct ReplicaLog {
    shared: Rc<RefCell<Shared>>,
}

impl ReplicaLog {
    /// The partition log as it is now (a truncation replaces it).
    pub fn log(&self) -> Rc<PartitionLog> {
        self.shared.borrow().log.clone()
    }

    /// The base offset of the live entry at `index`.
    pub fn offset_of(&self, index: u64) -> Option<i64> {
        let shared = self.shared.borrow();
        let position = index.checked_sub(shared.meta.first_index?)?;
        shared
            .entries
            .get(position as usize)
            .map(|(offset, _)| *offset)
    }

    /// Has the readers handed out from now on (replication's: openraft makes the state
    /// machine's at its start) keep reads of entries far behind the last one, a lagging
    /// replica's catch-up, to `throttle`.
    pub fn throttle_catch_up(&self, throttle: Rc<RecoveryThrottle>) {
        self.shared.borrow_mut().throttle = Some(throttle);
    }

    /// Starts watching for the leader to place `batch` (the very bytes handed to Raft) in the
    /// log; the watch ends when dropped.
    pub fn watch_placement(&self, batch: &Bytes) -> PlacementWatch {
        let key = batch.as_ptr() as usize;
        let (sender, receiver) = local_channel::new_bounded(1);
        self.shared
            .borrow_mut()
            .placement_waiters
            .insert(key, sender);
        PlacementWatch {
            shared: Rc::clone(&self.shared),
            key,
            _batch: batch.clone(),
            receiver,
        }
    }

    /// The index of the last live entry that ends at or below `offset` (all of it below it),
    /// if any.
    pub fn last_index_ending_by(&self, offset: i64) -> Option<u64> {
        let shared = self.shared.borrow();
        let first = shared.meta.first_index?;
        // Entries starting below `offset`; the last of them ends at the next one's base.
        let starting_below = shared.entries.partition_point(|(base, _)| *base < offset);
        let last_end = shared
            .entries
            .get(starting_below)
            .map_or(shared.log.log_end_offset(), |(base, _)| *base);
        let whole = if last_end <= offset {
            starting_below
        } else {
            starting_below.checked_sub(1)?
        };
        let last = whole.checked_sub(1)?;
        Some(first + last as u64)
    }

    /// The log id of the entry at `index`, if it is live or the last one purged.
    pub fn log_id_at(&self, index: u64) -> Option<LogId> {
        let shared = self.shared.borrow();
        if let Some(purged) = shared.meta.last_purged
            && purged.index == index
        {
            return Some(purged);
        }
        let position = index.checked_sub(shared.meta.first_index?)?;
        let (_, term) = *shared.entries.get(position as usize)?;
        Some(LogId::new_term_index(term, index))
    }

    /// The last entry purged and where the live entries start (`None` before any purge).
    pub fn purged(&self) -> Option<(LogId, i64)> {
        let shared = self.shared.borrow();
        shared
            .meta
            .last_purged
            .map(|purged| (purged, shared.meta.first_offset))
    }

    /// Empties the log to start after `purged`, at `offset` (Kafka's reset of a replica its
    /// leader no longer holds the log for): every entry goes, the partition log is emptied to
    /// start at `offset`, and the next entry must be the one after `purged`. Crash-safe: the
    /// store's state says a restart is under way until it is done, and an open finishes it.
    pub async fn restart(&self, purged: LogId, offset: i64) -> io::Result<()> {
        {
            let mut shared = self.shared.borrow_mut();
            shared.meta = Meta {
                first_index: Some(purged.index + 1),
                first_offset: offset,
                last_purged: Some(purged),
                restarting: true,
            };
            shared.entries.clear();
        }
        save_meta(&self.shared).await?;
        let log = self.log().truncate_fully(offset).await.map_err(log_error)?;
        {
            let mut shared = self.shared.borrow_mut();
            shared.log = log;
            shared.meta.restarting = false;
        }
        save_meta(&self.shared).await
    }

    /// One past the last offset of the live entry at `index` (the next entry's base offset, or
    /// the log end for the last one).
    pub fn end_of(&self, index: u64) -> Option<i64> {
        let shared = self.shared.borrow();
        let position = index.checked_sub(shared.meta.first_index?)? as usize;
        if position >= shared.entries.len() {
            return None;
        }
        Some(
            shared
                .entries
                .get(position + 1)
                .map_or(shared.log.log_end_offset(), |(offset, _)| *offset),
        )
    }
}

/// A proposal's watch for where the leader placed its batch: the log and the append's outcome,
/// for waiting until the O_DIRECT write completed (acks=1).
pub struct PlacementWatch {
    shared: Rc<RefCell<Shared>>,
    key: usize,
    /// Keeps the batch's bytes, and so the key, from being reused while the watch lasts.
    _batch: Bytes,
    receiver: LocalReceiver<(Rc<PartitionLog>, AppendOutcome)>,
}

impl PlacementWatch {
    /// The log and outcome of the batch's append, once the store placed it; `None` if it never
    /// will (the store went away).
    pub async fn placed(&self) -> Option<(Rc<PartitionLog>, AppendOutcome)> {
        self.receiver.recv().await
    }
}

impl Drop for PlacementWatch {
    fn drop(&mut self) {
        self.shared.borrow_mut().placement_waiters.remove(&self.key);
    }
}

/// Reads entries and the vote (openraft's `RaftLogReader`).
pub struct PartitionLogReader {
    shared: Rc<RefCell<Shared>>,
    /// The catch-up bound, for a reader made for replication.
    throttle: Option<Rc<RecoveryThrottle>>,
}

fn other(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

fn log_error(error: LogError) -> io::Error {
    other(error)
}

impl PartitionLogStore {
    /// The store of the partition whose log is `log`, with the votes of its shard; `group`
    /// names the partition among that shard's groups (its directory name).
    pub async fn open(
        mut log: Rc<PartitionLog>,
        group: String,
        votes: ShardVotes<Vote>,
    ) -> io::Result<Self> {
        let meta = read_meta(log.dir()).await?;
        let mut meta = match meta {
            Some(meta) => meta,
            None if log.log_end_offset() > log.log_start_offset() => {
                return Err(other(format!(
                    "{} holds batches but no {META_FILE_NAME}: not a replicated log",
                    log.dir().display()
                )));
            }
            None => Meta {
                first_offset: log.log_end_offset(),
                ..Meta::default()
            },
        };
        if meta.restarting {
            // A restart the stop interrupted.
            log = log
                .truncate_fully(meta.first_offset)
                .await
                .map_err(log_error)?;
            meta.restarting = false;
            write_meta(log.dir(), &meta).await?;
        }
        let entries = scan_entries(&log, meta.first_offset).await?;
        if meta.first_index.is_none() && !entries.is_empty() {
            return Err(other(format!(
                "{}: {META_FILE_NAME} names no first entry but batches follow it",
                log.dir().display()
            )));
        }
        Ok(Self {
            shared: Rc::new(RefCell::new(Shared {
                log,
                group,
                votes,
                meta,
                entries,
                placement_waiters: HashMap::new(),
                throttle: None,
            })),
        })
    }

    /// The partition log as it is now (a truncation replaces it).
    pub fn log(&self) -> Rc<PartitionLog> {
        self.shared.borrow().log.clone()
    }

    /// The replicated log for the rest of the shard (state machine, reads).
    pub fn replica_log(&self) -> ReplicaLog {
        ReplicaLog {
            shared: self.shared.clone(),
        }
    }

    /// The base offset of the entry at `index`, if it is live.
    pub fn offset_of(&self, index: u64) -> Option<i64> {
        self.replica_log().offset_of(index)
    }

    async fn save_meta(&self) -> io::Result<()> {
        save_meta(&self.shared).await
    }

    /// Places `entries` at the log end; the last one's outcome, for waiting until it is durable.
    async fn append_entries(
        &mut self,
        entries: Vec<PartitionEntry>,
    ) -> io::Result<Option<(Rc<PartitionLog>, AppendOutcome)>> {
        let mut last = None;
        for entry in entries {
            let index = entry.index();
            let term = entry.log_id.leader_id.term;
            let next = self.shared.borrow().next_index();
            match next {
                None => {
                    let log_end = self.log().log_end_offset();
                    {
                        let mut shared = self.shared.borrow_mut();
                        shared.meta.first_index = Some(index);
                        shared.meta.first_offset = log_end;
                    }
                    self.save_meta().await?;
                }
                Some(next) if next != index => {
                    return Err(other(format!(
                        "entry {index} appended where entry {next} goes"
                    )));
                }
                Some(_) => {}
            }
            let epoch = i32::try_from(term)
                .map_err(|_| other(format!("term {term} does not fit a leader epoch")))?;
            let log = self.log();
            if epoch != log.leader_epoch() {
                log.begin_epoch(epoch).await.map_err(log_error)?;
            }
            let now_ms = crate::api::now_ms();
            let outcome = match entry.payload {
                EntryPayload::Normal(RecordBatch(batch)) => {
                    let header = record_batch::header(&batch).map_err(other)?;
                    let placed = header.base_offset.get() == log.log_end_offset()
                        && header.partition_leader_epoch.get() == epoch;
                    let waiter = self
                        .shared
                        .borrow_mut()
                        .placement_waiters
                        .remove(&(batch.as_ptr() as usize));
                    let appended = if placed {
                        log.append_replica(batch, now_ms)
                    } else {
                        log.append_entry(&batch, now_ms)
                    };
                    if let (Some(waiter), Ok(outcome)) = (waiter, &appended) {
                        let _ = waiter.try_send((Rc::clone(&log), outcome.clone()));
                    }
                    appended
                }
                EntryPayload::Blank => {
                    let batch = control_batch::build(
                        CONTROL_TYPE_RAFT_BLANK,
                        None,
                        RAFT_ENTRY_TIMESTAMP_MS,
                    );
                    log.append_entry(&batch, now_ms)
                }
                EntryPayload::Membership(membership) => {
                    let value = serde_json::to_vec(&membership).map_err(other)?;
                    let batch = control_batch::build(
                        CONTROL_TYPE_RAFT_MEMBERSHIP,
                        Some(&value),
                        RAFT_ENTRY_TIMESTAMP_MS,
                    );
                    log.append_entry(&batch, now_ms)
                }
            }
            .map_err(log_error)?;
            self.shared
                .borrow_mut()
                .entries
                .push_back((outcome.base_offset, term));
            last = Some((log, outcome));
        }
        Ok(last)
    }

    async fn cut_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let (cut_offset, kept) = {
            let shared = self.shared.borrow();
            let Some(first) = shared.meta.first_index else {
                return Ok(());
            };
            let keep_up_to = last_log_id.map_or(0, |log_id| log_id.index + 1);
            let kept = keep_up_to.saturating_sub(first) as usize;
            if kept >= shared.entries.len() {
                return Ok(());
            }
            let cut_offset = shared
                .entries
                .get(kept)
                .map_or(shared.meta.first_offset, |(offset, _)| *offset);
            (cut_offset, kept)
        };
        let log = self.log();
        let commit_limit = log.commit_limit();
        let log = log.truncate(cut_offset).await.map_err(log_error)?;
        // Raft never cuts committed entries; the reopened log keeps the readers' limit.
        log.set_commit_limit(commit_limit.min(cut_offset));
        let mut shared = self.shared.borrow_mut();
        shared.log = log;
        shared.entries.truncate(kept);
        Ok(())
    }

    async fn purge_upto(&mut self, log_id: LogId) -> io::Result<()> {
        let upto = log_id.index;
        let new_first_offset = {
            let shared = self.shared.borrow();
            match shared.meta.first_index {
                Some(first) if upto >= first => {
                    let dropped = (upto + 1 - first) as usize;
                    shared
                        .entries
                        .get(dropped)
                        .map_or(shared.log.log_end_offset(), |(offset, _)| *offset)
                }
                Some(_) => return Ok(()),
                None => shared.log.log_end_offset(),
            }
        };
        // The state first: a crash after it leaves batches below `first_offset`, which the
        // next open skips; the other order would leave `first_offset` below the log start.
        {
            let mut shared = self.shared.borrow_mut();
            let dropped = shared
                .meta
                .first_index
                .map_or(0, |first| (upto + 1 - first) as usize)
                .min(shared.entries.len());
            shared.entries.drain(..dropped);
            shared.meta.first_index = Some(upto + 1);
            shared.meta.first_offset = new_first_offset;
            shared.meta.last_purged = Some(log_id);
        }
        self.save_meta().await?;
        let log = self.log();
        wait_written(&log, new_first_offset).await?;
        log.delete_records(new_first_offset)
            .await
            .map_err(log_error)?;
        Ok(())
    }
}

/// Writes the store's state as it is now.
async fn save_meta(shared: &RefCell<Shared>) -> io::Result<()> {
    let (dir, meta) = {
        let shared = shared.borrow();
        (shared.log.dir().to_path_buf(), shared.meta.clone())
    };
    write_meta(&dir, &meta).await
}

async fn write_meta(dir: &Path, meta: &Meta) -> io::Result<()> {
    let body = serde_json::to_vec(meta).map_err(other)?;
    let path = dir.join(META_FILE_NAME);
    glommio::executor()
        .spawn_blocking(move || crc_sealed::write_file(&path, body))
        .await
}

/// Waits until the log's writes reach `offset` (entries appended, write pending).
async fn wait_written(log: &PartitionLog, offset: i64) -> io::Result<()> {
    loop {
        let listener = log.changed();
        log.health().map_err(log_error)?;
        if log.written_end() >= offset {
            return Ok(());
        }
        listener.await;
    }
}

/// The base offset and term of every batch from `first_offset` to the log end.
async fn scan_entries(log: &PartitionLog, first_offset: i64) -> io::Result<VecDeque<(i64, u64)>> {
    let batches = log.batch_epochs(first_offset).await.map_err(log_error)?;
    batches
        .into_iter()
        .map(|(base_offset, epoch)| Ok((base_offset, u64::try_from(epoch).map_err(other)?)))
        .collect()
}

async fn read_meta(dir: &Path) -> io::Result<Option<Meta>> {
    let path = dir.join(META_FILE_NAME);
    let read_path = path.clone();
    let body = glommio::executor()
        .spawn_blocking(move || crc_sealed::read_file(&read_path))
        .await?;
    body.map(|body| {
        serde_json::from_slice(&body).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is damaged: {error}", path.display()),
            )
        })
    })
    .transpose()
}

/// The entry a stored batch is.
fn entry_of(batch: Bytes, log_id: LogId) -> io::Result<PartitionEntry> {
    let payload = match control_batch::parse(&batch).map_err(other)? {
        None => EntryPayload::Normal(RecordBatch(batch)),
        Some(ControlRecord {
            control_type: CONTROL_TYPE_RAFT_BLANK,
            ..
        }) => EntryPayload::Blank,
        Some(ControlRecord {
            control_type: CONTROL_TYPE_RAFT_MEMBERSHIP,
            value: Some(value),
        }) => EntryPayload::Membership(serde_json::from_slice(&value).map_err(other)?),
        // The leader's log-start decisions are normal entries the state machine reads.
        Some(ControlRecord {
            control_type: CONTROL_TYPE_LOG_START,
            ..
        }) => EntryPayload::Normal(RecordBatch(batch)),
        Some(record) => {
            return Err(other(format!(
                "control batch of type {} is no Raft entry",
                record.control_type
            )));
        }
    };
    Ok(PartitionEntry { log_id, payload })
}

impl RaftLogReader<PartitionRaft> for PartitionLogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<PartitionEntry>, io::Error> {
        let (log, wanted, catching_up) = {
            let shared = self.shared.borrow();
            let Some(first) = shared.meta.first_index else {
                return Ok(Vec::new());
            };
            let next = first + shared.entries.len() as u64;
            let start = match range.start_bound() {
                Bound::Included(&start) => start,
                Bound::Excluded(&start) => start + 1,
                Bound::Unbounded => first,
            }
            .max(first);
            let end = match range.end_bound() {
                Bound::Included(&end) => end + 1,
                Bound::Excluded(&end) => end,
                Bound::Unbounded => next,
            }
            .min(next);
            if start >= end {
                return Ok(Vec::new());
            }
            let wanted: Vec<(u64, i64, u64)> = (start..end)
                .map(|index| {
                    let (offset, term) = shared.entries[(index - first) as usize];
                    (index, offset, term)
                })
                .collect();
            let catching_up = next - start > CATCH_UP_ENTRIES_BEHIND;
            (shared.log.clone(), wanted, catching_up)
        };
        let last_offset = wanted.last().map_or(0, |(_, offset, _)| *offset);
        wait_written(&log, last_offset + 1).await?;
        let mut out = Vec::with_capacity(wanted.len());
        let mut next = 0;
        let mut offset = wanted[0].1;
        while next < wanted.len() {
            let chunks = log
                .read_written(offset, READ_STEP_BYTES)
                .await
                .map_err(log_error)?;
            let before = next;
            for batch in BatchIter::new(Bytes::from(chunks.concat())) {
                let batch = batch.map_err(other)?;
                let header = record_batch::header(&batch).map_err(other)?;
                let base_offset = header.base_offset.get();
                let Some(&(index, expected, term)) = wanted.get(next) else {
                    break;
                };
                if base_offset < expected {
                    continue;
                }
                if base_offset != expected {
                    return Err(other(format!(
                        "entry {index} should start at offset {expected}, found {base_offset}"
                    )));
                }
                offset = base_offset + i64::from(header.last_offset_delta.get()) + 1;
                out.push(entry_of(batch, LogId::new_term_index(term, index))?);
                next += 1;
            }
            if next == before {
                return Err(other(format!("no batch found at offset {offset}")));
            }
        }
        if let Some(throttle) = self.throttle.as_ref().filter(|_| catching_up) {
            let bytes = out
                .iter()
                .map(|entry| match &entry.payload {
                    EntryPayload::Normal(RecordBatch(batch)) => batch.len(),
                    _ => 0,
                })
                .sum();
            throttle.take(bytes).await;
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        let shared = self.shared.borrow();
        Ok(shared.votes.get(&shared.group))
    }
}

impl RaftLogStorage<PartitionRaft> for PartitionLogStore {
    type LogReader = PartitionLogReader;

    async fn get_log_state(&mut self) -> Result<LogState<PartitionRaft>, io::Error> {
        let shared = self.shared.borrow();
        let last_purged_log_id = shared.meta.last_purged;
        let last_log_id = shared.last_log_id().or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        PartitionLogReader {
            shared: self.shared.clone(),
            throttle: self.shared.borrow().throttle.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let (votes, group) = {
            let shared = self.shared.borrow();
            (shared.votes.clone(), shared.group.clone())
        };
        votes.save(&group, *vote).await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<PartitionRaft>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = PartitionEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        match self.append_entries(entries.into_iter().collect()).await {
            // openraft goes on (and hands over more entries, which share fdatasyncs) while
            // these are written; it counts them only once the callback says they are durable.
            Ok(Some((log, outcome))) => {
                glommio::spawn_local(async move {
                    let durable = log.wait_durable(&outcome).await.map_err(log_error);
                    callback.io_completed(durable);
                })
                .detach();
                Ok(())
            }
            Ok(None) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.io_completed(Err(io::Error::new(error.kind(), error.to_string())));
                Err(error)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.cut_after(last_log_id).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.purge_upto(log_id).await
    }
}
