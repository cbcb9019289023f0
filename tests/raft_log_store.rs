//! The controller's Raft log storage: openraft's own storage suite run against it on our glommio
//! runtime, and the recovery rules it shares with the partition logs (torn tail cut, a bad
//! record followed by valid ones refused with the file and file position).
//!
//! openraft's suite needs a state machine: the minimal in-memory one in `raft_common`.

mod raft_common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::type_config::alias::LogIdOf;
use openraft::{AsyncRuntime, EntryPayload, RaftLogReader, StorageError};
use raft_common::{TestConfig, TestDir, TestStateMachine};
use spate::raft::GlommioRuntime;
use spate::raft::log_store::{LOG_FILE_NAME, RaftLogError, RaftLogStore};

type Store = RaftLogStore<TestConfig>;
type Entry = <TestConfig as openraft::RaftTypeConfig>::Entry;

/// Small writes, so a bit flip can sit farther from the end than one torn write reaches.
const WRITE_BYTES_MAX: u64 = 16 * 1024;

/// Serializes this binary's executors. With several running at once (one per test thread),
/// one of them now and then parks in io_uring forever with no I/O left to complete (seen in
/// about one full run in four; never with one test thread): an open issue, see the report.
static EXECUTOR_TURN: Mutex<()> = Mutex::new(());

fn run<F: Future<Output = ()>>(dir: &Path, body: F) {
    let _turn = EXECUTOR_TURN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut rt = GlommioRuntime::new(1);
    rt.block_on(async {
        spate::io::probe::probe_iopoll(dir).await.unwrap();
        body.await;
    });
}

/// Builds each suite case a store in a fresh directory.
struct Builder {
    root: PathBuf,
}

impl StoreBuilder<TestConfig, Store, TestStateMachine, ()> for Builder {
    async fn build(&self) -> Result<((), Store, TestStateMachine), StorageError<TestConfig>> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = self
            .root
            .join(format!("case-{}", COUNTER.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir)
            .map_err(|error| StorageError::write(TestConfig::err_from_error(&error)))?;
        let store = Store::open(&dir, WRITE_BYTES_MAX)
            .await
            .map_err(|error| StorageError::write(TestConfig::err_from_error(&error)))?;
        Ok(((), store, TestStateMachine::default()))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    // Proves the store meets openraft's own storage contract (log state, reads, vote, append,
    // truncate_after, purge, initial-state derivation), run on the glommio runtime.
    let dir = TestDir::new("raft-log-suite");
    let root = dir.path.clone();
    run(&dir.path, async move {
        Suite::test_all(Builder { root }).await.unwrap();
    });
}

fn log_id(term: u64, index: u64) -> LogIdOf<TestConfig> {
    openraft::testing::log_id::<TestConfig>(term, 0, index)
}

fn entry(term: u64, index: u64, data: String) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(data),
    }
}

async fn append(store: &mut Store, entries: Vec<Entry>) {
    store.append(entries, IOFlushed::noop()).await.unwrap();
}

async fn indexes(store: &mut Store) -> Vec<u64> {
    let mut reader = store.get_log_reader().await;
    let entries = reader.try_get_log_entries(..).await.unwrap();
    entries.iter().map(|entry| entry.index()).collect()
}

#[test]
fn entries_vote_truncation_and_purge_survive_a_reopen() {
    // Proves what append, save_vote, truncate_after and purge report durable is what a reopen
    // recovers: the cut entries stay cut, the purge stays in force.
    let dir = TestDir::new("raft-log-reopen");
    let store_dir = dir.sub_dir();
    run(&dir.path, async move {
        let mut store = Store::open(&store_dir, WRITE_BYTES_MAX).await.unwrap();
        let entries = (1..=40)
            .map(|i| entry(1, i, format!("v{i}-{}", "x".repeat(300))))
            .collect();
        append(&mut store, entries).await;
        let vote = openraft::impls::Vote::new(3, 1);
        store.save_vote(&vote).await.unwrap();
        store.purge(log_id(1, 5)).await.unwrap();
        store.truncate_after(Some(log_id(1, 30))).await.unwrap();
        append(&mut store, vec![entry(2, 31, "new".to_owned())]).await;
        drop(store);

        let mut store = Store::open(&store_dir, WRITE_BYTES_MAX).await.unwrap();
        assert_eq!(indexes(&mut store).await, (6..=31).collect::<Vec<_>>());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 5)));
        assert_eq!(state.last_log_id, Some(log_id(2, 31)));
        let mut reader = store.get_log_reader().await;
        assert_eq!(reader.read_vote().await.unwrap(), Some(vote));
    });
}

/// Writes `count` entries of ~300 bytes, each append its own write, and returns the file.
async fn write_entries(store_dir: &Path, count: u64) -> PathBuf {
    let mut store = Store::open(store_dir, WRITE_BYTES_MAX).await.unwrap();
    for i in 1..=count {
        append(
            &mut store,
            vec![entry(1, i, format!("{i}-{}", "y".repeat(300)))],
        )
        .await;
    }
    store_dir.join(LOG_FILE_NAME)
}

fn data_end(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    bytes.iter().rposition(|&b| b != 0).unwrap() + 1
}

fn flip_byte(path: &Path, position: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[position] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_torn_tail_is_cut_and_the_log_appends_after_it() {
    // Proves a damaged last record (what a crash mid-write leaves) is cut at open, the entries
    // before it survive, and appends continue cleanly after the cut.
    let dir = TestDir::new("raft-log-torn");
    let store_dir = dir.sub_dir();
    let path = store_dir.join(LOG_FILE_NAME);
    run(&dir.path, {
        let store_dir = store_dir.clone();
        async move {
            write_entries(&store_dir, 20).await;
        }
    });
    flip_byte(&path, data_end(&path) - 10);
    run(&dir.path, async move {
        let mut store = Store::open(&store_dir, WRITE_BYTES_MAX).await.unwrap();
        assert_eq!(indexes(&mut store).await, (1..=19).collect::<Vec<_>>());
        append(&mut store, vec![entry(1, 20, "again".to_owned())]).await;
        drop(store);
        let mut store = Store::open(&store_dir, WRITE_BYTES_MAX).await.unwrap();
        assert_eq!(indexes(&mut store).await, (1..=20).collect::<Vec<_>>());
    });
}

#[test]
fn a_bit_flip_before_valid_records_fails_the_open_naming_file_and_position() {
    // Proves damage followed by valid records farther than one torn write reaches is refused
    // as corruption (never silently cut: those entries were acknowledged), and the error names
    // the file and the damaged record's file position.
    let dir = TestDir::new("raft-log-bitflip");
    let store_dir = dir.sub_dir();
    let path = store_dir.join(LOG_FILE_NAME);
    run(&dir.path, {
        let store_dir = store_dir.clone();
        async move {
            write_entries(&store_dir, 200).await;
        }
    });
    // The 3rd record starts after two records of equal size.
    let bytes = std::fs::read(&path).unwrap();
    let record_bytes = 8 + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let third = 2 * record_bytes;
    assert!(data_end(&path) > third + WRITE_BYTES_MAX as usize + 4096 * 2);
    flip_byte(&path, third + 20);
    run(&dir.path, async move {
        match Store::open(&store_dir, WRITE_BYTES_MAX).await {
            Err(RaftLogError::Corrupt {
                path: error_path,
                file_position,
                ..
            }) => {
                assert_eq!(error_path, path);
                assert_eq!(file_position, third as u64);
            }
            Err(other) => panic!("expected corruption, got {other}"),
            Ok(_) => panic!("a corrupt log must not open"),
        }
    });
}
