//! `DirectFile`: one O_DIRECT file, the only door from the log to glommio's `DmaFile`.
//!
//! Every operation that can fail on a real disk first asks the installed fault injector
//! (`faults`), which tests use to fail it on purpose; a file whose writer tracks its data end
//! tells the sync journal (`sync_journal`), when one is installed, what each fdatasync made
//! durable.
//!
//! Guarantees: every write is a whole number of `BLOCK_BYTES` blocks at a block-aligned file
//! position, and is either complete or an error (a short write is reported as an error, never
//! silently accepted). Reads may start anywhere and return owned `Bytes` (copied out of glommio's
//! buffer), split into DMA reads of at most `READ_CHUNK_BYTES_MAX`.
//!
//! Callers must not: write unaligned buffers (asserted: a misaligned O_DIRECT write would fail or,
//! worse, be emulated), write beyond the preallocated size (that would make O_DIRECT writes
//! extend the file, which serializes them with all other I/O on it), or keep two writes in flight
//! that cover the same block (io_uring completes them in any order). The type is `!Send`: it
//! belongs to the executor that opened it.

use std::cell::Cell;
use std::io;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use crate::config::BLOCK_BYTES;

use super::faults::{self, Fault, FileOp};
use super::sync_journal;

/// The largest single DMA read issued. glommio 0.9 passes a read to the kernel as one request;
/// a read larger than the device's `max_sectors_kb` can hang forever (glommio #633), and 512 KiB
/// is at or below `max_sectors_kb` on the devices we run on (virtio: 512 KiB or more, NVMe:
/// usually 128 KiB-2 MiB; splitting below the device limit only costs a few more requests).
pub const READ_CHUNK_BYTES_MAX: usize = 512 * 1024;

const _: () = assert!((READ_CHUNK_BYTES_MAX as u64).is_multiple_of(BLOCK_BYTES));

/// Rounds `value` down to a block boundary.
pub fn align_down(value: u64) -> u64 {
    value - value % BLOCK_BYTES
}

/// Rounds `value` up to a block boundary.
pub fn align_up(value: u64) -> u64 {
    value.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

/// A buffer that can be written with O_DIRECT: block-aligned in memory, a whole number of blocks
/// long. Wraps glommio's `DmaBuffer` so callers never name glommio.
#[derive(Debug)]
pub struct AlignedBuffer {
    buffer: DmaBuffer,
}

impl AlignedBuffer {
    /// The buffer's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_bytes()
    }

    /// The buffer's bytes, to fill before writing.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_bytes_mut()
    }

    /// Length in bytes (a multiple of `BLOCK_BYTES`).
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.buffer.len() == 0
    }
}

/// One O_DIRECT file opened for reading and writing.
#[derive(Debug)]
pub struct DirectFile {
    file: DmaFile,
    path: PathBuf,
    /// Where the file's data ends, as its writer last said, while the sync journal tracks it.
    data_end: Cell<Option<u64>>,
}

impl DirectFile {
    /// Opens `path` for reading and writing, creating it (empty) if it does not exist. Never
    /// truncates. glommio's `DmaFile::create` opens write-only, which would make every read of a
    /// segment fail, so the options are spelled out here.
    pub async fn open_or_create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(path)
            .await?;
        Ok(Self::opened(file, path))
    }

    /// Opens an existing file for reading and writing.
    pub async fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await?;
        Ok(Self::opened(file, path))
    }

    fn opened(file: DmaFile, path: &Path) -> Self {
        Self {
            file,
            path: path.to_owned(),
            data_end: Cell::new(None),
        }
    }

    /// Has the sync journal (if installed) track this file: its data ends at `data_bytes` now,
    /// all of it durable, and `data_written` says where it ends after each write.
    pub async fn track_data_end(&self, data_bytes: u64) -> io::Result<()> {
        if !sync_journal::is_installed() {
            return Ok(());
        }
        self.data_end.set(Some(data_bytes));
        sync_journal::opened(&self.path, data_bytes).await
    }

    /// Where the file's data ends after a write (for the sync journal).
    pub fn data_written(&self, data_bytes: u64) {
        if self.data_end.get().is_some() {
            self.data_end.set(Some(data_bytes));
        }
    }

    /// The path the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A buffer of `len_bytes` (rounded up to whole blocks; must not be 0) for `write_at`, with
    /// arbitrary contents: the caller overwrites every byte, padding included. It comes from
    /// glommio's registered I/O memory when some is free, else from the heap (still aligned;
    /// glommio falls back silently).
    pub fn alloc_buffer(&self, len_bytes: usize) -> AlignedBuffer {
        // glommio 0.9 panics (unwraps None) on a zero-sized heap fallback: refuse it here.
        assert!(len_bytes > 0, "empty DMA buffer");
        let len_bytes = align_up(len_bytes as u64) as usize;
        // Not zeroed here: the appender fills all but a block's worth of padding, and zeroing a
        // whole megabyte buffer first cost a tenth of the broker's CPU on the produce path.
        let buffer = self.file.alloc_dma_buffer(len_bytes);
        AlignedBuffer { buffer }
    }

    /// Writes the whole buffer at `file_position`. A short write is an error.
    pub async fn write_at(&self, buffer: AlignedBuffer, file_position: u64) -> io::Result<()> {
        assert!(
            file_position.is_multiple_of(BLOCK_BYTES),
            "unaligned write position"
        );
        assert!(
            (buffer.len() as u64).is_multiple_of(BLOCK_BYTES),
            "unaligned write length"
        );
        let len_bytes = buffer.len();
        match faults::fault_for(FileOp::Write, &self.path) {
            Some(Fault::Errno(errno)) => return Err(Fault::error(errno)),
            Some(Fault::ShortWrite) => return self.write_prefix(&buffer, file_position).await,
            Some(Fault::Delay(delay)) => glommio::timer::sleep(delay).await,
            None => {}
        }
        let written_bytes = self.file.write_at(buffer.buffer, file_position).await?;
        if written_bytes != len_bytes {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "short O_DIRECT write to {}: {written_bytes} of {len_bytes} bytes at {file_position}",
                    self.path.display()
                ),
            ));
        }
        Ok(())
    }

    /// An injected short write: writes the first half of `buffer`'s blocks (none for one
    /// block), then fails as a short write does.
    async fn write_prefix(&self, buffer: &AlignedBuffer, file_position: u64) -> io::Result<()> {
        let blocks = buffer.len() as u64 / BLOCK_BYTES;
        let prefix_bytes = (blocks / 2 * BLOCK_BYTES) as usize;
        if prefix_bytes > 0 {
            let mut prefix = self.alloc_buffer(prefix_bytes);
            prefix
                .as_bytes_mut()
                .copy_from_slice(&buffer.as_bytes()[..prefix_bytes]);
            self.file.write_at(prefix.buffer, file_position).await?;
        }
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "short O_DIRECT write to {} (injected): {prefix_bytes} of {} bytes at {file_position}",
                self.path.display(),
                buffer.len()
            ),
        ))
    }

    /// Applies an injected fault to a non-write operation: fails it, or delays it.
    async fn injected(&self, op: FileOp) -> io::Result<()> {
        match faults::fault_for(op, &self.path) {
            Some(Fault::Errno(errno)) => Err(Fault::error(errno)),
            Some(Fault::Delay(delay)) => {
                glommio::timer::sleep(delay).await;
                Ok(())
            }
            Some(Fault::ShortWrite) | None => Ok(()),
        }
    }

    /// Reads up to `len_bytes` starting at `file_position` (any alignment). Fewer bytes come back
    /// only at the end of the file. The read is widened to whole blocks and split into DMA reads
    /// of at most `READ_CHUNK_BYTES_MAX`. The result is copied into `Bytes`: glommio's
    /// `ReadResult` is `!Send` and borrows the reactor's buffer, so it cannot become `Bytes` (which
    /// fetch responses hand to the network layer).
    pub async fn read_at(&self, file_position: u64, len_bytes: usize) -> io::Result<Bytes> {
        self.injected(FileOp::Read).await?;
        let start = align_down(file_position);
        let end = align_up(file_position + len_bytes as u64);
        let skip_bytes = (file_position - start) as usize;
        // One allocation per read, sized by the caller's bound: fetch and recovery need owned bytes.
        let mut out = BytesMut::with_capacity((end - start) as usize);
        let mut position = start;
        while position < end {
            let chunk_bytes = ((end - position) as usize).min(READ_CHUNK_BYTES_MAX);
            let chunk = self.file.read_at_aligned(position, chunk_bytes).await?;
            out.extend_from_slice(&chunk);
            if chunk.len() < chunk_bytes {
                break; // End of file.
            }
            position += chunk_bytes as u64;
        }
        let mut out = out.freeze();
        if out.len() <= skip_bytes {
            return Ok(Bytes::new());
        }
        let _ = out.split_to(skip_bytes);
        out.truncate(len_bytes);
        Ok(out)
    }

    /// Flushes written data (and the metadata needed to read it back) to the device.
    pub async fn fdatasync(&self) -> io::Result<()> {
        self.injected(FileOp::Fdatasync).await?;
        let covered = self.data_end.get();
        self.file.fdatasync().await?;
        match covered {
            Some(data_bytes) => sync_journal::synced(&self.path, data_bytes).await,
            None => Ok(()),
        }
    }

    /// Grows the file to `size_bytes` with allocated, zero-reading blocks, so later O_DIRECT
    /// writes below that size never extend the file. fallocate allocates the blocks (keeping the
    /// size), then ftruncate sets the size: if the filesystem cannot fallocate, the ftruncate
    /// still guarantees the size (writes are then slower, not wrong). Never shrinks.
    pub async fn pre_allocate(&self, size_bytes: u64) -> io::Result<()> {
        self.injected(FileOp::Allocate).await?;
        if let Err(error) = self.file.pre_allocate(size_bytes, true).await {
            let error = io::Error::from(error);
            // glommio's error conversion keeps the kind but drops the errno: EOPNOTSUPP is
            // `Unsupported` here.
            if error.kind() != io::ErrorKind::Unsupported {
                return Err(error);
            }
            tracing::debug!(path = %self.path.display(), "fallocate unsupported; truncate only");
        }
        if self.file_size().await? < size_bytes {
            self.truncate(size_bytes).await?;
        }
        Ok(())
    }

    /// Sets the file size to `size_bytes`; bytes beyond it are discarded, and read as zeros if
    /// the file grows again.
    pub async fn truncate(&self, size_bytes: u64) -> io::Result<()> {
        Ok(self.file.truncate(size_bytes).await?)
    }

    /// The file size (not the log's logical size: segments are preallocated beyond it).
    pub async fn file_size(&self) -> io::Result<u64> {
        Ok(self.file.file_size().await?)
    }

    /// Removes the file's name; the open file stays readable until closed.
    pub async fn remove(&self) -> io::Result<()> {
        Ok(self.file.remove().await?)
    }

    /// Closes the file.
    pub async fn close(self) -> io::Result<()> {
        Ok(self.file.close().await?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use glommio::{LocalExecutorBuilder, Placement};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A fresh directory for one test under `target/test-data/` (ext4 here, so O_DIRECT works;
    /// tmpfs would not), removed when dropped.
    pub(crate) struct TestDir {
        pub(crate) path: PathBuf,
    }

    impl TestDir {
        pub(crate) fn new(name: &str) -> Self {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/test-data")
                .join(format!("{name}-{}-{unique}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            crate::io::probe::write_probe_file(&path).unwrap();
            Self { path }
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }

    /// Runs `future` on a fresh glommio executor with small locked memory (`ulimit -l` is 8 MiB
    /// here), after the iopoll probe for `dir`.
    pub(crate) fn run_in_executor<F, Fut>(dir: PathBuf, body: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(1 << 20)
            .ring_depth(64)
            .spawn(move || async move {
                crate::io::probe::probe_iopoll(&dir).await.unwrap();
                body().await;
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn reads_are_split_and_unaligned_reads_return_exact_bytes() {
        // Proves read_at returns exactly the requested bytes for unaligned ranges, for ranges
        // larger than READ_CHUNK_BYTES_MAX (split reads), and stops short at end of file.
        let dir = TestDir::new("direct-file-read");
        let path = dir.path.join("data");
        run_in_executor(dir.path.clone(), move || async move {
            let file = DirectFile::open_or_create(&path).await.unwrap();
            let len_bytes = READ_CHUNK_BYTES_MAX * 2 + 8192;
            file.pre_allocate(len_bytes as u64).await.unwrap();
            let mut buffer = file.alloc_buffer(len_bytes);
            let pattern: Vec<u8> = (0..len_bytes).map(|i| (i % 251) as u8).collect();
            buffer.as_bytes_mut().copy_from_slice(&pattern);
            file.write_at(buffer, 0).await.unwrap();
            let all = file.read_at(0, len_bytes).await.unwrap();
            assert_eq!(&all[..], &pattern[..]);
            let middle = file.read_at(4095, READ_CHUNK_BYTES_MAX + 3).await.unwrap();
            assert_eq!(&middle[..], &pattern[4095..4095 + READ_CHUNK_BYTES_MAX + 3]);
            let tail = file.read_at(len_bytes as u64 - 10, 100).await.unwrap();
            assert_eq!(&tail[..], &pattern[len_bytes - 10..]);
            let beyond = file.read_at(len_bytes as u64 + 5000, 100).await.unwrap();
            assert!(beyond.is_empty());
            file.close().await.unwrap();
        });
    }
}
