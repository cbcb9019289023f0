//! `PartitionStateMachine`: what applying a replicated partition's committed entries does.
//!
//! The entries are already the partition's log, so there is no state to build: applying an
//! entry moves the commit point, the offset below which every batch is on a majority of the
//! replicas. That is the partition's high watermark: consumers read below it only, so nothing
//! they read can be taken back by a failover, and an acks=all produce is answered once its
//! batch is below it.
//!
//! Retention and DeleteRecords: the leader writes its decision to move the log start as an
//! entry (`CONTROL_TYPE_LOG_START`); applying it records the new log start here and wakes the
//! shard's log-start task, which purges the replica's own log up to it
//! (`Replica::purge_to_decided`).
//!
//! Snapshots: openraft's snapshot of this machine is its applied position (log id, membership,
//! commit point, log start), built on request before a purge and kept in `raft-snapshot` (a
//! purged log no longer holds the membership, and openraft reads the applied position back at
//! start-up). The log itself is the data, so a snapshot is built only once the log is
//! fdatasync'ed up to its commit point. A replica behind the leader's log start would need a
//! Kafka-style reset (not built yet; leaders only purge what every replica holds), so
//! installing a snapshot is refused with an error rather than pretending the log came with it.

use std::cell::{Cell, RefCell};
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use futures_lite::StreamExt;
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, RaftSnapshotBuilder, StoredMembership};

use crate::log::crc_sealed;
use crate::log::signal::{Listener, Signal};
use crate::protocol::control_batch::{self, CONTROL_TYPE_LOG_START};

use super::partition_store::{PartitionRaft, RecordBatch, ReplicaLog};

type C = PartitionRaft;

/// The file holding the last snapshot in the partition directory.
pub const SNAPSHOT_FILE_NAME: &str = "raft-snapshot";

struct State {
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    snapshot: Option<(SnapshotMetaOf<C>, Vec<u8>)>,
    /// The last log start the leader decided (applied from a `CONTROL_TYPE_LOG_START` entry),
    /// with that entry's index.
    log_start: Option<(u64, i64)>,
}

/// What a snapshot holds (its data, JSON in `raft-snapshot`).
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotData {
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    committed_offset: i64,
    log_start: Option<(u64, i64)>,
}

/// The state machine of one replicated partition; clones share it.
#[derive(Clone)]
pub struct PartitionStateMachine {
    log: ReplicaLog,
    state: Rc<RefCell<State>>,
    /// The commit point: one past the last offset of the last applied entry.
    committed_offset: Rc<Cell<i64>>,
    /// Notified when the commit point moves.
    committed: Rc<Signal>,
    /// Notified when an applied entry decides a new log start (shared by a shard's replicas).
    log_start_decided: Rc<Signal>,
}

impl PartitionStateMachine {
    /// The state machine of the replicated log `log`, from its last snapshot if it has one;
    /// without one, the commit point starts at the log start (nothing above it is known to be
    /// committed). `log_start_decided` is notified when an applied entry decides a new log
    /// start.
    pub async fn open(log: ReplicaLog, log_start_decided: Rc<Signal>) -> io::Result<Self> {
        let path = Self::snapshot_path(&log);
        let read_path = path.clone();
        let body = glommio::executor()
            .spawn_blocking(move || crc_sealed::read_file(&read_path))
            .await?;
        let saved: Option<SnapshotData> = body
            .map(|body| {
                serde_json::from_slice(&body).map_err(|error| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is damaged: {error}", path.display()),
                    )
                })
            })
            .transpose()?;
        let partition_log = log.log();
        let log_start = partition_log.log_start_offset();
        let mut state = State {
            last_applied: None,
            membership: StoredMembershipOf::<C>::default(),
            snapshot: None,
            log_start: None,
        };
        let mut committed_offset = log_start;
        if let Some(saved) = saved {
            // The log was fdatasync'ed up to the snapshot's commit point before it was saved.
            committed_offset = saved
                .committed_offset
                .clamp(log_start, partition_log.log_end_offset().max(log_start));
            let data = serde_json::to_vec(&saved).map_err(io::Error::other)?;
            state.snapshot = Some((
                SnapshotMetaOf::<C> {
                    last_log_id: saved.last_applied,
                    last_membership: saved.membership.clone(),
                },
                data,
            ));
            state.last_applied = saved.last_applied;
            state.membership = saved.membership;
            state.log_start = saved.log_start;
        }
        partition_log.set_commit_limit(committed_offset);
        Ok(Self {
            log,
            state: Rc::new(RefCell::new(state)),
            committed_offset: Rc::new(Cell::new(committed_offset)),
            committed: Signal::new(),
            log_start_decided,
        })
    }

    fn snapshot_path(log: &ReplicaLog) -> PathBuf {
        log.log().dir().join(SNAPSHOT_FILE_NAME)
    }

    /// The last log start the leader decided, with the index of the entry that says so.
    pub fn log_start_decided(&self) -> Option<(u64, i64)> {
        self.state.borrow().log_start
    }

    /// The commit point: every offset below it is on a majority of the replicas.
    pub fn committed_offset(&self) -> i64 {
        self.committed_offset.get()
    }

    /// Resolves the next time the commit point moves. Take it before checking, then await it.
    pub fn changed(&self) -> Listener {
        self.committed.listen()
    }

    fn encode(&self) -> io::Result<(SnapshotMetaOf<C>, i64, Vec<u8>)> {
        let state = self.state.borrow();
        let data = SnapshotData {
            last_applied: state.last_applied,
            membership: state.membership.clone(),
            committed_offset: self.committed_offset.get(),
            log_start: state.log_start,
        };
        let meta = SnapshotMetaOf::<C> {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
        };
        let body = serde_json::to_vec(&data).map_err(io::Error::other)?;
        Ok((meta, data.committed_offset, body))
    }
}

impl RaftSnapshotBuilder<C> for PartitionStateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<u8>>, io::Error> {
        let (meta, committed_offset, data) = self.encode()?;
        // The snapshot claims the log up to its commit point: that much must survive a crash
        // before the snapshot is kept, as openraft purges the log behind it.
        let log = self.log.log();
        log.sync_to(committed_offset)
            .await
            .map_err(|error| io::Error::other(error.to_string()))?;
        let path = Self::snapshot_path(&self.log);
        let body = data.clone();
        glommio::executor()
            .spawn_blocking(move || crc_sealed::write_file(&path, body))
            .await?;
        self.state.borrow_mut().snapshot = Some((meta.clone(), data.clone()));
        Ok(SnapshotOf::<C, Vec<u8>> {
            meta,
            snapshot: data,
        })
    }
}

/// The log start a `CONTROL_TYPE_LOG_START` batch decides, or `None` for any other batch.
fn decided_log_start(batch: &bytes::Bytes) -> Option<i64> {
    let record = control_batch::parse(batch).ok()??;
    if record.control_type != CONTROL_TYPE_LOG_START {
        return None;
    }
    let value: [u8; 8] = record.value?.as_ref().try_into().ok()?;
    Some(i64::from_be_bytes(value))
}

impl RaftStateMachine<C> for PartitionStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = PartitionStateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let state = self.state.borrow();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures_lite::Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id();
            let end = self.log.end_of(log_id.index).ok_or_else(|| {
                io::Error::other(format!("applied entry {} is not in the log", log_id.index))
            })?;
            {
                let mut state = self.state.borrow_mut();
                state.last_applied = Some(log_id);
                match entry.payload {
                    EntryPayload::Membership(membership) => {
                        state.membership = StoredMembership::new(Some(log_id), membership);
                    }
                    EntryPayload::Normal(RecordBatch(batch)) => {
                        if let Some(offset) = decided_log_start(&batch)
                            && state.log_start.is_none_or(|(_, known)| offset > known)
                        {
                            state.log_start = Some((log_id.index, offset));
                            self.log_start_decided.notify();
                        }
                    }
                    EntryPayload::Blank => {}
                }
            }
            if end > self.committed_offset.get() {
                self.committed_offset.set(end);
                self.log.log().set_commit_limit(end);
                self.committed.notify();
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
        _snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        Err(io::Error::other(format!(
            "a replicated partition does not install snapshots (offered one up to {:?}): its \
             log is only repaired from the leader's log",
            meta.last_log_id
        )))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Vec<u8>>>, io::Error> {
        Ok(self
            .state
            .borrow()
            .snapshot
            .clone()
            .map(|(meta, data)| SnapshotOf::<C, Vec<u8>> {
                meta,
                snapshot: data,
            }))
    }
}
