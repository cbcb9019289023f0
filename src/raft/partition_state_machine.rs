//! `PartitionStateMachine`: what applying a replicated partition's committed entries does.
//!
//! The entries are already the partition's log, so there is no state to build: applying an
//! entry moves the commit point, the offset below which every batch is on a majority of the
//! replicas. That is the partition's high watermark: consumers read below it only, so nothing
//! they read can be taken back by a failover, and an acks=all produce is answered once its
//! batch is below it.
//!
//! Snapshots: openraft's snapshot of this machine is its applied position (log id, membership,
//! commit point), built on request. Replicated partitions run with openraft's own snapshots and
//! log purging off: the log is purged by retention, and a replica that falls behind the
//! leader's log start is repaired by a Kafka-style reset (not built yet), so installing a
//! snapshot is refused with an error rather than pretending the log came with it.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use futures_lite::StreamExt;
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, RaftSnapshotBuilder, StoredMembership};

use crate::log::signal::{Listener, Signal};

use super::partition_store::{PartitionRaft, ReplicaLog};

type C = PartitionRaft;

struct State {
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    snapshot: Option<(SnapshotMetaOf<C>, Vec<u8>)>,
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
}

impl PartitionStateMachine {
    /// The state machine of the replicated log `log`; the commit point starts at
    /// `committed_offset` (the log start: nothing above it is known to be committed).
    pub fn new(log: ReplicaLog, committed_offset: i64) -> Self {
        log.log().set_commit_limit(committed_offset);
        Self {
            log,
            state: Rc::new(RefCell::new(State {
                last_applied: None,
                membership: StoredMembershipOf::<C>::default(),
                snapshot: None,
            })),
            committed_offset: Rc::new(Cell::new(committed_offset)),
            committed: Signal::new(),
        }
    }

    /// The commit point: every offset below it is on a majority of the replicas.
    pub fn committed_offset(&self) -> i64 {
        self.committed_offset.get()
    }

    /// Resolves the next time the commit point moves. Take it before checking, then await it.
    pub fn changed(&self) -> Listener {
        self.committed.listen()
    }

    fn encode(&self) -> io::Result<Vec<u8>> {
        let state = self.state.borrow();
        serde_json::to_vec(&(
            &state.last_applied,
            &state.membership,
            self.committed_offset.get(),
        ))
        .map_err(io::Error::other)
    }
}

impl RaftSnapshotBuilder<C> for PartitionStateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<u8>>, io::Error> {
        let data = self.encode()?;
        let mut state = self.state.borrow_mut();
        let meta = SnapshotMetaOf::<C> {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
        };
        state.snapshot = Some((meta.clone(), data.clone()));
        Ok(SnapshotOf::<C, Vec<u8>> {
            meta,
            snapshot: data,
        })
    }
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
                if let EntryPayload::Membership(membership) = entry.payload {
                    state.membership = StoredMembership::new(Some(log_id), membership);
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
