//! The sync journal: a record of how much of each file was durable, for testing what a power
//! loss does (`--sync-journal`). Off unless installed, so each file operation pays one
//! thread-local check.
//!
//! A power loss keeps what a file held when it was last fdatasync'ed and may drop anything
//! written after. A SIGKILL drops nothing: the kernel still writes out what the process wrote.
//! To have a killed broker restart as after a power loss, it appends a line here each time a
//! segment's appender opens its file (`open <bytes> <path>`: the data it holds, durable) and
//! each time that file is fdatasync'ed (`sync <bytes> <path>`: where the data ended when the
//! sync started, now durable). The sync's line is written before the fdatasync returns, so a
//! broker killed right after acknowledging data has it recorded; a test harness then zeroes
//! every file from its durable length on (`durable_lengths`) before the broker starts again.
//! Only segment files are tracked (the data clients are acknowledged for); the Raft and
//! metadata files are written atomically or synced before use.
//!
//! Lines go through one `O_APPEND` file shared by every shard (a line is one write, so lines of
//! different shards never interleave), on the executor's blocking pool.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

thread_local! {
    static JOURNAL: RefCell<Option<Arc<File>>> = const { RefCell::new(None) };
}

/// Opens (creating, appending to) the journal at `path` and installs it for this executor's
/// files. Blocking: call before the executor serves.
pub fn install(path: &Path) -> io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    JOURNAL.with(|slot| *slot.borrow_mut() = Some(Arc::new(file)));
    Ok(())
}

fn installed() -> Option<Arc<File>> {
    JOURNAL.with(|slot| slot.borrow().clone())
}

async fn record(kind: &str, bytes: u64, path: &Path) -> io::Result<()> {
    let Some(journal) = installed() else {
        return Ok(());
    };
    let line = format!("{kind} {bytes} {}\n", path.display());
    glommio::executor()
        .spawn_blocking(move || (&*journal).write_all(line.as_bytes()))
        .await
}

/// Records that `path` was opened holding `bytes`.
pub async fn opened(path: &Path, bytes: u64) -> io::Result<()> {
    record("open", bytes, path).await
}

/// Records that the first `bytes` of `path` are durable.
pub async fn synced(path: &Path, bytes: u64) -> io::Result<()> {
    record("sync", bytes, path).await
}

/// Whether a journal is installed on this executor.
pub fn is_installed() -> bool {
    installed().is_some()
}

/// The durable length of every file a journal names: from each file's last open on, the
/// largest length synced since. Lines that do not parse are skipped (the last one may be
/// torn if the journal's own writer was killed mid-line).
pub fn durable_lengths(journal: &str) -> HashMap<PathBuf, u64> {
    let mut lengths = HashMap::new();
    for line in journal.lines() {
        let mut fields = line.splitn(3, ' ');
        let (Some(kind), Some(bytes), Some(path)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(bytes) = bytes.parse::<u64>() else {
            continue;
        };
        let path = PathBuf::from(path);
        match kind {
            "open" => {
                lengths.insert(path, bytes);
            }
            "sync" => {
                let durable = lengths.entry(path).or_insert(0);
                *durable = (*durable).max(bytes);
            }
            _ => {}
        }
    }
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_lengths_follow_opens_and_syncs() {
        // Proves the journal's reading: a sync raises a file's durable length, an open resets
        // it (what the file holds then is the baseline, even if shorter), and a torn last line
        // is skipped.
        let journal = "open 0 /d/a.log\nsync 4096 /d/a.log\nsync 8192 /d/a.log\n\
                       open 100 /d/b.log\nopen 50 /d/b.log\nsync 40 /d/b.log\n\
                       open 8192 /d/a.log\nsync 12288 /d/a.log\nsync 99";
        let lengths = durable_lengths(journal);
        assert_eq!(lengths[Path::new("/d/a.log")], 12288);
        assert_eq!(lengths[Path::new("/d/b.log")], 50);
        assert_eq!(lengths.len(), 2);
    }
}
