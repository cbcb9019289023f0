//! `Appender`: aligned O_DIRECT appends to the active segment's file.
//!
//! O_DIRECT writes whole 4 KiB blocks at block-aligned positions, but batches are any size. The
//! appender keeps the partially filled last block in memory and starts every write with it, so
//! the write begins at that block's (aligned) start and rewrites it with the new bytes after the
//! old ones; the tail of each write is padded with zeros to the block boundary (the padding is
//! overwritten by the next write). Many batches go out in one write (group commit is decided by
//! the caller, which passes all pending batches at once).
//!
//! Guarantees: after `append` returns Ok, the file holds exactly the appended bytes from 0 to
//! `logical_size_bytes()`, followed by zeros up to the block boundary; a failed append changes
//! nothing (the same bytes can be appended again). `append` takes `&mut self`, so there is only
//! ever one write in flight per appender: two writes never cover the same block (io_uring would
//! complete them in any order and the older bytes could land last). The file is preallocated
//! ahead of the writes, so no write extends it, and a write waits for the preallocation it needs
//! (it is awaited first, in the same call), so it never races one.
//!
//! Preallocation follows the partition's write rate: the first step is small
//! (`PREALLOCATE_STEP_BYTES_MIN`, so an idle partition costs kilobytes), a step used up within
//! `PREALLOCATE_STEP_GROW_WITHIN` doubles the next one (up to `PREALLOCATE_STEP_BYTES_MAX`, so a
//! busy partition extends its file rarely), and a slower one halves it. The step carries over to
//! the next segment's appender at a roll.
//!
//! Callers must not write to the file by other means while an appender owns it, and must not
//! assume an appended byte is durable: that takes the file's `fdatasync`.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::BLOCK_BYTES;
use crate::io::{DirectFile, align_down, align_up};

/// The first (and smallest) step a segment file is preallocated ahead of its data: what a
/// partition written a little, or not at all since its last roll, costs on disk beyond its data
/// (a 1,000-partition topic holding a few bytes each takes tens of MiB, not 32 GiB).
pub const PREALLOCATE_STEP_BYTES_MIN: u64 = 64 * 1024;
/// The largest step. Each step is one fallocate + ftruncate (a file metadata change, journaled)
/// awaited before the write that needs it; 32 MiB keeps that to one per 32 writes of 1 MiB at
/// full speed and is Redpanda's value. A step never goes beyond the segment's size limit (plus
/// the last batch).
pub const PREALLOCATE_STEP_BYTES_MAX: u64 = 32 * 1024 * 1024;
/// A step used up within this time doubles the next one, else the next one is halved: a
/// partition's step settles near what it writes in about this time (one preallocation per
/// second at most while its rate is below 32 MiB/s).
pub const PREALLOCATE_STEP_GROW_WITHIN: Duration = Duration::from_secs(1);

const _: () = assert!(PREALLOCATE_STEP_BYTES_MIN.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(PREALLOCATE_STEP_BYTES_MAX.is_multiple_of(PREALLOCATE_STEP_BYTES_MIN));

/// Appends bytes to one file with aligned O_DIRECT writes.
#[derive(Debug)]
pub struct Appender {
    file: Rc<DirectFile>,
    logical_size_bytes: u64,
    /// The bytes of the last, partially filled block: `[align_down(logical), logical)`.
    tail_block: Vec<u8>,
    allocated_bytes: u64,
    /// Preallocation stops here (the segment's size limit, block-aligned), unless a write needs
    /// more.
    allocation_limit_bytes: u64,
    /// The next preallocation's step (a power-of-two multiple of `PREALLOCATE_STEP_BYTES_MIN`).
    step_bytes: u64,
    /// When this appender last preallocated: how fast the last step was used up.
    allocated_at: Option<Instant>,
}

impl Appender {
    /// An appender for `file` whose data ends at `logical_size_bytes`. Reads back the partial
    /// last block (once, at open) so the next write can rewrite it. `step_bytes` is the first
    /// preallocation step (`PREALLOCATE_STEP_BYTES_MIN`, or the previous segment's `step_bytes`
    /// at a roll).
    pub async fn open(
        file: Rc<DirectFile>,
        logical_size_bytes: u64,
        allocation_limit_bytes: u64,
        step_bytes: u64,
    ) -> io::Result<Self> {
        let tail_start = align_down(logical_size_bytes);
        let tail_len_bytes = (logical_size_bytes - tail_start) as usize;
        let tail_block = if tail_len_bytes == 0 {
            Vec::with_capacity(BLOCK_BYTES as usize)
        } else {
            let bytes = file.read_at(tail_start, tail_len_bytes).await?;
            if bytes.len() != tail_len_bytes {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} ends before its logical size {logical_size_bytes}",
                        file.path().display()
                    ),
                ));
            }
            bytes.to_vec()
        };
        let allocated_bytes = file.file_size().await?;
        file.track_data_end(logical_size_bytes).await?;
        Ok(Self {
            file,
            logical_size_bytes,
            tail_block,
            allocated_bytes,
            allocation_limit_bytes: align_up(allocation_limit_bytes),
            step_bytes: step_bytes.clamp(PREALLOCATE_STEP_BYTES_MIN, PREALLOCATE_STEP_BYTES_MAX),
            allocated_at: None,
        })
    }

    /// The next preallocation step, for the next segment's appender.
    pub fn step_bytes(&self) -> u64 {
        self.step_bytes
    }

    /// Where the data ends.
    pub fn logical_size_bytes(&self) -> u64 {
        self.logical_size_bytes
    }

    /// The file appended to.
    pub fn file(&self) -> &Rc<DirectFile> {
        &self.file
    }

    /// Appends `chunks` in one aligned write (rewriting the partial last block first). Returns
    /// the new logical size. On error nothing changed and the same chunks may be appended again.
    pub async fn append(&mut self, chunks: &[Bytes]) -> io::Result<u64> {
        let append_bytes: u64 = chunks.iter().map(|chunk| chunk.len() as u64).sum();
        if append_bytes == 0 {
            return Ok(self.logical_size_bytes);
        }
        let write_position = align_down(self.logical_size_bytes);
        assert!(write_position + self.tail_block.len() as u64 == self.logical_size_bytes);
        let new_logical_size_bytes = self.logical_size_bytes + append_bytes;
        let write_end = align_up(new_logical_size_bytes);
        self.ensure_allocated(write_end).await?;

        // The one copy O_DIRECT needs: into an aligned buffer, then zeros to the block end so the
        // padding never writes stale bytes to disk.
        let mut buffer = self
            .file
            .alloc_buffer((write_end - write_position) as usize);
        let bytes = buffer.as_bytes_mut();
        let mut filled = self.tail_block.len();
        bytes[..filled].copy_from_slice(&self.tail_block);
        for chunk in chunks {
            bytes[filled..filled + chunk.len()].copy_from_slice(chunk);
            filled += chunk.len();
        }
        bytes[filled..].fill(0);
        let new_tail_start = (align_down(new_logical_size_bytes) - write_position) as usize;
        let new_tail = bytes[new_tail_start..filled].to_vec();

        self.file.write_at(buffer, write_position).await?;
        self.file.data_written(new_logical_size_bytes);
        self.logical_size_bytes = new_logical_size_bytes;
        self.tail_block = new_tail;
        Ok(new_logical_size_bytes)
    }

    /// Grows the file one step beyond `write_end` (up to the allocation limit) so that a write
    /// ending there does not extend it, and adapts the step to how fast the last one was used.
    async fn ensure_allocated(&mut self, write_end: u64) -> io::Result<()> {
        if write_end <= self.allocated_bytes {
            return Ok(());
        }
        let now = Instant::now();
        let step_bytes = next_step_bytes(self.step_bytes, self.allocated_at, now);
        let target = (write_end + step_bytes)
            .min(self.allocation_limit_bytes)
            .max(write_end);
        self.file.pre_allocate(target).await?;
        self.allocated_bytes = target;
        self.step_bytes = step_bytes;
        self.allocated_at = Some(now);
        Ok(())
    }
}

/// The step after `step_bytes`, preallocated at `now`: doubled if the previous step (made at
/// `allocated_at`) was used up within `PREALLOCATE_STEP_GROW_WITHIN`, halved if not, unchanged
/// for an appender's first preallocation.
fn next_step_bytes(step_bytes: u64, allocated_at: Option<Instant>, now: Instant) -> u64 {
    let Some(allocated_at) = allocated_at else {
        return step_bytes;
    };
    let next = if now.duration_since(allocated_at) <= PREALLOCATE_STEP_GROW_WITHIN {
        step_bytes * 2
    } else {
        step_bytes / 2
    };
    next.clamp(PREALLOCATE_STEP_BYTES_MIN, PREALLOCATE_STEP_BYTES_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::direct_file::tests::{TestDir, run_in_executor};

    #[test]
    fn every_write_size_reads_back_byte_identical() {
        // Proves the tail-block rewrite and zero padding: appends of every size 1..=8192 bytes
        // (crossing block boundaries at every phase, some several blocks long, some grouped two
        // at a time) leave the file byte-identical to what was appended, followed only by
        // zeros, and an appender reopened at the logical size continues where it stopped.
        let dir = TestDir::new("appender");
        let path = dir.path.join("00000000000000000000.log");
        run_in_executor(dir.path.clone(), move || async move {
            let file = Rc::new(DirectFile::open_or_create(&path).await.unwrap());
            let mut appender = Appender::open(file.clone(), 0, 1 << 30, PREALLOCATE_STEP_BYTES_MIN)
                .await
                .unwrap();
            let mut expected = Vec::new();
            for size in 1..=8192usize {
                let chunk: Vec<u8> = (0..size)
                    .map(|i| ((i * 7 + size) % 255 + 1) as u8)
                    .collect();
                expected.extend_from_slice(&chunk);
                let chunks = if size % 3 == 0 {
                    // Two chunks in one write, as a group commit passes them.
                    let half = size / 2;
                    vec![
                        Bytes::copy_from_slice(&chunk[..half]),
                        Bytes::copy_from_slice(&chunk[half..]),
                    ]
                } else {
                    vec![Bytes::from(chunk)]
                };
                let size_after = appender.append(&chunks).await.unwrap();
                assert_eq!(size_after, expected.len() as u64);
                if size % 1024 == 0 {
                    glommio::yield_if_needed().await;
                }
            }
            let logical = appender.logical_size_bytes();
            let read = file.read_at(0, expected.len() + 8192).await.unwrap();
            assert_eq!(&read[..expected.len()], &expected[..]);
            assert!(read[expected.len()..].iter().all(|&byte| byte == 0));

            // Reopen at the logical size: the tail block is read back and extended in place.
            drop(appender);
            let mut reopened =
                Appender::open(file.clone(), logical, 1 << 30, PREALLOCATE_STEP_BYTES_MIN)
                    .await
                    .unwrap();
            for size in [1usize, 4095, 4096, 4097, 10_000] {
                let chunk = vec![(size % 250 + 3) as u8; size];
                expected.extend_from_slice(&chunk);
                reopened.append(&[Bytes::from(chunk)]).await.unwrap();
            }
            let read = file.read_at(0, expected.len()).await.unwrap();
            assert_eq!(&read[..], &expected[..]);
        });
    }

    #[test]
    fn the_step_doubles_while_used_quickly_and_halves_when_not() {
        // Proves the step follows the write rate: unchanged at an appender's first
        // preallocation, doubled when the last step went within PREALLOCATE_STEP_GROW_WITHIN,
        // halved after a slower one, and kept within [MIN, MAX].
        let now = Instant::now();
        let quick = Some(now - Duration::from_millis(10));
        let slow = Some(now - PREALLOCATE_STEP_GROW_WITHIN - Duration::from_millis(1));
        let min = PREALLOCATE_STEP_BYTES_MIN;
        assert_eq!(next_step_bytes(4 * min, None, now), 4 * min);
        assert_eq!(next_step_bytes(4 * min, quick, now), 8 * min);
        assert_eq!(next_step_bytes(4 * min, slow, now), 2 * min);
        assert_eq!(next_step_bytes(min, slow, now), min);
        let max = PREALLOCATE_STEP_BYTES_MAX;
        assert_eq!(next_step_bytes(max, quick, now), max);
    }

    #[test]
    fn a_small_first_step_grows_under_a_stream_of_writes() {
        // Proves a file written a little is allocated one small step beyond its data (kilobytes,
        // in st_blocks too), that a fast stream of writes grows the step (fewer, larger
        // preallocations), that every write stays within the preallocated size, and that a
        // roll's appender starts from the step the last one reached.
        use std::os::unix::fs::MetadataExt;
        let dir = TestDir::new("appender-steps");
        let path = dir.path.join("00000000000000000000.log");
        run_in_executor(dir.path.clone(), move || async move {
            let file = Rc::new(DirectFile::open_or_create(&path).await.unwrap());
            let mut appender = Appender::open(file.clone(), 0, 1 << 30, PREALLOCATE_STEP_BYTES_MIN)
                .await
                .unwrap();
            appender
                .append(&[Bytes::from(vec![7u8; 100])])
                .await
                .unwrap();
            let first_size = file.file_size().await.unwrap();
            assert_eq!(first_size, BLOCK_BYTES + PREALLOCATE_STEP_BYTES_MIN);
            let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
            assert!(allocated <= first_size, "{allocated} bytes allocated");
            let chunk = Bytes::from(vec![3u8; 256 * 1024]);
            let mut sizes = vec![first_size];
            for _ in 0..64 {
                let logical = appender.append(std::slice::from_ref(&chunk)).await.unwrap();
                let size = file.file_size().await.unwrap();
                assert!(align_up(logical) <= size, "a write extended the file");
                if size != *sizes.last().unwrap() {
                    sizes.push(size);
                }
            }
            // 16 MiB written: fixed 64 KiB steps would take over 200 preallocations.
            assert!(sizes.len() < 16, "{} preallocations", sizes.len());
            assert!(appender.step_bytes() >= 8 * PREALLOCATE_STEP_BYTES_MIN);
            let next_path = path.with_file_name("00000000000000000001.log");
            let next = Rc::new(DirectFile::open_or_create(&next_path).await.unwrap());
            let mut rolled = Appender::open(next.clone(), 0, 1 << 30, appender.step_bytes())
                .await
                .unwrap();
            rolled.append(&[Bytes::from(vec![1u8; 10])]).await.unwrap();
            assert_eq!(
                next.file_size().await.unwrap(),
                BLOCK_BYTES + appender.step_bytes()
            );
        });
    }
}
