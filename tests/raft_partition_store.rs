//! A replicated partition's Raft log storage over its segment log: openraft's own storage suite
//! run against it on our glommio runtime, and what only this store promises: entries are the
//! partition's batches (normal entries readable by a Kafka reader, Raft's own entries as
//! control batches), and a reopen finds every entry, vote, truncation and purge again.

mod raft_common;

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_lite::StreamExt;
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{
    AsyncRuntime, EntryPayload, Membership, RaftLogReader, RaftSnapshotBuilder, StorageError,
    StoredMembership,
};
use raft_common::TestDir;
use spate::config::{TopicConfig, TopicDefaults};
use spate::log::{PartitionLog, ShardCache};
use spate::protocol::control_batch;
use spate::protocol::record_batch;
use spate::protocol::records::{BatchBuilder, Record};
use spate::raft::GlommioRuntime;
use spate::raft::partition_store::{PartitionEntry, PartitionLogStore, PartitionRaft, RecordBatch};
use spate::raft::vote_store::ShardVotes;

type C = PartitionRaft;

/// One executor at a time (see tests/raft_log_store.rs).
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

/// The applied state the suite's state machine keeps.
#[derive(Default, Clone)]
struct SmState {
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
}

#[derive(Default)]
struct SmShared {
    state: SmState,
    snapshot: Option<(SnapshotMetaOf<C>, Vec<u8>)>,
}

/// The smallest state machine openraft's suite accepts for this type config.
#[derive(Default, Clone)]
struct SuiteStateMachine {
    shared: Rc<RefCell<SmShared>>,
}

impl RaftSnapshotBuilder<C> for SuiteStateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<u8>>, io::Error> {
        let mut shared = self.shared.borrow_mut();
        let meta = SnapshotMetaOf::<C> {
            last_log_id: shared.state.last_applied,
            last_membership: shared.state.membership.clone(),
        };
        let data = serde_json::to_vec(&(&shared.state.last_applied, &shared.state.membership))
            .map_err(io::Error::other)?;
        shared.snapshot = Some((meta.clone(), data.clone()));
        Ok(SnapshotOf::<C, Vec<u8>> {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<C> for SuiteStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SuiteStateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let shared = self.shared.borrow();
        Ok((shared.state.last_applied, shared.state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures_lite::Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id();
            {
                let mut shared = self.shared.borrow_mut();
                shared.state.last_applied = Some(log_id);
                if let EntryPayload::Membership(membership) = entry.payload {
                    shared.state.membership = StoredMembership::new(Some(log_id), membership);
                }
            }
            if let Some(responder) = responder {
                responder.send(());
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let (last_applied, membership) =
            serde_json::from_slice(&snapshot).map_err(io::Error::other)?;
        let mut shared = self.shared.borrow_mut();
        shared.state = SmState {
            last_applied,
            membership,
        };
        shared.snapshot = Some((meta.clone(), snapshot));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Vec<u8>>>, io::Error> {
        Ok(self
            .shared
            .borrow()
            .snapshot
            .clone()
            .map(|(meta, data)| SnapshotOf::<C, Vec<u8>> {
                meta,
                snapshot: data,
            }))
    }
}

fn topic_config() -> TopicConfig {
    let mut config = TopicConfig::from_defaults(&TopicDefaults::default());
    // Small segments, so the suite's logs roll and truncation crosses segments.
    config.segment_bytes = 4096;
    config
}

/// Opens the store of the partition in `dir/p-0`, with the shard's votes in `dir`.
async fn open_store(dir: &Path) -> io::Result<PartitionLogStore> {
    let log = PartitionLog::open(
        dir.join("p-0"),
        topic_config(),
        Rc::new(ShardCache::new(1 << 20)),
    )
    .await
    .map_err(io::Error::other)?;
    let votes = ShardVotes::open(dir).await?;
    PartitionLogStore::open(log, "p-0".to_owned(), votes).await
}

/// Builds each suite case a store in a fresh directory.
struct Builder {
    root: PathBuf,
}

impl StoreBuilder<C, PartitionLogStore, SuiteStateMachine, ()> for Builder {
    async fn build(&self) -> Result<((), PartitionLogStore, SuiteStateMachine), StorageError<C>> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = self
            .root
            .join(format!("case-{}", COUNTER.fetch_add(1, Ordering::Relaxed)));
        let store = open_store(&dir)
            .await
            .map_err(|error| StorageError::write(C::err_from_error(&error)))?;
        Ok(((), store, SuiteStateMachine::default()))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    // Proves the store meets openraft's own storage contract (log state, reads, vote, append,
    // truncate_after, purge, initial-state derivation), on the glommio runtime, with the
    // entries stored as partition-log batches.
    let dir = TestDir::new("raft-partition-suite");
    let root = dir.path.clone();
    run(&dir.path, async move {
        Suite::test_all(Builder { root }).await.unwrap();
    });
}

fn log_id(term: u64, index: u64) -> LogIdOf<C> {
    LogIdOf::<C>::new_term_index(term, index)
}

/// A batch of `values` as a client sends it (base offset 0, no epoch).
fn batch(values: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for value in values {
        builder.push(&Record {
            timestamp_delta: 0,
            key: None,
            value: Some(value.as_bytes()),
            headers: &[],
        });
    }
    builder.finish()
}

fn normal(term: u64, index: u64, values: &[&str]) -> PartitionEntry {
    PartitionEntry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(RecordBatch(batch(values))),
    }
}

/// Appends `entries` and waits until the store reports them durable.
async fn append(store: &mut PartitionLogStore, entries: Vec<PartitionEntry>) {
    let (flushed, durable) = C::oneshot();
    store
        .append(entries, IOFlushed::signal(flushed))
        .await
        .unwrap();
    durable.await.unwrap().unwrap();
}

async fn all_entries(store: &mut PartitionLogStore) -> Vec<PartitionEntry> {
    store
        .get_log_reader()
        .await
        .try_get_log_entries(..)
        .await
        .unwrap()
}

#[test]
fn entries_are_the_partitions_batches_and_survive_a_reopen() {
    // Proves the layout: a blank entry, a membership entry and normal entries of 3, 1 and 2
    // records sit in the partition log as batches at offsets 0, 1, 2, 5, 6 with their terms as
    // leader epochs (Raft's own as control batches); a follower's copy of the leader's stored
    // bytes is appended as is; reading back gives the same entries; after a truncation, a purge
    // and a vote, a reopen finds exactly that state again.
    let dir = TestDir::new("raft-partition-layout");
    let store_dir = dir.sub_dir();
    let follower_dir = dir.sub_dir();
    run(&dir.path, async move {
        let mut store = open_store(&store_dir).await.unwrap();
        let membership = Membership::new_with_defaults(vec![[1u64, 2, 3].into()], []);
        append(
            &mut store,
            vec![
                PartitionEntry {
                    log_id: log_id(1, 1),
                    payload: EntryPayload::Blank,
                },
                PartitionEntry {
                    log_id: log_id(1, 2),
                    payload: EntryPayload::Membership(membership.clone()),
                },
                normal(1, 3, &["a", "b", "c"]),
                normal(2, 4, &["d"]),
                normal(2, 5, &["e", "f"]),
            ],
        )
        .await;
        let offsets: Vec<i64> = (1..=5)
            .map(|index| store.offset_of(index).unwrap())
            .collect();
        assert_eq!(offsets, [0, 1, 2, 5, 6]);
        let log = store.log();
        assert_eq!(log.log_end_offset(), 8);
        assert_eq!(log.end_offset_for_epoch(1), (1, 5));
        let stored = log.read(0, 1 << 20).await.unwrap();
        let stored = Bytes::from(stored.concat());
        let batches: Vec<Bytes> = record_batch::BatchIter::new(stored)
            .map(Result::unwrap)
            .collect();
        assert_eq!(batches.len(), 5);
        assert!(control_batch::parse(&batches[0]).unwrap().is_some());
        assert!(control_batch::parse(&batches[1]).unwrap().is_some());
        assert!(control_batch::parse(&batches[2]).unwrap().is_none());
        let epochs: Vec<i32> = batches
            .iter()
            .map(|batch| {
                record_batch::header(batch)
                    .unwrap()
                    .partition_leader_epoch
                    .get()
            })
            .collect();
        assert_eq!(epochs, [1, 1, 1, 2, 2]);

        let read = all_entries(&mut store).await;
        assert_eq!(read.len(), 5);
        assert_eq!(read[0].payload, EntryPayload::Blank);
        assert_eq!(read[1].payload, EntryPayload::Membership(membership));
        assert_eq!(read[4].log_id, log_id(2, 5));
        let EntryPayload::Normal(RecordBatch(fifth)) = &read[4].payload else {
            panic!("a normal entry");
        };
        assert_eq!(fifth, &batches[4], "read back as stored");

        // A follower given the leader's stored entries holds the same bytes.
        let mut follower = open_store(&follower_dir).await.unwrap();
        append(&mut follower, read.clone()).await;
        let copied = follower.log().read(0, 1 << 20).await.unwrap();
        assert_eq!(
            Bytes::from(copied.concat()),
            Bytes::from(log.read(0, 1 << 20).await.unwrap().concat())
        );

        store.truncate_after(Some(log_id(2, 4))).await.unwrap();
        append(&mut store, vec![normal(3, 5, &["g"])]).await;
        store.purge(log_id(1, 2)).await.unwrap();
        let vote = openraft::impls::Vote::new(3, 2);
        store.save_vote(&vote).await.unwrap();
        let expected: Vec<_> = all_entries(&mut store).await;
        assert_eq!(
            expected
                .iter()
                .map(|entry| entry.index())
                .collect::<Vec<_>>(),
            [3, 4, 5]
        );
        store.log().close().await.unwrap();
        drop(store);

        let mut store = open_store(&store_dir).await.unwrap();
        assert_eq!(all_entries(&mut store).await, expected);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(3, 5)));
        assert_eq!(
            store.get_log_reader().await.read_vote().await.unwrap(),
            Some(vote)
        );
        assert_eq!(store.log().log_start_offset(), 2);
        assert_eq!(store.log().end_offset_for_epoch(2), (2, 6));
        store.log().close().await.unwrap();
        follower.log().close().await.unwrap();
    });
}

#[test]
fn entries_ending_by_an_offset_and_the_placement_of_a_proposed_batch() {
    // Proves `last_index_ending_by` names the last entry wholly below an offset (what a purge to
    // a log start may drop: entries 1 and 2 are one offset each, entry 3 holds offsets 2-4,
    // entry 4 offset 5, entry 5 offsets 6-7), and a placement watch hears where the store put
    // the batch it watches.
    let dir = TestDir::new("raft-partition-ending-by");
    let store_dir = dir.sub_dir();
    run(&dir.path, async move {
        let mut store = open_store(&store_dir).await.unwrap();
        let membership = Membership::new_with_defaults(vec![[1u64, 2, 3].into()], []);
        append(
            &mut store,
            vec![
                PartitionEntry {
                    log_id: log_id(1, 1),
                    payload: EntryPayload::Blank,
                },
                PartitionEntry {
                    log_id: log_id(1, 2),
                    payload: EntryPayload::Membership(membership),
                },
                normal(1, 3, &["a", "b", "c"]),
                normal(1, 4, &["d"]),
            ],
        )
        .await;
        let replica = store.replica_log();
        let watched = batch(&["e", "f"]);
        let watch = replica.watch_placement(&watched);
        append(
            &mut store,
            vec![PartitionEntry {
                log_id: log_id(1, 5),
                payload: EntryPayload::Normal(RecordBatch(watched.clone())),
            }],
        )
        .await;
        let (_, outcome) = watch.placed().await.expect("the watched batch was placed");
        assert_eq!((outcome.base_offset, outcome.last_offset), (6, 7));
        let ending_by: Vec<Option<u64>> = [0, 1, 2, 3, 4, 5, 6, 7, 8, 100]
            .iter()
            .map(|&offset| replica.last_index_ending_by(offset))
            .collect();
        assert_eq!(
            ending_by,
            [
                None,
                Some(1),
                Some(2),
                Some(2),
                Some(2),
                Some(3),
                Some(4),
                Some(4),
                Some(5),
                Some(5)
            ]
        );
    });
}

/// The log files (segments, indexes, log start) of the partition directory `dir`.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            !name.starts_with("raft-") && !name.starts_with("leader-epoch")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_restart_empties_the_log_to_start_after_the_purged_entry_even_across_a_crash() {
    // Proves a replica's reset (`ReplicaLog::restart`, for a replica behind its leader's log
    // start): the entries go, the partition log starts and ends at the given offset, openraft
    // sees the log purged up to the given entry, the next entry lands at that offset, and a
    // reopen finds that state; and a stop between the store's state and the emptied log (the
    // old files back, the state saying a restart is under way) is finished by the next open.
    let dir = TestDir::new("raft-partition-restart");
    let store_dir = dir.sub_dir();
    let saved = dir.sub_dir();
    run(&dir.path, async move {
        let mut store = open_store(&store_dir).await.unwrap();
        append(
            &mut store,
            (1..=20)
                .map(|index| normal(1, index, &["a", "b"]))
                .collect(),
        )
        .await;
        let partition_dir = store_dir.join("p-0");
        store.log().close().await.unwrap();
        drop(store);
        std::fs::create_dir_all(&saved).unwrap();
        for file in log_files(&partition_dir) {
            std::fs::copy(&file, saved.join(file.file_name().unwrap())).unwrap();
        }
        let mut store = open_store(&store_dir).await.unwrap();
        assert_eq!(store.log().log_end_offset(), 40);

        store
            .replica_log()
            .restart(log_id(3, 70), 500)
            .await
            .unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(3, 70)));
        assert_eq!(state.last_log_id, Some(log_id(3, 70)));
        let log = store.log();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
        assert!(all_entries(&mut store).await.is_empty());
        append(&mut store, vec![normal(3, 71, &["x"])]).await;
        assert_eq!(store.offset_of(71), Some(500));
        store.log().close().await.unwrap();
        drop(store);

        let mut store = open_store(&store_dir).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(3, 70)));
        assert_eq!(state.last_log_id, Some(log_id(3, 71)));
        let entries = all_entries(&mut store).await;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].log_id, log_id(3, 71));
        store.log().close().await.unwrap();
        drop(store);

        // The stop came after the state was saved, before the log was emptied.
        let meta_path = partition_dir.join(spate::raft::partition_store::META_FILE_NAME);
        let body = spate::log::crc_sealed::read_file(&meta_path)
            .unwrap()
            .unwrap();
        let mut meta: serde_json::Value = serde_json::from_slice(&body).unwrap();
        meta["restarting"] = serde_json::Value::Bool(true);
        spate::log::crc_sealed::write_file(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
        for file in log_files(&partition_dir) {
            std::fs::remove_file(file).unwrap();
        }
        for file in log_files(&saved) {
            std::fs::copy(&file, partition_dir.join(file.file_name().unwrap())).unwrap();
        }
        let mut store = open_store(&store_dir).await.unwrap();
        let log = store.log();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(3, 70)));
        assert!(all_entries(&mut store).await.is_empty());
        append(&mut store, vec![normal(3, 71, &["y"])]).await;
        assert_eq!(store.offset_of(71), Some(500));
        store.log().close().await.unwrap();
    });
}

#[test]
fn a_state_machine_opened_on_a_log_short_of_its_snapshot_finishes_the_reset() {
    // Proves the other stop an install can suffer: the snapshot file was written (it covers
    // entry 70 of term 3 and says the log goes on at offset 500) but the store was never told,
    // so the log still ends at entry 20. Opening the state machine empties the log to start
    // there, as the install would have; openraft then finds the log purged up to entry 70.
    let dir = TestDir::new("raft-partition-snapshot-ahead");
    let store_dir = dir.sub_dir();
    run(&dir.path, async move {
        let mut store = open_store(&store_dir).await.unwrap();
        append(
            &mut store,
            (1..=20).map(|index| normal(1, index, &["a"])).collect(),
        )
        .await;
        store.log().close().await.unwrap();
        drop(store);
        let membership = serde_json::to_value(StoredMembershipOf::<C>::default()).unwrap();
        let entry = serde_json::to_value(log_id(3, 70)).unwrap();
        let snapshot = serde_json::json!({
            "last_applied": entry,
            "membership": membership,
            "committed_offset": 500,
            "log_start": null,
            "covered": {"last_log_id": entry, "membership": membership, "next_offset": 500},
            "version": 1,
        });
        spate::log::crc_sealed::write_file(
            &store_dir
                .join("p-0")
                .join(spate::raft::partition_state_machine::SNAPSHOT_FILE_NAME),
            serde_json::to_vec(&snapshot).unwrap(),
        )
        .unwrap();

        let mut store = open_store(&store_dir).await.unwrap();
        assert_eq!(
            store.log().log_end_offset(),
            20,
            "the log before the state machine"
        );
        let machine = spate::raft::partition_state_machine::PartitionStateMachine::open(
            store.replica_log(),
            spate::log::signal::Signal::new(),
        )
        .await
        .unwrap();
        let log = store.log();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
        assert_eq!(machine.committed_offset(), 500);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(3, 70)));
        assert_eq!(state.last_log_id, Some(log_id(3, 70)));
        store.log().close().await.unwrap();
    });
}
