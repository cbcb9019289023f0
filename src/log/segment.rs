//! `Segment`: one file of a partition log, `<20-digit base offset>.log`, with its `.index` and
//! `.timeindex` beside it in `DATA_DIR/<topic>-<partition>/`.
//!
//! A segment knows its base offset, its in-memory indexes, and two logical sizes: bytes
//! *sequenced* (batches given offsets, maybe not written yet) and bytes *written* (completed
//! O_DIRECT writes; readers never read past it). The file itself is preallocated beyond both, so
//! its size says nothing about where the data ends. Guarantees: sequenced ≥ written; index entries
//! point at batch starts. Callers must: feed `on_sequenced` batches in offset order, and read only
//! below `written_bytes`. The `.log` file handle appears when the writer creates the file (a
//! segment rolled to is sequenced into before its file exists; nothing reads it until written).

use std::cell::{Cell, Ref, RefCell};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::io::DirectFile;

use super::index::{INDEX_INTERVAL_BYTES, OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};

/// Extension of the log file.
pub const LOG_EXTENSION: &str = "log";
/// Extension of the offset index file.
pub const INDEX_EXTENSION: &str = "index";
/// Extension of the time index file.
pub const TIME_INDEX_EXTENSION: &str = "timeindex";
/// Suffix of a file being written, renamed into place when complete (removed at open).
pub const TEMP_SUFFIX: &str = ".tmp";

/// `<20-digit base offset>.<extension>`, Kafka's naming.
pub fn file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// The base offset of a segment's `.log` file name, if it is one.
pub fn parse_log_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A segment's sequencing state before one batch was placed in it: what `rewind` goes back to
/// when that batch (and everything after it) is dropped unwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMark {
    sequenced_bytes: u64,
    next_offset: i64,
    max_timestamp_ms: i64,
    bytes_since_index_entry: u64,
    index_len: usize,
    time_index_len: usize,
}

/// One segment of a partition log.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    dir: PathBuf,
    file: RefCell<Option<Rc<DirectFile>>>,
    sequenced_bytes: Cell<u64>,
    written_bytes: Cell<u64>,
    /// One past the last offset sequenced into this segment.
    next_offset: Cell<i64>,
    /// Largest batch max timestamp sequenced (-1 when empty).
    max_timestamp_ms: Cell<i64>,
    bytes_since_index_entry: Cell<u64>,
    /// Rolled and finished: trimmed, synced, index files written; nothing is appended any more.
    sealed: Cell<bool>,
    index: RefCell<OffsetIndex>,
    time_index: RefCell<TimeIndex>,
}

impl Segment {
    /// An empty segment starting at `base_offset`, without a file yet.
    pub fn new(dir: &Path, base_offset: i64) -> Rc<Self> {
        Rc::new(Self {
            base_offset,
            dir: dir.to_owned(),
            file: RefCell::new(None),
            sequenced_bytes: Cell::new(0),
            written_bytes: Cell::new(0),
            next_offset: Cell::new(base_offset),
            max_timestamp_ms: Cell::new(-1),
            bytes_since_index_entry: Cell::new(0),
            sealed: Cell::new(false),
            index: RefCell::new(OffsetIndex::default()),
            time_index: RefCell::new(TimeIndex::default()),
        })
    }

    /// First offset of the segment.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// One past the last offset sequenced into the segment.
    pub fn next_offset(&self) -> i64 {
        self.next_offset.get()
    }

    /// Logical size including batches not written yet.
    pub fn sequenced_bytes(&self) -> u64 {
        self.sequenced_bytes.get()
    }

    /// Logical size of what has been written; readers stay below it.
    pub fn written_bytes(&self) -> u64 {
        self.written_bytes.get()
    }

    /// Records a completed write: the data now ends at `written_bytes`.
    pub fn set_written_bytes(&self, written_bytes: u64) {
        assert!(written_bytes >= self.written_bytes.get());
        assert!(written_bytes <= self.sequenced_bytes.get());
        self.written_bytes.set(written_bytes);
    }

    /// Whether the segment was rolled and finished (retention may delete it).
    pub fn sealed(&self) -> bool {
        self.sealed.get()
    }

    /// Marks the segment rolled and finished.
    pub fn seal(&self) {
        assert!(self.written_bytes.get() == self.sequenced_bytes.get());
        self.sealed.set(true);
    }

    /// Largest batch max timestamp in the segment, or -1.
    pub fn max_timestamp_ms(&self) -> i64 {
        self.max_timestamp_ms.get()
    }

    /// The `.log` file, once it exists.
    pub fn file(&self) -> Option<Rc<DirectFile>> {
        self.file.borrow().clone()
    }

    /// Attaches the opened `.log` file.
    pub fn set_file(&self, file: Rc<DirectFile>) {
        *self.file.borrow_mut() = Some(file);
    }

    /// Detaches the `.log` file (at close).
    pub fn take_file(&self) -> Option<Rc<DirectFile>> {
        self.file.borrow_mut().take()
    }

    /// The partition directory holding the segment.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the `.log` file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(file_name(self.base_offset, LOG_EXTENSION))
    }

    /// Path of the `.index` file.
    pub fn index_path(&self) -> PathBuf {
        self.dir.join(file_name(self.base_offset, INDEX_EXTENSION))
    }

    /// Path of the `.timeindex` file.
    pub fn time_index_path(&self) -> PathBuf {
        self.dir
            .join(file_name(self.base_offset, TIME_INDEX_EXTENSION))
    }

    /// The offset index.
    pub fn index(&self) -> Ref<'_, OffsetIndex> {
        self.index.borrow()
    }

    /// The time index.
    pub fn time_index(&self) -> Ref<'_, TimeIndex> {
        self.time_index.borrow()
    }

    /// Offset relative to the base, as the indexes store it. Segments roll before it overflows.
    pub fn relative_offset(&self, offset: i64) -> u32 {
        u32::try_from(offset - self.base_offset).expect("segment rolled before u32 overflow")
    }

    /// Records a batch placed at the end of the segment (sequenced, or found by recovery): moves
    /// the sequenced end, and adds index entries every `INDEX_INTERVAL_BYTES`.
    pub fn on_sequenced(
        &self,
        base_offset: i64,
        last_offset: i64,
        max_timestamp_ms: i64,
        len_bytes: u64,
    ) {
        assert!(
            base_offset == self.next_offset.get(),
            "offsets must be contiguous"
        );
        let file_position = self.sequenced_bytes.get();
        if self.bytes_since_index_entry.get() >= INDEX_INTERVAL_BYTES {
            let relative_offset = self.relative_offset(base_offset);
            self.index.borrow_mut().push(OffsetEntry {
                relative_offset,
                file_position: u32::try_from(file_position).expect("segment below 4 GiB"),
            });
            self.time_index.borrow_mut().push(TimeEntry {
                timestamp_ms: self.max_timestamp_ms.get().max(max_timestamp_ms),
                relative_offset,
            });
            self.bytes_since_index_entry.set(0);
        }
        self.bytes_since_index_entry
            .set(self.bytes_since_index_entry.get() + len_bytes);
        self.max_timestamp_ms
            .set(self.max_timestamp_ms.get().max(max_timestamp_ms));
        self.sequenced_bytes.set(file_position + len_bytes);
        self.next_offset.set(last_offset + 1);
    }

    /// The sequencing state now, before the next batch is placed (see `rewind`).
    pub fn mark(&self) -> SegmentMark {
        SegmentMark {
            sequenced_bytes: self.sequenced_bytes.get(),
            next_offset: self.next_offset.get(),
            max_timestamp_ms: self.max_timestamp_ms.get(),
            bytes_since_index_entry: self.bytes_since_index_entry.get(),
            index_len: self.index.borrow().len(),
            time_index_len: self.time_index.borrow().len(),
        }
    }

    /// Forgets every batch sequenced after `mark` was taken: they were dropped before being
    /// written (a write failed with ENOSPC), so the segment ends again where it ended then,
    /// indexes and max timestamp included.
    pub fn rewind(&self, mark: &SegmentMark) {
        assert!(!self.sealed.get(), "a sealed segment has nothing unwritten");
        assert!(
            mark.sequenced_bytes >= self.written_bytes.get(),
            "only unwritten batches are dropped"
        );
        assert!(mark.sequenced_bytes <= self.sequenced_bytes.get());
        self.sequenced_bytes.set(mark.sequenced_bytes);
        self.next_offset.set(mark.next_offset);
        self.max_timestamp_ms.set(mark.max_timestamp_ms);
        self.bytes_since_index_entry
            .set(mark.bytes_since_index_entry);
        self.index.borrow_mut().truncate(mark.index_len);
        self.time_index.borrow_mut().truncate(mark.time_index_len);
    }

    /// Adopts the state of a segment whose indexes were loaded from disk: its data is
    /// `size_bytes` long (a closed segment's file size, trimmed at roll; the active segment's size
    /// from the clean-shutdown marker) and its offsets end at `next_offset`.
    pub fn restore(
        &self,
        size_bytes: u64,
        next_offset: i64,
        index: OffsetIndex,
        time_index: TimeIndex,
    ) {
        self.max_timestamp_ms
            .set(time_index.last().map_or(-1, |entry| entry.timestamp_ms));
        *self.index.borrow_mut() = index;
        *self.time_index.borrow_mut() = time_index;
        let indexed_position = self
            .index
            .borrow()
            .last()
            .map_or(0, |entry| u64::from(entry.file_position));
        self.bytes_since_index_entry
            .set(size_bytes.saturating_sub(indexed_position));
        self.sequenced_bytes.set(size_bytes);
        self.written_bytes.set(size_bytes);
        self.next_offset.set(next_offset);
    }

    /// Adds a last time-index entry holding the segment's max timestamp (as Kafka does when a
    /// segment becomes inactive), so a segment restored from its index files knows its max
    /// timestamp even if it was reached after the last sparse entry.
    fn seal_time_index(&self) {
        let next_offset = self.next_offset.get();
        if next_offset == self.base_offset {
            return;
        }
        self.time_index.borrow_mut().push(TimeEntry {
            timestamp_ms: self.max_timestamp_ms.get(),
            relative_offset: self.relative_offset(next_offset - 1),
        });
    }

    /// Writes `.index` and `.timeindex` (temp file, fsync, rename, directory fsync), so a file
    /// under the final name is always complete. Runs on glommio's blocking thread pool.
    pub async fn persist_indexes(&self) -> io::Result<()> {
        self.seal_time_index();
        let index = self.index.borrow().encode();
        let time_index = self.time_index.borrow().encode();
        let jobs = [
            (self.index_path(), index),
            (self.time_index_path(), time_index),
        ];
        let dir = self.dir.clone();
        glommio::executor()
            .spawn_blocking(move || {
                for (path, bytes) in jobs {
                    write_file_atomically(&path, &bytes)?;
                }
                std::fs::File::open(&dir)?.sync_all()
            })
            .await
    }

    /// Copies of the in-memory offset and time indexes (for a recovery checkpoint).
    pub fn indexes(&self) -> (OffsetIndex, TimeIndex) {
        (
            self.index.borrow().clone(),
            self.time_index.borrow().clone(),
        )
    }

    /// Reads the `.index` and `.timeindex` files; `None` if either is missing or damaged.
    pub async fn load_indexes(&self, size_bytes: u64) -> Option<(OffsetIndex, TimeIndex)> {
        let paths = (self.index_path(), self.time_index_path());
        let (index, time_index) = glommio::executor()
            .spawn_blocking(move || {
                let index = std::fs::read(&paths.0).ok()?;
                let time_index = std::fs::read(&paths.1).ok()?;
                Some((index, time_index))
            })
            .await?;
        Some((
            OffsetIndex::decode(&index, size_bytes)?,
            TimeIndex::decode(&time_index)?,
        ))
    }
}

/// Fsyncs the directory `dir`, so the names created or removed in it survive a power loss (a
/// file's own fdatasync does not cover its directory entry). Runs on glommio's blocking pool.
pub async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_owned();
    glommio::executor()
        .spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
}

/// Writes `bytes` to `path` via `path.tmp`, fsync, rename and an fsync of the directory (so the
/// new name, not only the bytes, survives a power loss). Blocking: call off the executor.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(TEMP_SUFFIX);
    let temp = PathBuf::from(temp);
    std::fs::write(&temp, bytes)?;
    std::fs::File::open(&temp)?.sync_all()?;
    std::fs::rename(&temp, path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_twenty_digits_and_parse_back() {
        // Proves Kafka's segment naming round-trips and other names are not segments.
        assert_eq!(file_name(0, LOG_EXTENSION), "00000000000000000000.log");
        assert_eq!(
            file_name(1234, INDEX_EXTENSION),
            "00000000000000001234.index"
        );
        assert_eq!(parse_log_file_name("00000000000000001234.log"), Some(1234));
        assert_eq!(parse_log_file_name("00000000000000001234.index"), None);
        assert_eq!(parse_log_file_name("1234.log"), None);
        assert_eq!(parse_log_file_name("0000000000000000123x.log"), None);
        assert_eq!(parse_log_file_name(".iopoll-probe"), None);
    }

    #[test]
    fn index_entries_every_interval() {
        // Proves an index entry is added at the first batch after each INDEX_INTERVAL_BYTES, and
        // that it points at that batch's file position.
        let segment = Segment::new(Path::new("/nonexistent"), 100);
        for i in 0..10 {
            segment.on_sequenced(100 + i * 2, 101 + i * 2, 1000 + i, 3000);
        }
        let index = segment.index();
        assert_eq!(index.len(), 4);
        assert_eq!(index.lookup(2), None);
        let first = index.lookup(5).unwrap();
        assert_eq!(first.relative_offset, 4);
        assert_eq!(first.file_position, 6000);
        assert_eq!(segment.next_offset(), 120);
        assert_eq!(segment.sequenced_bytes(), 30_000);
        assert_eq!(segment.max_timestamp_ms(), 1009);
    }

    #[test]
    fn rewind_forgets_what_was_sequenced_after_the_mark() {
        // Proves a rewind restores the sequenced end, next offset, max timestamp and both
        // indexes exactly as they were at the mark, so sequencing again after it builds the same
        // state as if the dropped batches had never come.
        let segment = Segment::new(Path::new("/nonexistent"), 0);
        for i in 0..3 {
            segment.on_sequenced(i, i, 1000 + i, 3000);
        }
        segment.set_written_bytes(9000);
        let mark = segment.mark();
        let before = (segment.index().clone(), segment.time_index().clone());
        for i in 3..10 {
            segment.on_sequenced(i, i, 5000 + i, 3000);
        }
        assert!(segment.index().len() > before.0.len());
        segment.rewind(&mark);
        assert_eq!(segment.mark(), mark);
        assert_eq!(segment.sequenced_bytes(), 9000);
        assert_eq!(segment.next_offset(), 3);
        assert_eq!(segment.max_timestamp_ms(), 1002);
        assert_eq!(
            (segment.index().clone(), segment.time_index().clone()),
            before
        );
        segment.on_sequenced(3, 3, 1003, 3000);
        assert_eq!(segment.next_offset(), 4);
    }
}
