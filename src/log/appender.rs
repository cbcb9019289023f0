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
//! ahead of the writes, so no write extends it.
//!
//! Callers must not write to the file by other means while an appender owns it, and must not
//! assume an appended byte is durable: that takes the file's `fdatasync`.

use std::io;
use std::rc::Rc;

use bytes::Bytes;

use crate::config::BLOCK_BYTES;
use crate::io::{DirectFile, align_down, align_up};

/// How far ahead a segment file is preallocated. Each step is one fallocate + ftruncate (a file
/// metadata change, journaled); 32 MiB keeps that to one per ~8k writes of 4 KiB and is
/// Redpanda's value. A step never goes beyond the segment's size limit (plus the last batch).
pub const PREALLOCATE_STEP_BYTES: u64 = 32 * 1024 * 1024;

const _: () = assert!(PREALLOCATE_STEP_BYTES.is_multiple_of(BLOCK_BYTES));

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
}

impl Appender {
    /// An appender for `file` whose data ends at `logical_size_bytes`. Reads back the partial
    /// last block (once, at open) so the next write can rewrite it.
    pub async fn open(
        file: Rc<DirectFile>,
        logical_size_bytes: u64,
        allocation_limit_bytes: u64,
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
        Ok(Self {
            file,
            logical_size_bytes,
            tail_block,
            allocated_bytes,
            allocation_limit_bytes: align_up(allocation_limit_bytes),
        })
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
        self.logical_size_bytes = new_logical_size_bytes;
        self.tail_block = new_tail;
        Ok(new_logical_size_bytes)
    }

    /// Grows the file (in `PREALLOCATE_STEP_BYTES` steps, up to the allocation limit) so that a
    /// write ending at `write_end` does not extend it.
    async fn ensure_allocated(&mut self, write_end: u64) -> io::Result<()> {
        if write_end <= self.allocated_bytes {
            return Ok(());
        }
        let stepped = write_end.div_ceil(PREALLOCATE_STEP_BYTES) * PREALLOCATE_STEP_BYTES;
        let target = stepped.min(self.allocation_limit_bytes).max(write_end);
        self.file.pre_allocate(target).await?;
        self.allocated_bytes = target;
        Ok(())
    }
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
            let mut appender = Appender::open(file.clone(), 0, 1 << 30).await.unwrap();
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
            let mut reopened = Appender::open(file.clone(), logical, 1 << 30)
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
}
