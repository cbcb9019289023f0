//! The data-dir lock: `DATA_DIR/lock`, held with an exclusive `flock` for the broker's whole life,
//! so a second broker on the same data dir refuses to start instead of writing into the same
//! segment files.
//!
//! Guarantees: while a [`DataDirLock`] lives, no other `DataDirLock` on that directory can be
//! taken, by this process or any other (flock locks belong to the open file description, so
//! even a second acquire in one process is refused). The lock file holds the holder's pid, for
//! the refusal message; the kernel drops the lock when the holder exits, however it exits, so a
//! crashed broker never leaves a stale lock (its stale pid is overwritten by the next holder).
//! Callers must not: delete or rename the lock file while holding it (a new file would be a new,
//! unlocked lock), or use the data dir before the lock is taken.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name inside the data dir.
pub const LOCK_FILE_NAME: &str = "lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum DataDirLockError {
    /// Another process (or another broker in this one) holds the lock.
    #[error(
        "data dir {dir} is in use by another broker (pid {holder_pid}); stop it first, or use \
         another --data-dir"
    )]
    Held {
        /// The data dir.
        dir: PathBuf,
        /// The pid the holder wrote into the lock file, or "unknown" if it was unreadable.
        holder_pid: String,
    },
    /// The lock file could not be opened, locked or written.
    #[error("locking the data dir {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// An exclusive lock on a data dir; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct DataDirLock {
    /// The locked file: the lock lives as long as this descriptor stays open.
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock on `data_dir` (which must exist) without waiting, and writes this
    /// process's pid into the lock file.
    pub fn acquire(data_dir: &Path) -> Result<Self, DataDirLockError> {
        let path = data_dir.join(LOCK_FILE_NAME);
        let io = |source| DataDirLockError::Io {
            path: path.clone(),
            source,
        };
        // Not truncated at open: until the lock is ours, the file holds the holder's pid.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock takes a descriptor that `file` owns and keeps open for this call.
        #[allow(unsafe_code)]
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(error));
            }
            return Err(DataDirLockError::Held {
                dir: data_dir.to_owned(),
                holder_pid: read_pid(&mut file),
            });
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid the holder wrote, or "unknown" (it may be between taking the lock and writing it).
fn read_pid(file: &mut File) -> String {
    let mut text = String::new();
    match file.read_to_string(&mut text) {
        Ok(_) if !text.trim().is_empty() => text.trim().to_owned(),
        _ => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spate-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_until_the_first_is_dropped() {
        // Proves the lock excludes a second holder (even in the same process), names the pid
        // written by the holder, and is free again once the holder is gone.
        let dir = temp_dir("second");
        let first = DataDirLock::acquire(&dir).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(std::fs::read_to_string(first.path()).unwrap().trim(), pid);
        match DataDirLock::acquire(&dir) {
            Err(DataDirLockError::Held { holder_pid, .. }) => assert_eq!(holder_pid, pid),
            other => panic!("second lock taken: {other:?}"),
        }
        let message = DataDirLock::acquire(&dir).unwrap_err().to_string();
        assert!(message.contains(&format!("pid {pid}")), "{message}");
        drop(first);
        let again = DataDirLock::acquire(&dir).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stale_pid_from_a_dead_holder_does_not_block() {
        // Proves a lock file left by a broker that died (its pid still inside, no flock held)
        // is taken over and gets the new holder's pid.
        let dir = temp_dir("stale");
        std::fs::write(dir.join(LOCK_FILE_NAME), "999999999\n").unwrap();
        let lock = DataDirLock::acquire(&dir).unwrap();
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        drop(lock);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
