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
//! share the next write and fdatasync (group commit), and reach the file in call order. At open,
//! the log is read to its first damaged record (a torn tail is a commit nobody was told about),
//! compacted to the live offsets, and replaced atomically (temp file, fsync, rename, directory
//! fsync). A failed write or fdatasync poisons the store: it is never retried (the kernel may have
//! dropped the dirty pages), and every later append fails until the broker restarts.
//! Callers must not: open two stores on one directory.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::channels::local_channel::{self, LocalSender};

use crate::config::BLOCK_BYTES;
use crate::io::{DirectFile, align_down, align_up};
use crate::le_cursor::LeCursor;
use crate::meta::metadata_log::write_file_atomically;
use crate::protocol::record_batch::crc32c;

/// The directory of all shards' offset stores under the data dir.
pub const GROUPS_DIR_NAME: &str = "__groups";
const LOG_FILE_NAME: &str = "offsets.log";
const RECORD_HEADER_BYTES: usize = 8;
/// Preallocation step: O_DIRECT writes must stay below the file size (src/io/direct_file.rs).
const PREALLOCATE_STEP_BYTES: u64 = 1024 * 1024;
/// Largest record read back: group id, topic and 4 KiB of metadata fit many times over; a corrupt
/// length cannot make a load allocate more.
const RECORD_BYTES_MAX: usize = 1024 * 1024;

const KIND_COMMIT: u8 = 1;
const KIND_DELETE: u8 = 2;

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
}

/// Where appends stand: the logical end, the bytes of its partial last block, and the queue.
struct WriteState {
    end_position: u64,
    tail: Vec<u8>,
    allocated_bytes: u64,
    pending: Vec<u8>,
    waiters: Vec<LocalSender<Result<(), OffsetStoreError>>>,
    flushing: bool,
    poisoned: Option<String>,
}

/// One shard's offset log, open for appending.
pub struct OffsetStore {
    file: DirectFile,
    state: RefCell<WriteState>,
}

impl OffsetStore {
    /// Loads, compacts and opens the store in `dir` (created if missing). Offsets of topics not
    /// in `live_topics` are dropped: their topic was deleted.
    pub async fn open(
        dir: PathBuf,
        live_topics: HashSet<String>,
    ) -> Result<(Rc<Self>, StoredOffsets), OffsetStoreError> {
        let path = dir.join(LOG_FILE_NAME);
        let load_path = path.clone();
        // Reading and the atomic rewrite use std::fs: run them on the blocking pool so the
        // executor never waits on the file system.
        let (offsets, compacted_bytes) = glommio::executor()
            .spawn_blocking(move || load_and_compact(&dir, &load_path, &live_topics))
            .await
            .map_err(|reason| OffsetStoreError::Io {
                path: path.clone(),
                reason,
            })?;
        let io = |error: std::io::Error| OffsetStoreError::Io {
            path: path.clone(),
            reason: error.to_string(),
        };
        let file = DirectFile::open(&path).await.map_err(io)?;
        let end_position = compacted_bytes.len() as u64;
        let allocated_bytes = align_up(end_position) + PREALLOCATE_STEP_BYTES;
        file.pre_allocate(allocated_bytes).await.map_err(io)?;
        let tail = compacted_bytes[align_down(end_position) as usize..].to_vec();
        let store = Rc::new(Self {
            file,
            state: RefCell::new(WriteState {
                end_position,
                tail,
                allocated_bytes,
                pending: Vec::new(),
                waiters: Vec::new(),
                flushing: false,
                poisoned: None,
            }),
        });
        Ok((store, offsets))
    }

    /// Appends records and returns once they are durable.
    pub async fn append(self: &Rc<Self>, records: &[OffsetRecord]) -> Result<(), OffsetStoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let (sender, receiver) = local_channel::new_bounded(1);
        let start_flush = {
            let mut state = self.state.borrow_mut();
            if let Some(reason) = &state.poisoned {
                return Err(OffsetStoreError::Poisoned(reason.clone()));
            }
            for record in records {
                encode_record(record, &mut state.pending);
            }
            state.waiters.push(sender);
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

    /// Writes and syncs queued records until the queue is empty.
    async fn flush_loop(self: Rc<Self>) {
        loop {
            let (bytes, waiters, end_position, tail) = {
                let mut state = self.state.borrow_mut();
                if state.pending.is_empty() {
                    state.flushing = false;
                    return;
                }
                (
                    std::mem::take(&mut state.pending),
                    std::mem::take(&mut state.waiters),
                    state.end_position,
                    state.tail.clone(),
                )
            };
            let result = self.write_synced(&bytes, end_position, &tail).await;
            {
                let mut state = self.state.borrow_mut();
                match &result {
                    Ok(()) => {
                        state.end_position += bytes.len() as u64;
                        let mut joined = tail;
                        joined.extend_from_slice(&bytes);
                        let keep_from = joined.len() - (state.end_position % BLOCK_BYTES) as usize;
                        state.tail = joined.split_off(keep_from);
                    }
                    Err(error) => {
                        tracing::error!(%error, "offset store write failed; poisoning it");
                        state.poisoned = Some(error.to_string());
                    }
                }
            }
            for waiter in waiters {
                let _ = waiter.try_send(result.clone());
            }
            if result.is_err() {
                self.fail_queued();
                return;
            }
        }
    }

    fn fail_queued(&self) {
        let mut state = self.state.borrow_mut();
        let reason = state.poisoned.clone().unwrap_or_default();
        state.pending.clear();
        state.flushing = false;
        for waiter in state.waiters.drain(..) {
            let _ = waiter.try_send(Err(OffsetStoreError::Poisoned(reason.clone())));
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
        let io = |error: std::io::Error| OffsetStoreError::Io {
            path: self.file.path().to_owned(),
            reason: error.to_string(),
        };
        let new_end = end_position + bytes.len() as u64;
        let allocated_bytes = self.state.borrow().allocated_bytes;
        if align_up(new_end) > allocated_bytes {
            let grown = align_up(new_end) + PREALLOCATE_STEP_BYTES;
            self.file.pre_allocate(grown).await.map_err(io)?;
            self.state.borrow_mut().allocated_bytes = grown;
        }
        let len_bytes = tail.len() + bytes.len();
        let mut buffer = self.file.alloc_buffer(len_bytes);
        let out = buffer.as_bytes_mut();
        out[..tail.len()].copy_from_slice(tail);
        out[tail.len()..len_bytes].copy_from_slice(bytes);
        // Zero padding: a zero length after the last record is how a load finds the end.
        out[len_bytes..].fill(0);
        self.file
            .write_at(buffer, align_down(end_position))
            .await
            .map_err(io)?;
        self.file.fdatasync().await.map_err(io)
    }
}

/// Reads the log (creating the directory if missing), keeps the live offsets, and replaces the
/// file with their compacted records. Blocking.
fn load_and_compact(
    dir: &Path,
    path: &Path,
    live_topics: &HashSet<String>,
) -> Result<(StoredOffsets, Vec<u8>), String> {
    std::fs::create_dir_all(dir).map_err(|error| format!("creating {}: {error}", dir.display()))?;
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(format!("reading {}: {error}", path.display())),
    };
    let (mut offsets, records) = replay(&bytes);
    for group_offsets in offsets.values_mut() {
        group_offsets.retain(|(topic, _), _| live_topics.contains(topic));
    }
    offsets.retain(|_, group_offsets| !group_offsets.is_empty());
    let compacted = compact(&offsets);
    tracing::info!(
        path = %path.display(),
        records,
        groups = offsets.len(),
        kept_bytes = compacted.len(),
        "offset store loaded and compacted"
    );
    write_file_atomically(path, &compacted)
        .map_err(|error| format!("compacting {}: {error}", path.display()))?;
    Ok((offsets, compacted))
}

/// Replays every intact record up to the first damaged one (or the zeroed end).
fn replay(bytes: &[u8]) -> (StoredOffsets, usize) {
    let mut offsets = StoredOffsets::new();
    let mut position = 0;
    let mut records = 0;
    while let Some((record, next)) = decode_record(bytes, position) {
        apply(&mut offsets, record);
        position = next;
        records += 1;
    }
    (offsets, records)
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
    }
}

fn compact(offsets: &StoredOffsets) -> Vec<u8> {
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

fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
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

    fn live(topics: &[&str]) -> HashSet<String> {
        topics.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn appends_survive_reopen_and_a_torn_tail_is_cut() {
        // Proves durable appends (many, crossing block boundaries) are read back after reopening,
        // deletions stick, and a half-written last record is dropped at load.
        let dir = TestDir::new("offset-store");
        let store_dir = dir.path.join("shard-0");
        run_in_executor(dir.path.clone(), move || async move {
            let (store, offsets) = OffsetStore::open(store_dir.clone(), live(&["t"]))
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
            let (store, offsets) = OffsetStore::open(store_dir.clone(), live(&["t"]))
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
            let (_, offsets) = OffsetStore::open(store_dir, live(&["t"])).await.unwrap();
            assert_eq!(offsets["g"][&("t".to_owned(), 0)].offset, 10_000);
        });
    }

    #[test]
    fn load_compacts_to_live_offsets_of_live_topics() {
        // Proves a load rewrites the log to one record per live offset and drops the offsets of
        // topics that no longer exist.
        let dir = TestDir::new("offset-store-compact");
        let store_dir = dir.path.join("shard-0");
        run_in_executor(dir.path.clone(), move || async move {
            let (store, _) = OffsetStore::open(store_dir.clone(), live(&["a", "b"]))
                .await
                .unwrap();
            for i in 0..100 {
                store
                    .append(&[commit("g1", "a", 0, i), commit("g2", "b", 1, i)])
                    .await
                    .unwrap();
            }
            drop(store);
            let (_, offsets) = OffsetStore::open(store_dir.clone(), live(&["a"]))
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
}
