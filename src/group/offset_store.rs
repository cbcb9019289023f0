//! The per-shard offset store: `DATA_DIR/__groups/shard-<id>/offsets.log`, an append-only,
//! checksummed log of committed offsets and their deletions, for the groups this shard
//! coordinates.
//!
//! Record format, little-endian: `u32 payload_bytes`, `u32 crc32c(payload)`, payload. The payload
//! is a kind byte, the group, topic and partition, and for a commit the offset, leader epoch,
//! commit time and metadata. The file is preallocated, so a zero length marks its end.
//!
//! Guarantees: `append` returns only after its records are written (O_DIRECT) and fdatasync'ed,
//! so a commit that was answered survives a crash. Appends that arrive while a write is in flight
//! share the next write and fdatasync (group commit), and reach the file in call order. One
//! write is in flight at a time and carries at most `WRITE_BYTES_MAX` bytes of whole records
//! after the rewritten partial block. A failed write or fdatasync poisons the store: it is never
//! retried (the kernel may have dropped the dirty pages), and every later append fails until
//! the broker restarts.
//!
//! Torn tail or corruption: a crash tears at most the one write in flight, which starts at most
//! one block before the first damaged record and covers at most `WRITE_BYTES_MAX` plus two
//! blocks (the rewritten partial block and the padding); beyond the data the file holds only
//! preallocated zeros. So replay stops at the first damaged record and looks for a valid record
//! starting `TORN_WRITE_REACH_BYTES` or more after it: none means a torn tail (commits nobody was
//! told about), which is dropped; one means acknowledged commits were damaged, and the load fails
//! with [`OffsetStoreError::Corrupt`] naming the file and positions. Start-up checks every store
//! first ([`check_stores`]) and refuses to start, or with `--unsafe-truncate-corrupt-offsets`
//! cuts the store at the damage. Damage with valid records only within that reach is cut like a
//! torn tail: it cannot be told apart from one.
//!
//! Compaction: at open, the log is compacted to the live offsets and replaced atomically (temp
//! file, fdatasync, rename, directory fsync). While running, once the file holds at least
//! `COMPACTION_BYTES_MIN` and at least half its records are dead (overwritten or deleted), the
//! live records are compacted again off the executor, on glommio's blocking pool, from a
//! durable prefix of the file, into a temp file; the records written meanwhile are appended to
//! it, then it is fdatasync'ed and renamed over the log between two writes (appends wait only
//! for that switch). The old file stays the store, complete and valid, until the rename: a crash
//! at any point leaves either the old or the new file, each holding every acknowledged commit,
//! and a leftover temp file is removed at the next open.
//! Callers must not: open two stores on one directory.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::channels::local_channel::{self, LocalSender};

use crate::config::BLOCK_BYTES;
use crate::io::{DirectFile, align_down, align_up};
use crate::le_cursor::LeCursor;
use crate::meta::metadata_log::write_file_atomically;
use crate::protocol::record_batch::crc32c;

use super::classic_group::{MemberRecord, Membership};
use super::offset_compaction::{
    CompactionFailure, PreparedCompaction, finish_compaction, prepare_compaction,
};

/// The directory of all shards' offset stores under the data dir.
pub const GROUPS_DIR_NAME: &str = "__groups";
pub(super) const LOG_FILE_NAME: &str = "offsets.log";
/// The temp file a running compaction writes; renamed over the log when complete.
pub(super) const COMPACTION_FILE_NAME: &str = "offsets.compacting";
/// The temp file of the compaction at open (`write_file_atomically`'s name for the log).
const OPEN_COMPACTION_FILE_NAME: &str = "offsets.tmp";
const RECORD_HEADER_BYTES: usize = 8;
/// Preallocation step: O_DIRECT writes must stay below the file size (src/io/direct_file.rs).
const PREALLOCATE_STEP_BYTES: u64 = 1024 * 1024;
/// Largest record written or read back: group id, topic and 4 KiB of metadata fit many times
/// over; a bigger record is refused at append (a load would take it for damage), and a corrupt
/// length cannot make a load allocate more.
pub(super) const RECORD_BYTES_MAX: usize = 1024 * 1024;
/// Bytes of records in one write: bounds how far a torn write can reach past the damage it
/// leaves, and so how close to damage a valid record must be to count as torn. Holds one
/// record of `RECORD_BYTES_MAX`, and ~17k typical commits per fdatasync.
const WRITE_BYTES_MAX: usize = RECORD_BYTES_MAX;
/// How far after the first damaged record the write torn by a crash can have reached.
const TORN_WRITE_REACH_BYTES: usize = WRITE_BYTES_MAX + 2 * BLOCK_BYTES as usize;
/// File size below which the store is not compacted while running: compaction rewrites the
/// live records, so it waits until it frees a useful amount (the file is compacted at every
/// open anyway).
const COMPACTION_BYTES_MIN: u64 = 16 * 1024 * 1024;
/// Records written while a running compaction works that are kept for it; beyond this the
/// compaction is abandoned (retried after a later write), so a stalled compaction cannot
/// make the store hold an unbounded copy of the commits.
const COMPACTION_CATCH_UP_BYTES_MAX: usize = 64 * 1024 * 1024;

const KIND_COMMIT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_MEMBERSHIP: u8 = 3;

/// A committed offset of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will consume.
    pub offset: i64,
    /// The leader epoch of the record before `offset`, or -1.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: Option<String>,
    /// When the commit was made, in ms since the epoch.
    pub commit_timestamp_ms: i64,
}

/// One change to the stored offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetRecord {
    /// A group committed an offset for a partition.
    Commit {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition index.
        partition: i32,
        /// The committed value.
        value: CommittedOffset,
    },
    /// A partition's committed offset was deleted (OffsetDelete, DeleteGroups, topic deletion).
    Delete {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition index.
        partition: i32,
    },
    /// A group became Stable with these members (written to the offsets topic only; a local
    /// store never holds one).
    Membership {
        /// The group.
        group: String,
        /// Its generation and members.
        membership: Membership,
    },
}

/// Committed offsets by group, then by (topic, partition).
pub type StoredOffsets = BTreeMap<String, HashMap<(String, i32), CommittedOffset>>;

/// Failures of the offset store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OffsetStoreError {
    /// The file system refused.
    #[error("offset store {path}: {reason}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// An earlier write or fdatasync failed; nothing more is written.
    #[error("offset store poisoned by an earlier failure: {0}")]
    Poisoned(String),
    /// A damaged record is followed by valid ones: acknowledged commits were damaged.
    #[error(
        "offset store {path} is corrupt: damaged record at file position {file_position}, valid \
         record after it at file position {valid_position}; refusing to start (cutting the store \
         there would drop the committed offsets after it). Restore the file, or start with \
         --unsafe-truncate-corrupt-offsets to cut it at file position {file_position}"
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// Where the first damaged record starts.
        file_position: u64,
        /// Where a valid record after it starts.
        valid_position: u64,
    },
    /// One record would exceed `RECORD_BYTES_MAX` (a huge group id); nothing was written.
    #[error("an offset record of {0} bytes is larger than the store accepts")]
    RecordTooLarge(usize),
}

/// Where appends stand: the logical end, the bytes of its partial last block, the queue, and
/// what compaction needs to know.
struct WriteState {
    end_position: u64,
    tail: Vec<u8>,
    allocated_bytes: u64,
    /// Encoded records not written yet, in call order.
    pending: Vec<u8>,
    /// Bytes ever queued and ever made durable: a waiter is answered once `durable_bytes`
    /// reaches the `queued_bytes` its records ended at.
    queued_bytes: u64,
    durable_bytes: u64,
    waiters: VecDeque<(u64, LocalSender<Result<(), OffsetStoreError>>)>,
    flushing: bool,
    poisoned: Option<String>,
    /// Records in the current file, live or dead.
    records_in_file: u64,
    /// Hashes of the (group, topic, partition) keys with a committed offset: the live records.
    live_keys: HashSet<u64>,
    compaction: Option<RunningCompaction>,
}

/// A running compaction: the records made durable in the old file after its snapshot, which
/// the new file must also get, and the result once the blocking pool has it.
struct RunningCompaction {
    catch_up: Vec<u8>,
    catch_up_records: u64,
    abandoned: bool,
    prepared: Option<PreparedCompaction>,
}

/// One shard's offset log, open for appending.
pub struct OffsetStore {
    /// The current file; replaced (between writes) when a compaction is installed.
    file: RefCell<Rc<DirectFile>>,
    path: PathBuf,
    compaction_bytes_min: u64,
    state: RefCell<WriteState>,
}

impl OffsetStore {
    /// Loads, compacts and opens the store in `dir` (created if missing). Offsets of the topics
    /// in `deleted_topics` are dropped: their deletion is recorded in the metadata log.
    pub async fn open(
        dir: PathBuf,
        deleted_topics: HashSet<String>,
    ) -> Result<(Rc<Self>, StoredOffsets), OffsetStoreError> {
        Self::open_compacting_at(dir, deleted_topics, COMPACTION_BYTES_MIN).await
    }

    /// `open`, compacting while running once the file reaches `compaction_bytes_min`.
    async fn open_compacting_at(
        dir: PathBuf,
        deleted_topics: HashSet<String>,
        compaction_bytes_min: u64,
    ) -> Result<(Rc<Self>, StoredOffsets), OffsetStoreError> {
        let path = dir.join(LOG_FILE_NAME);
        let load_path = path.clone();
        // Reading and the atomic rewrite use std::fs: run them on the blocking pool so the
        // executor never waits on the file system.
        let (offsets, compacted_bytes) = glommio::executor()
            .spawn_blocking(move || load_and_compact(&dir, &load_path, &deleted_topics))
            .await?;
        let io = |error: std::io::Error| OffsetStoreError::Io {
            path: path.clone(),
            reason: error.to_string(),
        };
        let file = DirectFile::open(&path).await.map_err(io)?;
        let end_position = compacted_bytes.len() as u64;
        let allocated_bytes = align_up(end_position) + PREALLOCATE_STEP_BYTES;
        file.pre_allocate(allocated_bytes).await.map_err(io)?;
        let tail = compacted_bytes[align_down(end_position) as usize..].to_vec();
        let live_keys: HashSet<u64> = offsets
            .iter()
            .flat_map(|(group, partitions)| {
                partitions
                    .keys()
                    .map(move |(topic, partition)| key_hash(group, topic, *partition))
            })
            .collect();
        let store = Rc::new(Self {
            file: RefCell::new(Rc::new(file)),
            path,
            compaction_bytes_min,
            state: RefCell::new(WriteState {
                end_position,
                tail,
                allocated_bytes,
                pending: Vec::new(),
                queued_bytes: 0,
                durable_bytes: 0,
                waiters: VecDeque::new(),
                flushing: false,
                poisoned: None,
                records_in_file: live_keys.len() as u64,
                live_keys,
                compaction: None,
            }),
        });
        Ok((store, offsets))
    }

    /// Appends records and returns once they are durable.
    pub async fn append(self: &Rc<Self>, records: &[OffsetRecord]) -> Result<(), OffsetStoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::new();
        for record in records {
            let before = encoded.len();
            encode_record(record, &mut encoded);
            let record_bytes = encoded.len() - before;
            if record_bytes > RECORD_BYTES_MAX {
                return Err(OffsetStoreError::RecordTooLarge(record_bytes));
            }
        }
        let (sender, receiver) = local_channel::new_bounded(1);
        let start_flush = {
            let mut state = self.state.borrow_mut();
            if let Some(reason) = &state.poisoned {
                return Err(OffsetStoreError::Poisoned(reason.clone()));
            }
            for record in records {
                track_liveness(&mut state.live_keys, record);
            }
            state.pending.extend_from_slice(&encoded);
            state.queued_bytes += encoded.len() as u64;
            let queued_bytes = state.queued_bytes;
            state.waiters.push_back((queued_bytes, sender));
            !std::mem::replace(&mut state.flushing, true)
        };
        if start_flush {
            // A task of its own: the flush must go on even if this caller is dropped (its
            // client disconnected), or the appends queued behind it would wait forever.
            glommio::spawn_local(Rc::clone(self).flush_loop()).detach();
        }
        match receiver.recv().await {
            Some(result) => result,
            None => Err(OffsetStoreError::Poisoned("flush task ended".into())),
        }
    }

    /// Writes and syncs queued records until the queue is empty, installing a prepared
    /// compaction between two writes. Runs while `flushing` is set, alone.
    async fn flush_loop(self: Rc<Self>) {
        loop {
            let prepared = {
                let mut state = self.state.borrow_mut();
                state
                    .compaction
                    .as_mut()
                    .and_then(|compaction| compaction.prepared.take())
            };
            if let Some(prepared) = prepared {
                self.install_compaction(prepared).await;
            }
            let (bytes, records, end_position, tail) = {
                let mut state = self.state.borrow_mut();
                if state.pending.is_empty() || state.poisoned.is_some() {
                    state.flushing = false;
                    return;
                }
                let (chunk_bytes, records) = write_chunk_bytes(&state.pending);
                let rest = state.pending.split_off(chunk_bytes);
                let bytes = std::mem::replace(&mut state.pending, rest);
                (bytes, records, state.end_position, state.tail.clone())
            };
            let result = self.write_synced(&bytes, end_position, &tail).await;
            match result {
                Ok(()) => self.on_written(bytes, records, tail),
                Err(error) => {
                    tracing::error!(%error, "offset store write failed; poisoning it");
                    self.poison(error.to_string());
                    return;
                }
            }
        }
    }

    /// Records a durable write: the new end and tail, answered waiters, compaction state.
    fn on_written(self: &Rc<Self>, bytes: Vec<u8>, records: u64, tail: Vec<u8>) {
        let mut state = self.state.borrow_mut();
        state.end_position += bytes.len() as u64;
        state.durable_bytes += bytes.len() as u64;
        state.records_in_file += records;
        let mut joined = tail;
        joined.extend_from_slice(&bytes);
        let keep_from = joined.len() - (state.end_position % BLOCK_BYTES) as usize;
        state.tail = joined.split_off(keep_from);
        if let Some(compaction) = state.compaction.as_mut() {
            if compaction.catch_up.len() + bytes.len() > COMPACTION_CATCH_UP_BYTES_MAX {
                compaction.abandoned = true;
                compaction.catch_up = Vec::new();
            } else if !compaction.abandoned {
                compaction.catch_up.extend_from_slice(&bytes);
                compaction.catch_up_records += records;
            }
        }
        while let Some((queued_bytes, _)) = state.waiters.front() {
            if *queued_bytes > state.durable_bytes {
                break;
            }
            if let Some((_, waiter)) = state.waiters.pop_front() {
                let _ = waiter.try_send(Ok(()));
            }
        }
        let due = state.compaction.is_none()
            && state.end_position >= self.compaction_bytes_min
            && state.records_in_file >= 2 * state.live_keys.len() as u64;
        if due {
            state.compaction = Some(RunningCompaction {
                catch_up: Vec::new(),
                catch_up_records: 0,
                abandoned: false,
                prepared: None,
            });
            let snapshot_end = state.end_position;
            drop(state);
            glommio::spawn_local(Rc::clone(self).compact(snapshot_end)).detach();
        }
    }

    /// Poisons the store and fails every queued append.
    fn poison(&self, reason: String) {
        let mut state = self.state.borrow_mut();
        state.poisoned = Some(reason.clone());
        state.pending.clear();
        state.flushing = false;
        for (_, waiter) in state.waiters.drain(..) {
            let _ = waiter.try_send(Err(OffsetStoreError::Poisoned(reason.clone())));
        }
    }

    /// Compacts the file's first `snapshot_end` bytes (all durable) into the temp file on the
    /// blocking pool, then hands the result to the flush loop to install.
    async fn compact(self: Rc<Self>, snapshot_end: u64) {
        let path = self.path.clone();
        let result = glommio::executor()
            .spawn_blocking(move || prepare_compaction(&path, snapshot_end))
            .await;
        let start_flush = {
            let mut state = self.state.borrow_mut();
            let usable = state.poisoned.is_none()
                && state
                    .compaction
                    .as_ref()
                    .is_some_and(|compaction| !compaction.abandoned);
            match result {
                Ok(prepared) if usable => {
                    if let Some(compaction) = state.compaction.as_mut() {
                        compaction.prepared = Some(prepared);
                    }
                    !std::mem::replace(&mut state.flushing, true)
                }
                Ok(_) => {
                    tracing::warn!(path = %self.path.display(), "offset store compaction abandoned");
                    state.compaction = None;
                    false
                }
                Err(error) => {
                    tracing::warn!(%error, "offset store compaction failed; the store is unchanged");
                    state.compaction = None;
                    false
                }
            }
        };
        if start_flush {
            glommio::spawn_local(Rc::clone(&self).flush_loop()).detach();
        }
    }

    /// Appends the records written since the snapshot to the prepared file, renames it over
    /// the log and switches to it. Runs in the flush loop, so no write is in flight. Before the
    /// rename a failure leaves the old file in use; after it, the old file is gone from the
    /// directory and a failure poisons the store.
    async fn install_compaction(self: &Rc<Self>, prepared: PreparedCompaction) {
        let Some(compaction) = self.state.borrow_mut().compaction.take() else {
            return;
        };
        if compaction.abandoned {
            // Its catch-up records were dropped: the new file would miss them.
            tracing::warn!(path = %self.path.display(), "offset store compaction abandoned");
            return;
        }
        let path = self.path.clone();
        let catch_up = compaction.catch_up;
        let records = prepared.records + compaction.catch_up_records;
        let installed = glommio::executor()
            .spawn_blocking(move || finish_compaction(&prepared, &path, &catch_up))
            .await;
        let (len_bytes, tail) = match installed {
            Ok(done) => done,
            Err(CompactionFailure::BeforeRename(error)) => {
                tracing::warn!(%error, "offset store compaction failed; the store is unchanged");
                return;
            }
            Err(CompactionFailure::AfterRename(error)) => {
                tracing::error!(%error, "offset store compaction failed after its rename; poisoning the store");
                self.poison(error.to_string());
                return;
            }
        };
        let io = |error: std::io::Error| error.to_string();
        let allocated_bytes = align_up(len_bytes) + PREALLOCATE_STEP_BYTES;
        let opened = async {
            let file = DirectFile::open(&self.path).await.map_err(io)?;
            file.pre_allocate(allocated_bytes).await.map_err(io)?;
            Ok::<_, String>(file)
        }
        .await;
        let file = match opened {
            Ok(file) => file,
            Err(error) => {
                tracing::error!(%error, "reopening the compacted offset store failed; poisoning it");
                self.poison(error);
                return;
            }
        };
        let old = std::mem::replace(&mut *self.file.borrow_mut(), Rc::new(file));
        {
            let mut state = self.state.borrow_mut();
            state.end_position = len_bytes;
            state.tail = tail;
            state.allocated_bytes = allocated_bytes;
            state.records_in_file = records;
        }
        tracing::info!(path = %self.path.display(), len_bytes, records, "offset store compacted");
        if let Ok(old) = Rc::try_unwrap(old)
            && let Err(error) = old.close().await
        {
            tracing::warn!(%error, "closing the offset store's old file failed");
        }
    }

    /// Rewrites the partial last block with the new bytes after it, then fdatasyncs. Only one
    /// write is ever in flight, so two writes never cover the same block.
    async fn write_synced(
        &self,
        bytes: &[u8],
        end_position: u64,
        tail: &[u8],
    ) -> Result<(), OffsetStoreError> {
        let file = Rc::clone(&self.file.borrow());
        let io = |error: std::io::Error| OffsetStoreError::Io {
            path: self.path.clone(),
            reason: error.to_string(),
        };
        let new_end = end_position + bytes.len() as u64;
        let allocated_bytes = self.state.borrow().allocated_bytes;
        if align_up(new_end) > allocated_bytes {
            let grown = align_up(new_end) + PREALLOCATE_STEP_BYTES;
            file.pre_allocate(grown).await.map_err(io)?;
            self.state.borrow_mut().allocated_bytes = grown;
        }
        let len_bytes = tail.len() + bytes.len();
        let mut buffer = file.alloc_buffer(len_bytes);
        let out = buffer.as_bytes_mut();
        out[..tail.len()].copy_from_slice(tail);
        out[tail.len()..len_bytes].copy_from_slice(bytes);
        // Zero padding: a zero length after the last record is how a load finds the end.
        out[len_bytes..].fill(0);
        file.write_at(buffer, align_down(end_position))
            .await
            .map_err(io)?;
        file.fdatasync().await.map_err(io)
    }
}

/// The whole records at the front of `pending` that one write takes: as many as fit in
/// `WRITE_BYTES_MAX` (at least one). Returns their bytes and count.
fn write_chunk_bytes(pending: &[u8]) -> (usize, u64) {
    let mut position = 0;
    let mut records = 0;
    while position + RECORD_HEADER_BYTES <= pending.len() {
        let header = &pending[position..position + 4];
        let payload_bytes = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let record_bytes = RECORD_HEADER_BYTES + payload_bytes as usize;
        if records > 0 && position + record_bytes > WRITE_BYTES_MAX {
            break;
        }
        position += record_bytes;
        records += 1;
    }
    (position, records)
}

/// The hash of a (group, topic, partition) key, for counting live records.
fn key_hash(group: &str, topic: &str, partition: i32) -> u64 {
    let mut hasher = DefaultHasher::new();
    (group, topic, partition).hash(&mut hasher);
    hasher.finish()
}

/// Updates the live keys for one record.
fn track_liveness(live_keys: &mut HashSet<u64>, record: &OffsetRecord) {
    match record {
        OffsetRecord::Commit {
            group,
            topic,
            partition,
            ..
        } => {
            live_keys.insert(key_hash(group, topic, *partition));
        }
        OffsetRecord::Delete {
            group,
            topic,
            partition,
        } => {
            live_keys.remove(&key_hash(group, topic, *partition));
        }
        OffsetRecord::Membership { .. } => {}
    }
}

/// Checks every shard's offset store under `data_dir` before the shards start: a corrupt one
/// (damage followed by valid records) is an error, or with `truncate_corrupt` is cut at the
/// damage. A torn tail is left for the store's own load to drop. Blocking.
pub fn check_stores(data_dir: &Path, truncate_corrupt: bool) -> Result<(), OffsetStoreError> {
    let groups_dir = data_dir.join(GROUPS_DIR_NAME);
    let io = |path: &Path, error: std::io::Error| OffsetStoreError::Io {
        path: path.to_owned(),
        reason: error.to_string(),
    };
    let entries = match std::fs::read_dir(&groups_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io(&groups_dir, error)),
    };
    for entry in entries {
        let path = entry
            .map_err(|error| io(&groups_dir, error))?
            .path()
            .join(LOG_FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => continue,
            Err(error) => return Err(io(&path, error)),
        };
        let replayed = replay(&bytes);
        let Some(error) = replayed.corruption(&path) else {
            continue;
        };
        if !truncate_corrupt {
            return Err(error);
        }
        tracing::error!(%error, "cutting the corrupt offset store as --unsafe-truncate-corrupt-offsets asks");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|error| io(&path, error))?;
        file.set_len(replayed.end_position as u64)
            .and_then(|()| file.sync_all())
            .map_err(|error| io(&path, error))?;
    }
    Ok(())
}

/// Reads the log (creating the directory if missing), keeps the live offsets, and replaces the
/// file with their compacted records. Corruption is an error here: only start-up's check may
/// cut a store. Blocking.
fn load_and_compact(
    dir: &Path,
    path: &Path,
    deleted_topics: &HashSet<String>,
) -> Result<(StoredOffsets, Vec<u8>), OffsetStoreError> {
    let io = |path: &Path, error: std::io::Error| OffsetStoreError::Io {
        path: path.to_owned(),
        reason: error.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|error| io(dir, error))?;
    for leftover in [COMPACTION_FILE_NAME, OPEN_COMPACTION_FILE_NAME] {
        match std::fs::remove_file(dir.join(leftover)) {
            Ok(()) => tracing::info!(file = leftover, "removed an interrupted compaction's file"),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(&dir.join(leftover), error)),
        }
    }
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(io(path, error)),
    };
    let replayed = replay(&bytes);
    if let Some(error) = replayed.corruption(path) {
        return Err(error);
    }
    if replayed.end_position < bytes.len() && bytes[replayed.end_position..].iter().any(|&b| b != 0)
    {
        tracing::warn!(
            path = %path.display(),
            file_position = replayed.end_position,
            "offset store has a torn tail (nothing valid after it); dropping it"
        );
    }
    let mut offsets = replayed.offsets;
    for group_offsets in offsets.values_mut() {
        group_offsets.retain(|(topic, _), _| !deleted_topics.contains(topic));
    }
    offsets.retain(|_, group_offsets| !group_offsets.is_empty());
    let compacted = compact(&offsets);
    tracing::info!(
        path = %path.display(),
        records = replayed.records,
        groups = offsets.len(),
        kept_bytes = compacted.len(),
        "offset store loaded and compacted"
    );
    write_file_atomically(path, &compacted).map_err(|error| io(path, error))?;
    Ok((offsets, compacted))
}

/// What a replay of the log's bytes found.
pub(super) struct Replayed {
    pub(super) offsets: StoredOffsets,
    records: usize,
    /// Where the intact records end.
    pub(super) end_position: usize,
    /// Where a valid record starts beyond a torn write's reach from the damage, if one does.
    valid_position_after_damage: Option<usize>,
}

impl Replayed {
    /// The corruption error, if the damage is followed by a valid record.
    fn corruption(&self, path: &Path) -> Option<OffsetStoreError> {
        let valid_position = self.valid_position_after_damage?;
        Some(OffsetStoreError::Corrupt {
            path: path.to_owned(),
            file_position: self.end_position as u64,
            valid_position: valid_position as u64,
        })
    }
}

/// Replays every intact record up to the first damaged one (or the zeroed end), and looks for
/// a valid record beyond a torn write's reach after it (every byte position: records are not
/// aligned; zeros fail at the length check).
pub(super) fn replay(bytes: &[u8]) -> Replayed {
    let mut offsets = StoredOffsets::new();
    let mut position = 0;
    let mut records = 0;
    while let Some((record, next)) = decode_record(bytes, position) {
        apply(&mut offsets, record);
        position = next;
        records += 1;
    }
    let valid_position_after_damage = (position + TORN_WRITE_REACH_BYTES..bytes.len())
        .find(|&candidate| decode_record(bytes, candidate).is_some());
    Replayed {
        offsets,
        records,
        end_position: position,
        valid_position_after_damage,
    }
}

/// Applies one record to a set of offsets.
pub fn apply(offsets: &mut StoredOffsets, record: OffsetRecord) {
    match record {
        OffsetRecord::Commit {
            group,
            topic,
            partition,
            value,
        } => {
            offsets
                .entry(group)
                .or_default()
                .insert((topic, partition), value);
        }
        OffsetRecord::Delete {
            group,
            topic,
            partition,
        } => {
            if let Some(group_offsets) = offsets.get_mut(&group) {
                group_offsets.remove(&(topic, partition));
                if group_offsets.is_empty() {
                    offsets.remove(&group);
                }
            }
        }
        OffsetRecord::Membership { .. } => {}
    }
}

pub(super) fn compact(offsets: &StoredOffsets) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (group, group_offsets) in offsets {
        for ((topic, partition), value) in group_offsets {
            let record = OffsetRecord::Commit {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                value: value.clone(),
            };
            encode_record(&record, &mut bytes);
        }
    }
    bytes
}

/// Appends one record (header included) to `out`.
pub fn encode_record(record: &OffsetRecord, out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(64);
    match record {
        OffsetRecord::Commit {
            group,
            topic,
            partition,
            value,
        } => {
            payload.push(KIND_COMMIT);
            put_key(&mut payload, group, topic, *partition);
            payload.extend_from_slice(&value.offset.to_le_bytes());
            payload.extend_from_slice(&value.leader_epoch.to_le_bytes());
            payload.extend_from_slice(&value.commit_timestamp_ms.to_le_bytes());
            match &value.metadata {
                Some(metadata) => put_string(&mut payload, metadata),
                None => payload.extend_from_slice(&u32::MAX.to_le_bytes()),
            }
        }
        OffsetRecord::Delete {
            group,
            topic,
            partition,
        } => {
            payload.push(KIND_DELETE);
            put_key(&mut payload, group, topic, *partition);
        }
        OffsetRecord::Membership { group, membership } => {
            payload.push(KIND_MEMBERSHIP);
            put_string(&mut payload, group);
            put_membership(&mut payload, membership);
        }
    }
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

fn put_key(out: &mut Vec<u8>, group: &str, topic: &str, partition: i32) {
    put_string(out, group);
    put_string(out, topic);
    out.extend_from_slice(&partition.to_le_bytes());
}

fn put_membership(out: &mut Vec<u8>, membership: &Membership) {
    out.extend_from_slice(&membership.generation_id.to_le_bytes());
    put_string(out, &membership.protocol_type);
    put_string(out, &membership.protocol_name);
    put_string(out, &membership.leader);
    out.extend_from_slice(&(membership.members.len() as u32).to_le_bytes());
    for member in &membership.members {
        put_string(out, &member.member_id);
        put_nullable_string(out, member.group_instance_id.as_deref());
        put_string(out, &member.client_id);
        put_string(out, &member.client_host);
        out.extend_from_slice(&member.session_timeout_ms.to_le_bytes());
        out.extend_from_slice(&member.rebalance_timeout_ms.to_le_bytes());
        put_bytes(out, &member.metadata);
        put_bytes(out, &member.assignment);
    }
}

fn put_nullable_string(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => put_string(out, text),
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Decodes `bytes` as exactly one record (header included); `None` if it is anything else.
pub fn decode_whole_record(bytes: &[u8]) -> Option<OffsetRecord> {
    let (record, end) = decode_record(bytes, 0)?;
    (end == bytes.len()).then_some(record)
}

/// Decodes the record at `position`; `None` at the end or at the first damaged record.
fn decode_record(bytes: &[u8], position: usize) -> Option<(OffsetRecord, usize)> {
    let header = bytes.get(position..position.checked_add(RECORD_HEADER_BYTES)?)?;
    let payload_bytes = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    // A zero length is the preallocated, never written end of the file.
    if payload_bytes == 0 || payload_bytes > RECORD_BYTES_MAX {
        return None;
    }
    let start = position + RECORD_HEADER_BYTES;
    let payload = bytes.get(start..start.checked_add(payload_bytes)?)?;
    // Checked before the CRC: the search after damage tries every byte position.
    if !matches!(
        payload.first(),
        Some(&KIND_COMMIT | &KIND_DELETE | &KIND_MEMBERSHIP)
    ) {
        return None;
    }
    if crc32c(payload) != crc {
        return None;
    }
    let mut cursor = LeCursor::new(payload);
    let record = read_record(&mut cursor)?;
    (cursor.remaining() == 0).then_some((record, start + payload_bytes))
}

/// One record's fields (after its length and CRC).
fn read_record(cursor: &mut LeCursor) -> Option<OffsetRecord> {
    let kind = cursor.u8()?;
    let group = cursor.string()?;
    if kind == KIND_MEMBERSHIP {
        let membership = read_membership(cursor)?;
        return Some(OffsetRecord::Membership { group, membership });
    }
    let topic = cursor.string()?;
    let partition = cursor.i32()?;
    match kind {
        KIND_COMMIT => Some(OffsetRecord::Commit {
            group,
            topic,
            partition,
            value: CommittedOffset {
                offset: cursor.i64()?,
                leader_epoch: cursor.i32()?,
                commit_timestamp_ms: cursor.i64()?,
                metadata: cursor.nullable_string()?,
            },
        }),
        KIND_DELETE => Some(OffsetRecord::Delete {
            group,
            topic,
            partition,
        }),
        _ => None,
    }
}

fn read_membership(cursor: &mut LeCursor) -> Option<Membership> {
    let generation_id = cursor.i32()?;
    let protocol_type = cursor.string()?;
    let protocol_name = cursor.string()?;
    let leader = cursor.string()?;
    let count = cursor.u32()? as usize;
    // Each member takes at least 36 bytes: a bound on the count before anything is reserved.
    if count > cursor.remaining() / 36 {
        return None;
    }
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        members.push(MemberRecord {
            member_id: cursor.string()?,
            group_instance_id: cursor.nullable_string()?,
            client_id: cursor.string()?,
            client_host: cursor.string()?,
            session_timeout_ms: cursor.u32()?,
            rebalance_timeout_ms: cursor.u32()?,
            metadata: read_bytes(cursor)?,
            assignment: read_bytes(cursor)?,
        });
    }
    Some(Membership {
        generation_id,
        protocol_type,
        protocol_name,
        leader,
        members,
    })
}

fn read_bytes(cursor: &mut LeCursor) -> Option<bytes::Bytes> {
    let len = cursor.u32()? as usize;
    Some(bytes::Bytes::copy_from_slice(cursor.take(len)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::direct_file::tests::{TestDir, run_in_executor};

    fn commit(group: &str, topic: &str, partition: i32, offset: i64) -> OffsetRecord {
        OffsetRecord::Commit {
            group: group.into(),
            topic: topic.into(),
            partition,
            value: CommittedOffset {
                offset,
                leader_epoch: 3,
                metadata: (offset % 2 == 0).then(|| "meta".to_owned()),
                commit_timestamp_ms: 1_700_000_000_000 + offset,
            },
        }
    }

    /// Where the intact records of a log file end.
    fn records_end(bytes: &[u8]) -> usize {
        let mut position = 0;
        while let Some((_, next)) = decode_record(bytes, position) {
            position = next;
        }
        position
    }

    fn deleted(topics: &[&str]) -> HashSet<String> {
        topics.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn appends_survive_reopen_and_a_torn_tail_is_cut() {
        // Proves durable appends (many, crossing block boundaries) are read back after reopening,
        // deletions stick, and a half-written last record is dropped at load.
        let dir = TestDir::new("offset-store");
        let store_dir = dir.path.join("shard-0");
        run_in_executor(dir.path.clone(), move || async move {
            let (store, offsets) = OffsetStore::open(store_dir.clone(), deleted(&[]))
                .await
                .unwrap();
            assert!(offsets.is_empty());
            for i in 0..300 {
                store
                    .append(&[commit("g", "t", (i % 7) as i32, i)])
                    .await
                    .unwrap();
            }
            let delete = OffsetRecord::Delete {
                group: "g".into(),
                topic: "t".into(),
                partition: 6,
            };
            store.append(&[delete]).await.unwrap();
            drop(store);
            // Tear the next record: only part of it reaches the file.
            let path = store_dir.join(LOG_FILE_NAME);
            let mut bytes = std::fs::read(&path).unwrap();
            let end = records_end(&bytes);
            let mut torn = Vec::new();
            encode_record(&commit("g", "t", 0, 9999), &mut torn);
            bytes[end..end + torn.len() - 2].copy_from_slice(&torn[..torn.len() - 2]);
            std::fs::write(&path, &bytes).unwrap();
            let (store, offsets) = OffsetStore::open(store_dir.clone(), deleted(&[]))
                .await
                .unwrap();
            let group = &offsets["g"];
            assert_eq!(group.len(), 6);
            assert_eq!(group[&("t".to_owned(), 0)].offset, 294);
            assert_eq!(group[&("t".to_owned(), 5)].offset, 299);
            assert_eq!(group[&("t".to_owned(), 5)].metadata, None);
            assert_eq!(
                group[&("t".to_owned(), 4)].metadata.as_deref(),
                Some("meta")
            );
            store.append(&[commit("g", "t", 0, 10_000)]).await.unwrap();
            drop(store);
            let (_, offsets) = OffsetStore::open(store_dir, deleted(&[])).await.unwrap();
            assert_eq!(offsets["g"][&("t".to_owned(), 0)].offset, 10_000);
        });
    }

    #[test]
    fn load_compacts_to_live_offsets_of_live_topics() {
        // Proves a load rewrites the log to one record per live offset and drops the offsets of
        // deleted topics.
        let dir = TestDir::new("offset-store-compact");
        let store_dir = dir.path.join("shard-0");
        run_in_executor(dir.path.clone(), move || async move {
            let (store, _) = OffsetStore::open(store_dir.clone(), deleted(&[]))
                .await
                .unwrap();
            for i in 0..100 {
                store
                    .append(&[commit("g1", "a", 0, i), commit("g2", "b", 1, i)])
                    .await
                    .unwrap();
            }
            drop(store);
            let (_, offsets) = OffsetStore::open(store_dir.clone(), deleted(&["b"]))
                .await
                .unwrap();
            assert_eq!(offsets.len(), 1);
            assert_eq!(offsets["g1"][&("a".to_owned(), 0)].offset, 99);
            let bytes = std::fs::read(store_dir.join(LOG_FILE_NAME)).unwrap();
            let mut one = Vec::new();
            encode_record(&commit("g1", "a", 0, 99), &mut one);
            assert_eq!(records_end(&bytes), one.len());
        });
    }

    /// Commits with 4000 bytes of metadata each, to `count` partitions of topic t.
    fn big_commits(group: &str, count: i32, offset: i64) -> Vec<OffsetRecord> {
        (0..count)
            .map(|partition| OffsetRecord::Commit {
                group: group.into(),
                topic: "t".into(),
                partition,
                value: CommittedOffset {
                    offset,
                    leader_epoch: 0,
                    metadata: Some("m".repeat(4000)),
                    commit_timestamp_ms: 1,
                },
            })
            .collect()
    }

    #[test]
    fn damage_followed_by_valid_records_is_refused_and_cut_only_when_asked() {
        // Proves a flipped byte in the first record, with more than a torn write's reach of
        // valid records after it, fails the store's load and the start-up check with the file
        // and position, leaves the file as it was, and only `truncate_corrupt` cuts it.
        let dir = TestDir::new("offset-store-corrupt");
        let data_dir = dir.path.clone();
        let store_dir = GroupCoordinatorDir::of(&data_dir);
        run_in_executor(dir.path.clone(), move || async move {
            let (store, _) = OffsetStore::open(store_dir.clone(), deleted(&[]))
                .await
                .unwrap();
            store.append(&big_commits("g", 300, 1)).await.unwrap();
            drop(store);
            let path = store_dir.join(LOG_FILE_NAME);
            let mut bytes = std::fs::read(&path).unwrap();
            assert!(records_end(&bytes) > TORN_WRITE_REACH_BYTES + 100);
            bytes[RECORD_HEADER_BYTES + 20] ^= 0x08;
            std::fs::write(&path, &bytes).unwrap();
            let error = check_stores(&data_dir, false).unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(
                    error,
                    OffsetStoreError::Corrupt {
                        file_position: 0,
                        ..
                    }
                ),
                "{message}"
            );
            assert!(message.contains("offsets.log"), "{message}");
            assert!(
                message.contains("--unsafe-truncate-corrupt-offsets"),
                "{message}"
            );
            let opened = OffsetStore::open(store_dir.clone(), deleted(&[])).await;
            assert!(matches!(opened, Err(OffsetStoreError::Corrupt { .. })));
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "a refused load changed the file"
            );
            check_stores(&data_dir, true).unwrap();
            let (_, offsets) = OffsetStore::open(store_dir, deleted(&[])).await.unwrap();
            assert!(offsets.is_empty());
        });
    }

    #[test]
    fn a_torn_multi_block_write_is_cut_not_refused() {
        // Proves a crash in the middle of one write (a block in its middle never written, the
        // blocks after it written) is a torn tail: the records before it load, the start-up
        // check passes, and nothing is refused.
        let dir = TestDir::new("offset-store-torn-write");
        let data_dir = dir.path.clone();
        let store_dir = GroupCoordinatorDir::of(&data_dir);
        run_in_executor(dir.path.clone(), move || async move {
            let (store, _) = OffsetStore::open(store_dir.clone(), deleted(&[]))
                .await
                .unwrap();
            store.append(&big_commits("early", 2, 1)).await.unwrap();
            store.append(&big_commits("late", 40, 2)).await.unwrap();
            drop(store);
            let path = store_dir.join(LOG_FILE_NAME);
            let mut bytes = std::fs::read(&path).unwrap();
            let mut early = Vec::new();
            for record in big_commits("early", 2, 1) {
                encode_record(&record, &mut early);
            }
            // The second write started in the block where the first ended; lose its second block.
            let hole = align_up(early.len() as u64) as usize;
            bytes[hole..hole + BLOCK_BYTES as usize].fill(0);
            std::fs::write(&path, &bytes).unwrap();
            check_stores(&data_dir, false).unwrap();
            let (_, offsets) = OffsetStore::open(store_dir, deleted(&[])).await.unwrap();
            assert_eq!(offsets["early"].len(), 2);
            assert!(offsets.get("late").is_none_or(|late| late.len() < 40));
        });
    }

    #[test]
    fn the_store_compacts_while_running_and_keeps_every_commit() {
        // Proves a store whose file passes the threshold with mostly dead records is rewritten
        // while appends go on (the commits made during the compaction reach the new file), and
        // a reopen finds the latest commit of every key.
        let dir = TestDir::new("offset-store-running-compaction");
        let store_dir = dir.path.join("shard-0");
        run_in_executor(dir.path.clone(), move || async move {
            let (store, _) =
                OffsetStore::open_compacting_at(store_dir.clone(), deleted(&[]), 16 * 1024)
                    .await
                    .unwrap();
            for round in 0..1000 {
                store
                    .append(&[commit("g", "t", (round % 10) as i32, round)])
                    .await
                    .unwrap();
            }
            let compacted = |store: &OffsetStore| {
                let state = store.state.borrow();
                state.compaction.is_none() && state.end_position < 16 * 1024
            };
            for _ in 0..500 {
                if compacted(&store) {
                    break;
                }
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert!(compacted(&store), "the store was not compacted");
            assert!(store.state.borrow().records_in_file < 1000);
            store.append(&[commit("g", "t", 3, 5000)]).await.unwrap();
            drop(store);
            let (_, offsets) = OffsetStore::open(store_dir, deleted(&[])).await.unwrap();
            let group = &offsets["g"];
            assert_eq!(group.len(), 10);
            assert_eq!(group[&("t".to_owned(), 3)].offset, 5000);
            for partition in [0, 1, 2, 4, 5, 6, 7, 8, 9] {
                assert_eq!(
                    group[&("t".to_owned(), partition)].offset,
                    990 + partition as i64
                );
            }
        });
    }

    #[test]
    fn a_crash_during_compaction_leaves_a_complete_store() {
        // Proves the crash points of a running compaction: after the temp file is written but
        // before its rename the old file is still the whole store (and the temp file is removed
        // at open); after the rename the new file holds the snapshot and every commit written
        // since it.
        let dir = TestDir::new("offset-store-compaction-crash");
        let store_dir = dir.path.join("shard-0");
        run_in_executor(dir.path.clone(), move || async move {
            let path = store_dir.join(LOG_FILE_NAME);
            let (store, _) = OffsetStore::open(store_dir.clone(), deleted(&[]))
                .await
                .unwrap();
            for round in 0..100 {
                store
                    .append(&[commit("g", "t", (round % 4) as i32, round)])
                    .await
                    .unwrap();
            }
            let snapshot_end = store.state.borrow().end_position;
            let prepared = prepare_compaction(&path, snapshot_end).unwrap();
            store.append(&[commit("g", "t", 0, 1000)]).await.unwrap();
            drop(store);
            // Crash before the rename: the old file is the store.
            let temp = prepared.temp_path.clone();
            assert!(temp.exists());
            let (store, offsets) = OffsetStore::open(store_dir.clone(), deleted(&[]))
                .await
                .unwrap();
            assert!(!temp.exists(), "the interrupted compaction's file stays");
            assert_eq!(offsets["g"][&("t".to_owned(), 0)].offset, 1000);
            assert_eq!(offsets["g"][&("t".to_owned(), 3)].offset, 99);
            // Crash right after the rename: the new file is the store.
            for round in 0..100 {
                store
                    .append(&[commit("g", "t", (round % 4) as i32, 2000 + round)])
                    .await
                    .unwrap();
            }
            let snapshot_end = store.state.borrow().end_position;
            let prepared = prepare_compaction(&path, snapshot_end).unwrap();
            store.append(&[commit("g", "t", 1, 3000)]).await.unwrap();
            drop(store);
            let bytes = std::fs::read(&path).unwrap();
            let catch_up = &bytes[snapshot_end as usize..records_end(&bytes)];
            assert!(!catch_up.is_empty());
            finish_compaction(&prepared, &path, catch_up).unwrap();
            let (_, offsets) = OffsetStore::open(store_dir, deleted(&[])).await.unwrap();
            let group = &offsets["g"];
            assert_eq!(group[&("t".to_owned(), 1)].offset, 3000);
            assert_eq!(group[&("t".to_owned(), 0)].offset, 2096);
            assert_eq!(group[&("t".to_owned(), 3)].offset, 2099);
        });
    }

    /// Where the store of shard 0 lives under a data dir.
    struct GroupCoordinatorDir;

    impl GroupCoordinatorDir {
        fn of(data_dir: &Path) -> PathBuf {
            data_dir.join(GROUPS_DIR_NAME).join("shard-0")
        }
    }
}
