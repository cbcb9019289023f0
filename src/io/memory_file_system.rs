//! Telling whether a directory lives on a memory file system (tmpfs, ramfs), where every fsync
//! succeeds and nothing survives a power loss or reboot.
//!
//! O_DIRECT works on tmpfs on recent kernels, so the broker runs there without complaint; this
//! is how start-up finds out that "acknowledged after fdatasync" means nothing there, to say so.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `f_type` of tmpfs (and of /dev/shm), from linux/magic.h.
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// `f_type` of ramfs, from linux/magic.h.
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// The memory file system `path` is on ("tmpfs" or "ramfs"), or `None` for any other.
pub fn memory_file_system(path: &Path) -> std::io::Result<Option<&'static str>> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and `stat` points to
    // writable memory of the size statfs fills.
    #[allow(unsafe_code)]
    let result = unsafe { libc::statfs(path.as_ptr(), stat.as_mut_ptr()) };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statfs returned 0, so it filled the whole struct.
    #[allow(unsafe_code)]
    let stat = unsafe { stat.assume_init() };
    // The field's integer type differs between architectures; magic numbers fit them all.
    #[allow(clippy::unnecessary_cast)]
    Ok(match stat.f_type as i64 {
        TMPFS_MAGIC => Some("tmpfs"),
        RAMFS_MAGIC => Some("ramfs"),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_is_recognised_and_a_disk_file_system_is_not() {
        // Proves a tmpfs directory is named as such and the test build's target dir (a disk
        // file system, as the test harness requires for O_DIRECT) is not.
        let disk = Path::new(env!("CARGO_MANIFEST_DIR"));
        if memory_file_system(disk).unwrap().is_some() {
            eprintln!("skipped: the source tree itself is on a memory file system");
            return;
        }
        assert_eq!(memory_file_system(disk).unwrap(), None);
        let shm = Path::new("/dev/shm");
        let shm_is_tmpfs = std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .any(|line| line.split(' ').nth(1) == Some("/dev/shm") && line.contains(" tmpfs "));
        if !shm_is_tmpfs {
            eprintln!("skipped: /dev/shm is not a tmpfs mount here");
            return;
        }
        assert_eq!(memory_file_system(shm).unwrap(), Some("tmpfs"));
        assert!(memory_file_system(Path::new("/no/such/dir")).is_err());
    }
}
