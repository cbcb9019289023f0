//! The workaround for glommio 0.9's iopoll probe bug.
//!
//! glommio decides once per executor thread and device whether reads may use the IOPOLL ring, by
//! reading the first block of the first `DmaFile` opened on that device. If that file is empty
//! the read returns 0 bytes without reaching the device, glommio wrongly caches "pollable", and
//! on devices without poll queues (virtio, NVMe without `poll_queues`, dm/LVM) every later read of
//! every file on the device fails with EOPNOTSUPP (os error 95). A partition's first segment is
//! exactly such an empty file.
//!
//! Guarantees: after `probe_iopoll(data_dir)` has returned Ok on an executor, that executor's
//! probe for the data directory's device was made against 4 KiB of real data, so its answer is
//! right. Callers must: run `write_probe_file` once (from `main`, before executors start), then
//! `probe_iopoll` on every executor before it opens any segment; and must not open any other
//! `DmaFile` on the device first. One probe file per data device.

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::DmaFile;

use crate::config::BLOCK_BYTES;

/// The probe file's name inside the data directory.
pub const PROBE_FILE_NAME: &str = ".iopoll-probe";

/// Bytes in the probe file: two blocks, so a one-block probe read is served from real data.
const PROBE_FILE_BYTES: usize = 2 * BLOCK_BYTES as usize;

/// Writes `DATA_DIR/.iopoll-probe` (8 KiB of non-zero bytes) with `std::fs` and syncs it. Call
/// once, before any executor starts. Returns the probe file's path.
pub fn write_probe_file(data_dir: &Path) -> io::Result<PathBuf> {
    let path = data_dir.join(PROBE_FILE_NAME);
    // Non-zero so nobody mistakes the probe for a preallocated (zeroed) file.
    std::fs::write(&path, [0xA5u8; PROBE_FILE_BYTES])?;
    std::fs::File::open(&path)?.sync_all()?;
    Ok(path)
}

/// Primes this executor's iopoll probe for the data directory's device: opens the probe file as
/// the executor's first `DmaFile` on that device and reads one block. Call on every executor
/// before opening segments.
pub async fn probe_iopoll(data_dir: &Path) -> io::Result<()> {
    let path = data_dir.join(PROBE_FILE_NAME);
    let file = DmaFile::open(&path).await?;
    let read = file.read_at_aligned(0, BLOCK_BYTES as usize).await;
    let close = file.close().await;
    let read = read?;
    close?;
    if read.len() != BLOCK_BYTES as usize {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "iopoll probe file {} holds {} bytes, needs {BLOCK_BYTES}: run write_probe_file first",
                path.display(),
                read.len()
            ),
        ));
    }
    tracing::debug!(path = %path.display(), "iopoll probe primed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::io::direct_file::DirectFile;
    use crate::io::direct_file::tests::{TestDir, run_in_executor};

    #[test]
    fn empty_segment_is_readable_after_the_probe() {
        // Proves the workaround: with the probe done first, a freshly created EMPTY file (as a
        // new segment is) can be written and read back with O_DIRECT. Measured on this machine
        // (kernel 6.18, ext4 on virtio) without the probe, the same sequence fails: write_at
        // succeeds, then read_at fails with "Operation not supported (os error 95)", because the
        // empty file was the executor's first DmaFile on the device. The test does not depend on
        // the bug still being there.
        let dir = TestDir::new("probe");
        let path = dir.path.join("00000000000000000000.log");
        run_in_executor(dir.path.clone(), move || async move {
            let file = DirectFile::open_or_create(&path).await.unwrap();
            assert_eq!(file.file_size().await.unwrap(), 0);
            file.pre_allocate(4096).await.unwrap();
            let mut buffer = file.alloc_buffer(4096);
            buffer.as_bytes_mut().fill(7);
            file.write_at(buffer, 0).await.unwrap();
            let read = file.read_at(0, 4096).await.unwrap();
            assert_eq!(read.len(), 4096);
            assert!(read.iter().all(|&byte| byte == 7));
            file.close().await.unwrap();
        });
    }
}
