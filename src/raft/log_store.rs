//! `RaftLogStore`: openraft's log storage for the controller, an append-only checksummed file
//! plus a vote file, in one directory of the data dir.
//!
//! The log file (`raft.log`) is a sequence of records, little-endian: `u32 payload_bytes`,
//! `u32 crc32c(payload)`, payload = a kind byte and the JSON of an entry (`KIND_ENTRY`) or of the
//! last purged log id (`KIND_PURGED`). It is written with O_DIRECT (`io::DirectFile`): the
//! partial last block is kept in memory and rewritten with the next write, the file is
//! preallocated ahead (zeros after the data are normal), one write is in flight at a time and
//! each write of at most `write_bytes_max` is fdatasync'ed before the next starts and before
//! openraft's `IOFlushed` callback is told. `truncate_after` cuts the file (ftruncate, then
//! fdatasync) so removed entries can never be read back; `purge` appends a `KIND_PURGED` record.
//!
//! Recovery at open uses the partition logs' rules: records are adopted while their length and
//! CRC-32C check; non-zero bytes after the last valid record are damage. Damage with a valid
//! record beyond the reach of one torn write is corruption (open fails with
//! `RaftLogError::Corrupt` naming the file and file position); otherwise it is a torn tail,
//! never acknowledged, and is cut off.
//!
//! The vote is a separate small file (`raft.vote`): length-prefixed, CRC-sealed JSON, replaced
//! atomically (temp file, fdatasync, rename, directory sync) before `save_vote` returns.
//!
//! Every live entry is also kept in memory (the controller log is small); readers share it.
//! Callers must run `io::probe::probe_iopoll` on the executor first (as for any `DirectFile`),
//! and must not open one directory twice. A failed write or fdatasync poisons the store: every
//! later call fails until it is reopened (the fsync is never retried).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::type_config::alias::{LogIdOf, VoteOf};
use openraft::{OptionalSend, RaftLogReader, RaftTypeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::BLOCK_BYTES;
use crate::io::{DirectFile, align_down, align_up};
use crate::log::crc_sealed;
use crate::protocol::record_batch::crc32c;

/// The log file's name in the store's directory.
pub const LOG_FILE_NAME: &str = "raft.log";
/// The vote file's name in the store's directory.
pub const VOTE_FILE_NAME: &str = "raft.vote";
const VOTE_TEMP_FILE_NAME: &str = "raft.vote.tmp";
const RECORD_HEADER_BYTES: usize = 8;
/// Largest record accepted: far above a controller entry, low enough that a corrupt length
/// cannot make recovery allocate much. An append of a larger entry (or of one that would not
/// fit one write, `write_bytes_max` less a block) fails without writing.
pub const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;
/// How far ahead of the data the log file is preallocated, so O_DIRECT writes never extend it.
const PREALLOCATE_BYTES: u64 = 1024 * 1024;
const KIND_ENTRY: u8 = 1;
const KIND_PURGED: u8 = 2;

/// Failures of the controller log store.
#[derive(Debug, thiserror::Error)]
pub enum RaftLogError {
    /// The file system refused.
    #[error("raft log {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Damage followed by valid records: acknowledged entries would be lost by cutting here.
    #[error("raft log {path} is corrupt at file position {file_position}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Where the first bad record starts.
        file_position: u64,
        /// What was found.
        reason: String,
    },
    /// An earlier write or fdatasync failed; the store must be reopened.
    #[error("raft log {path} is poisoned by an earlier I/O failure; reopen it")]
    Poisoned {
        /// The log file.
        path: PathBuf,
    },
}

impl From<RaftLogError> for io::Error {
    fn from(error: RaftLogError) -> Self {
        match error {
            RaftLogError::Io { source, .. } => io::Error::new(source.kind(), source.to_string()),
            other => io::Error::other(other.to_string()),
        }
    }
}

/// The state shared by the store and its readers.
struct Shared<C: RaftTypeConfig> {
    entries: BTreeMap<u64, C::Entry>,
    last_purged: Option<LogIdOf<C>>,
    vote: Option<VoteOf<C>>,
}

/// Reads entries and the vote (openraft's `RaftLogReader`).
pub struct RaftLogStoreReader<C: RaftTypeConfig> {
    shared: Rc<RefCell<Shared<C>>>,
}

/// The controller's Raft log storage (openraft's `RaftLogStorage`).
pub struct RaftLogStore<C: RaftTypeConfig> {
    shared: Rc<RefCell<Shared<C>>>,
    dir: PathBuf,
    file: DirectFile,
    /// Where each live entry's record starts, for `truncate_after`.
    positions: BTreeMap<u64, u64>,
    /// The logical end of the log file (the next record's file position).
    end_position: u64,
    /// The bytes between `align_down(end_position)` and `end_position`.
    tail_block: Vec<u8>,
    allocated_bytes: u64,
    write_bytes_max: u64,
    poisoned: bool,
}

/// What a record holds.
enum Record<C: RaftTypeConfig> {
    Entry(C::Entry),
    Purged(LogIdOf<C>),
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> RaftLogError + '_ {
    move |source| RaftLogError::Io {
        path: path.to_owned(),
        source,
    }
}

impl<C> RaftLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    /// Opens (creating if missing) the store in `dir`, recovering the log. `write_bytes_max`
    /// bounds one write (larger appends are split), which bounds how far a torn write reaches.
    pub async fn open(dir: &Path, write_bytes_max: u64) -> Result<Self, RaftLogError> {
        assert!(
            write_bytes_max >= 2 * BLOCK_BYTES,
            "a write holds a tail block and a record"
        );
        let path = dir.join(LOG_FILE_NAME);
        let file = DirectFile::open_or_create(&path)
            .await
            .map_err(io_error(&path))?;
        let file_size = file.file_size().await.map_err(io_error(&path))?;
        let data = file
            .read_at(0, file_size as usize)
            .await
            .map_err(io_error(&path))?;
        let mut shared = Shared {
            entries: BTreeMap::new(),
            last_purged: None,
            vote: read_vote::<C>(dir).await?,
        };
        let mut positions = BTreeMap::new();
        let end_position = scan::<C>(&data, &path, write_bytes_max, &mut shared, &mut positions)?;
        if end_position < file_size && data[end_position as usize..].iter().any(|&b| b != 0) {
            tracing::warn!(path = %path.display(), file_position = end_position, "cutting a torn tail off the raft log");
            file.truncate(end_position).await.map_err(io_error(&path))?;
            file.fdatasync().await.map_err(io_error(&path))?;
        }
        let block_start = align_down(end_position) as usize;
        let tail_block = data[block_start..end_position as usize].to_vec();
        let allocated_bytes = file.file_size().await.map_err(io_error(&path))?;
        Ok(Self {
            shared: Rc::new(RefCell::new(shared)),
            dir: dir.to_owned(),
            file,
            positions,
            end_position,
            tail_block,
            allocated_bytes,
            write_bytes_max,
            poisoned: false,
        })
    }

    fn check_poisoned(&self) -> Result<(), RaftLogError> {
        if self.poisoned {
            return Err(RaftLogError::Poisoned {
                path: self.file.path().to_owned(),
            });
        }
        Ok(())
    }

    /// Writes `records` (encoded) at the end, durably; returns each record's file position.
    async fn write_records(&mut self, records: &[Vec<u8>]) -> Result<Vec<u64>, RaftLogError> {
        self.check_poisoned()?;
        let mut positions = Vec::with_capacity(records.len());
        let mut chunk: Vec<u8> = Vec::new();
        for record in records {
            let room = self.write_bytes_max as usize - self.tail_block.len();
            if !chunk.is_empty() && chunk.len() + record.len() > room {
                self.write_chunk(std::mem::take(&mut chunk)).await?;
            }
            positions.push(self.end_position + chunk.len() as u64);
            chunk.extend_from_slice(record);
        }
        if !chunk.is_empty() {
            self.write_chunk(chunk).await?;
        }
        Ok(positions)
    }

    /// One O_DIRECT write of the tail block plus `chunk`, then fdatasync.
    async fn write_chunk(&mut self, chunk: Vec<u8>) -> Result<(), RaftLogError> {
        let start = align_down(self.end_position);
        let new_end = self.end_position + chunk.len() as u64;
        let result = self.write_at_end(start, new_end, &chunk).await;
        if result.is_err() {
            self.poisoned = true;
        }
        result?;
        let mut tail = std::mem::take(&mut self.tail_block);
        tail.extend_from_slice(&chunk);
        let keep_from = (align_down(new_end) - start) as usize;
        self.tail_block = tail.split_off(keep_from);
        self.end_position = new_end;
        Ok(())
    }

    async fn write_at_end(
        &mut self,
        start: u64,
        new_end: u64,
        chunk: &[u8],
    ) -> Result<(), RaftLogError> {
        let path = self.file.path().to_owned();
        if align_up(new_end) > self.allocated_bytes {
            let size = align_up(new_end) + PREALLOCATE_BYTES;
            self.file
                .pre_allocate(size)
                .await
                .map_err(io_error(&path))?;
            self.allocated_bytes = size;
        }
        let len = (new_end - start) as usize;
        let mut buffer = self.file.alloc_buffer(len);
        let bytes = buffer.as_bytes_mut();
        let tail_len = self.tail_block.len();
        bytes[..tail_len].copy_from_slice(&self.tail_block);
        bytes[tail_len..len].copy_from_slice(chunk);
        bytes[len..].fill(0);
        self.file
            .write_at(buffer, start)
            .await
            .map_err(io_error(&path))?;
        self.file.fdatasync().await.map_err(io_error(&path))
    }

    /// The largest record one write can carry after a partial tail block.
    fn record_bytes_max(&self) -> usize {
        RECORD_BYTES_MAX.min((self.write_bytes_max - BLOCK_BYTES) as usize)
    }

    async fn append_entries(&mut self, entries: Vec<C::Entry>) -> Result<(), RaftLogError> {
        let record_bytes_max = self.record_bytes_max();
        let records = entries
            .iter()
            .map(|entry| encode_record(KIND_ENTRY, entry, record_bytes_max))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_error(self.file.path()))?;
        let positions = self.write_records(&records).await?;
        let mut shared = self.shared.borrow_mut();
        for (entry, position) in entries.into_iter().zip(positions) {
            self.positions.insert(entry.index(), position);
            shared.entries.insert(entry.index(), entry);
        }
        Ok(())
    }

    async fn cut_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), RaftLogError> {
        self.check_poisoned()?;
        let first_removed = last_log_id.map_or(0, |log_id| log_id.index() + 1);
        let Some((_, &cut_position)) = self.positions.range(first_removed..).next() else {
            return Ok(());
        };
        let path = self.file.path().to_owned();
        let block_start = align_down(cut_position);
        let tail = self
            .file
            .read_at(block_start, (cut_position - block_start) as usize)
            .await
            .map_err(io_error(&path))?;
        let result = async {
            self.file.truncate(cut_position).await?;
            self.file.fdatasync().await
        }
        .await;
        if let Err(error) = result {
            self.poisoned = true;
            return Err(io_error(&path)(error));
        }
        self.tail_block = tail.to_vec();
        self.end_position = cut_position;
        self.allocated_bytes = cut_position;
        self.positions.split_off(&first_removed);
        let last_purged = {
            let mut shared = self.shared.borrow_mut();
            shared.entries.split_off(&first_removed);
            shared.last_purged.clone()
        };
        // A purge record written after the cut entries was cut with them: write it again.
        if let Some(log_id) = last_purged {
            self.write_purged(&log_id).await?;
        }
        Ok(())
    }

    async fn write_purged(&mut self, log_id: &LogIdOf<C>) -> Result<(), RaftLogError> {
        let record = encode_record(KIND_PURGED, log_id, self.record_bytes_max())
            .map_err(io_error(self.file.path()))?;
        self.write_records(&[record]).await?;
        Ok(())
    }

    async fn purge_upto(&mut self, log_id: LogIdOf<C>) -> Result<(), RaftLogError> {
        self.write_purged(&log_id).await?;
        let keep_from = log_id.index() + 1;
        self.positions = self.positions.split_off(&keep_from);
        let mut shared = self.shared.borrow_mut();
        shared.entries = shared.entries.split_off(&keep_from);
        shared.last_purged = Some(log_id);
        Ok(())
    }
}

fn encode_record(kind: u8, value: &impl Serialize, bytes_max: usize) -> io::Result<Vec<u8>> {
    let mut payload = vec![kind];
    serde_json::to_writer(&mut payload, value).map_err(io::Error::other)?;
    if RECORD_HEADER_BYTES + payload.len() > bytes_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "raft log record of {} bytes exceeds {bytes_max}",
                payload.len()
            ),
        ));
    }
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32c(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// The payload of the record at `position` if its length and CRC check; None otherwise
/// (zeros included: a zero length is not a record).
fn checked_payload(data: &[u8], position: usize) -> Option<&[u8]> {
    let header = data.get(position..position + RECORD_HEADER_BYTES)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if len == 0 || len > RECORD_BYTES_MAX {
        return None;
    }
    let start = position + RECORD_HEADER_BYTES;
    let payload = data.get(start..start + len)?;
    (crc32c(payload) == crc).then_some(payload)
}

fn decode_record<C>(payload: &[u8]) -> Option<Record<C>>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
    LogIdOf<C>: DeserializeOwned,
{
    let (&kind, json) = payload.split_first()?;
    match kind {
        KIND_ENTRY => serde_json::from_slice(json).ok().map(Record::Entry),
        KIND_PURGED => serde_json::from_slice(json).ok().map(Record::Purged),
        _ => None,
    }
}

/// Adopts records from the start of `data`; returns the logical end. Fails on corruption.
fn scan<C>(
    data: &Bytes,
    path: &Path,
    write_bytes_max: u64,
    shared: &mut Shared<C>,
    positions: &mut BTreeMap<u64, u64>,
) -> Result<u64, RaftLogError>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
    LogIdOf<C>: DeserializeOwned,
{
    let mut position = 0;
    while let Some(payload) = checked_payload(data, position) {
        let Some(record) = decode_record::<C>(payload) else {
            return Err(RaftLogError::Corrupt {
                path: path.to_owned(),
                file_position: position as u64,
                reason: "a record with a valid CRC-32C that does not decode".to_owned(),
            });
        };
        match record {
            Record::Entry(entry) => {
                let index = entry.index();
                // A later record for an index replaces the earlier one and everything after it.
                shared.entries.split_off(&index);
                positions.split_off(&index);
                positions.insert(index, position as u64);
                shared.entries.insert(index, entry);
            }
            Record::Purged(log_id) => {
                let keep_from = log_id.index() + 1;
                shared.entries = shared.entries.split_off(&keep_from);
                *positions = positions.split_off(&keep_from);
                shared.last_purged = Some(log_id);
            }
        }
        position += RECORD_HEADER_BYTES + payload.len();
    }
    let damaged = data[position..].iter().any(|&b| b != 0);
    if damaged && let Some(found) = valid_record_after(data, position, write_bytes_max) {
        return Err(RaftLogError::Corrupt {
            path: path.to_owned(),
            file_position: position as u64,
            reason: format!("invalid record followed by a valid record at file position {found}"),
        });
    }
    Ok(position as u64)
}

/// A valid record starting beyond the reach of the torn last write (which began at most one
/// block before the damage and was at most `write_bytes_max` long), at any byte position.
fn valid_record_after(data: &[u8], damage_position: usize, write_bytes_max: u64) -> Option<u64> {
    let start = damage_position + write_bytes_max as usize + BLOCK_BYTES as usize;
    (start..data.len())
        .find(|&position| checked_payload(data, position).is_some())
        .map(|position| position as u64)
}

async fn read_vote<C>(dir: &Path) -> Result<Option<VoteOf<C>>, RaftLogError>
where
    C: RaftTypeConfig,
    VoteOf<C>: DeserializeOwned,
{
    let path = dir.join(VOTE_FILE_NAME);
    let file = match DirectFile::open(&path).await {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(&path)(error)),
    };
    let size = file.file_size().await.map_err(io_error(&path))?;
    let bytes = file
        .read_at(0, size as usize)
        .await
        .map_err(io_error(&path))?;
    file.close().await.map_err(io_error(&path))?;
    let corrupt = |reason: &str| RaftLogError::Corrupt {
        path: path.clone(),
        file_position: 0,
        reason: reason.to_owned(),
    };
    // The file is replaced by rename only after its data was synced, so damage is corruption.
    let len = bytes
        .get(..4)
        .map(|len| u32::from_le_bytes(len.try_into().expect("four bytes")) as usize)
        .ok_or_else(|| corrupt("vote file shorter than its length prefix"))?;
    let sealed = bytes
        .get(4..4 + len)
        .ok_or_else(|| corrupt("vote file shorter than its length"))?;
    let body = crc_sealed::unseal(sealed).ok_or_else(|| corrupt("vote CRC-32C mismatch"))?;
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|_| corrupt("vote does not decode"))
}

async fn write_vote(dir: &Path, vote: &impl Serialize) -> io::Result<()> {
    let body = serde_json::to_vec(vote).map_err(io::Error::other)?;
    let sealed = crc_sealed::seal(body);
    let temp = dir.join(VOTE_TEMP_FILE_NAME);
    let file = DirectFile::open_or_create(&temp).await?;
    file.truncate(0).await?;
    let len = 4 + sealed.len();
    let mut buffer = file.alloc_buffer(len);
    let bytes = buffer.as_bytes_mut();
    bytes[..4].copy_from_slice(&(sealed.len() as u32).to_le_bytes());
    bytes[4..len].copy_from_slice(&sealed);
    bytes[len..].fill(0);
    file.write_at(buffer, 0).await?;
    file.fdatasync().await?;
    file.close().await?;
    glommio::io::rename(&temp, dir.join(VOTE_FILE_NAME)).await?;
    glommio::io::Directory::open(dir).await?.sync().await?;
    Ok(())
}

impl<C> RaftLogReader<C> for RaftLogStoreReader<C>
where
    C: RaftTypeConfig,
    C::Entry: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        let shared = self.shared.borrow();
        Ok(shared
            .entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.shared.borrow().vote.clone())
    }
}

impl<C> RaftLogStorage<C> for RaftLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Clone + Serialize + DeserializeOwned,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    type LogReader = RaftLogStoreReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let shared = self.shared.borrow();
        let last_purged_log_id = shared.last_purged.clone();
        let last_log_id = shared
            .entries
            .last_key_value()
            .map(|(_, entry)| entry.log_id())
            .or_else(|| last_purged_log_id.clone());
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        RaftLogStoreReader {
            shared: self.shared.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.check_poisoned()?;
        if let Err(error) = write_vote(&self.dir, vote).await {
            self.poisoned = true;
            return Err(error);
        }
        self.shared.borrow_mut().vote = Some(vote.clone());
        Ok(())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        match self.append_entries(entries.into_iter().collect()).await {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                let error = io::Error::from(error);
                callback.io_completed(Err(io::Error::new(error.kind(), error.to_string())));
                Err(error)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        Ok(self.cut_after(last_log_id).await?)
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        Ok(self.purge_upto(log_id).await?)
    }
}
