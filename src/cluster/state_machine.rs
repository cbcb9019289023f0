//! The controller's state machine: the cluster metadata ([`ClusterState`]) that the controller
//! quorum's committed entries build, on shard 0 of each voter.
//!
//! Each entry is one [`MetadataChange`]. Applied changes are kept in memory, with a tail of the
//! recent ones so the leader can hand brokers what they missed (`changes_after`); a broker
//! further behind gets the whole state. A snapshot (the whole state, its last log id and
//! membership, as JSON) is written atomically to `snapshot.json` in the Raft directory when
//! openraft builds or installs one, and read back at start; openraft then replays the log
//! after it as the commit point is learned.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use futures_lite::StreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::meta::metadata_log::write_file_atomically;
use crate::meta::{ClusterState, MetadataChange};
use crate::raft::{WatchReceiver, WatchSender, watch_channel};

use super::ControllerRaft;

/// The snapshot's file in the Raft directory.
pub const SNAPSHOT_FILE_NAME: &str = "snapshot.json";

/// Applied changes kept for brokers that fetch what they missed; one further behind gets the
/// whole state instead.
const TAIL_CHANGES_MAX: usize = 4096;

/// What a snapshot holds.
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    last_applied: Option<LogIdOf<ControllerRaft>>,
    membership: StoredMembershipOf<ControllerRaft>,
    state: ClusterState,
}

struct Inner {
    last_applied: Option<LogIdOf<ControllerRaft>>,
    membership: StoredMembershipOf<ControllerRaft>,
    state: ClusterState,
    /// Applied changes with their log index; it holds every change after `tail_from`.
    tail: VecDeque<(u64, MetadataChange)>,
    tail_from: u64,
    snapshot: Option<(SnapshotMetaOf<ControllerRaft>, Vec<u8>)>,
    snapshot_path: PathBuf,
}

/// The controller's state machine; clones share it (openraft holds one, the controller
/// service reads another).
#[derive(Clone)]
pub struct ControllerStore {
    inner: Rc<RefCell<Inner>>,
    applied: WatchSender<u64>,
    /// Kept so `applied` always has a receiver and never refuses a value.
    _applied_receiver: WatchReceiver<u64>,
}

/// What a broker needs to catch up from a given applied index.
pub enum CatchUp {
    /// The changes after it, in order.
    Changes(Vec<(u64, MetadataChange)>),
    /// It is behind the tail: the whole state.
    State(Box<ClusterState>),
}

fn index_of(log_id: &Option<LogIdOf<ControllerRaft>>) -> u64 {
    log_id.as_ref().map_or(0, |id| id.index())
}

impl ControllerStore {
    /// Reads the snapshot file of the Raft directory `dir`, if there is one. Blocking.
    pub fn read_snapshot(dir: &std::path::Path) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(dir.join(SNAPSHOT_FILE_NAME)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The state machine of the Raft directory `dir`, from its snapshot (`read_snapshot`) if
    /// there is one.
    pub fn new(dir: &std::path::Path, snapshot: Option<Vec<u8>>) -> io::Result<Self> {
        let snapshot_path = dir.join(SNAPSHOT_FILE_NAME);
        let (payload, snapshot) = match snapshot {
            Some(bytes) => {
                let payload: SnapshotPayload = serde_json::from_slice(&bytes).map_err(|error| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {error}", snapshot_path.display()),
                    )
                })?;
                let meta = SnapshotMetaOf::<ControllerRaft> {
                    last_log_id: payload.last_applied,
                    last_membership: payload.membership.clone(),
                };
                (payload, Some((meta, bytes)))
            }
            None => (
                SnapshotPayload {
                    last_applied: None,
                    membership: StoredMembership::default(),
                    state: ClusterState::default(),
                },
                None,
            ),
        };
        let applied_index = index_of(&payload.last_applied);
        let (applied, applied_receiver) = watch_channel(applied_index);
        Ok(Self {
            inner: Rc::new(RefCell::new(Inner {
                last_applied: payload.last_applied,
                membership: payload.membership,
                state: payload.state,
                tail: VecDeque::new(),
                tail_from: applied_index,
                snapshot,
                snapshot_path,
            })),
            applied,
            _applied_receiver: applied_receiver,
        })
    }

    /// Runs `read` on the metadata as of the last applied entry.
    pub fn with_state<T>(&self, read: impl FnOnce(&ClusterState) -> T) -> T {
        read(&self.inner.borrow().state)
    }

    /// The last applied log index (0 before any).
    pub fn applied_index(&self) -> u64 {
        index_of(&self.inner.borrow().last_applied)
    }

    /// A receiver told of every newly applied index.
    pub fn watch_applied(&self) -> WatchReceiver<u64> {
        self.applied.subscribe()
    }

    /// What a broker that applied everything up to `applied` is missing.
    pub fn catch_up(&self, applied: u64) -> CatchUp {
        let inner = self.inner.borrow();
        if applied < inner.tail_from {
            return CatchUp::State(Box::new(inner.state.clone()));
        }
        CatchUp::Changes(
            inner
                .tail
                .iter()
                .filter(|(index, _)| *index > applied)
                .cloned()
                .collect(),
        )
    }

    fn snapshot_bytes(inner: &Inner) -> io::Result<Vec<u8>> {
        serde_json::to_vec(&SnapshotPayload {
            last_applied: inner.last_applied,
            membership: inner.membership.clone(),
            state: inner.state.clone(),
        })
        .map_err(io::Error::other)
    }

    async fn persist_snapshot(path: PathBuf, bytes: Vec<u8>) -> io::Result<()> {
        glommio::executor()
            .spawn_blocking(move || write_file_atomically(&path, &bytes))
            .await
    }
}

impl RaftSnapshotBuilder<ControllerRaft> for ControllerStore {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<ControllerRaft, Vec<u8>>, io::Error> {
        let (meta, bytes, path) = {
            let inner = self.inner.borrow();
            let meta = SnapshotMetaOf::<ControllerRaft> {
                last_log_id: inner.last_applied,
                last_membership: inner.membership.clone(),
            };
            (
                meta,
                Self::snapshot_bytes(&inner)?,
                inner.snapshot_path.clone(),
            )
        };
        // Durable before openraft may purge the log it replaces.
        Self::persist_snapshot(path, bytes.clone()).await?;
        self.inner.borrow_mut().snapshot = Some((meta.clone(), bytes.clone()));
        Ok(SnapshotOf::<ControllerRaft, Vec<u8>> {
            meta,
            snapshot: bytes,
        })
    }
}

impl RaftStateMachine<ControllerRaft> for ControllerStore {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = ControllerStore;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogIdOf<ControllerRaft>>,
            StoredMembershipOf<ControllerRaft>,
        ),
        io::Error,
    > {
        let inner = self.inner.borrow();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures_lite::Stream<Item = Result<EntryResponder<ControllerRaft>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id;
            let index = log_id.index();
            {
                let mut inner = self.inner.borrow_mut();
                inner.last_applied = Some(log_id);
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(change) => {
                        inner.state.apply(&change);
                        inner.tail.push_back((index, change));
                        if inner.tail.len() > TAIL_CHANGES_MAX
                            && let Some((dropped, _)) = inner.tail.pop_front()
                        {
                            inner.tail_from = dropped;
                        }
                    }
                    EntryPayload::Membership(membership) => {
                        inner.membership = StoredMembership::new(Some(log_id), membership);
                    }
                }
            }
            let _ = self.applied.send(index);
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
        meta: &SnapshotMetaOf<ControllerRaft>,
        bytes: Vec<u8>,
    ) -> Result<(), io::Error> {
        let payload: SnapshotPayload = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
        let path = self.inner.borrow().snapshot_path.clone();
        Self::persist_snapshot(path, bytes.clone()).await?;
        let index = index_of(&payload.last_applied);
        {
            let mut inner = self.inner.borrow_mut();
            inner.last_applied = payload.last_applied;
            inner.membership = payload.membership;
            inner.state = payload.state;
            inner.tail.clear();
            inner.tail_from = index;
            inner.snapshot = Some((meta.clone(), bytes));
        }
        let _ = self.applied.send(index);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<ControllerRaft, Vec<u8>>>, io::Error> {
        Ok(self
            .inner
            .borrow()
            .snapshot
            .clone()
            .map(|(meta, bytes)| SnapshotOf::<ControllerRaft, Vec<u8>> {
                meta,
                snapshot: bytes,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_snapshot_is_refused_naming_its_file() {
        // Proves a voter never starts from a snapshot it cannot read (it would otherwise
        // start empty and replay only the log after the snapshot, losing what it held), while
        // no snapshot at all is an empty state.
        let dir = std::path::Path::new("/var/lib/spate/__meta/raft");
        let empty = ControllerStore::new(dir, None).unwrap();
        assert_eq!(empty.applied_index(), 0);
        let error = ControllerStore::new(dir, Some(b"{\"last_applied\":".to_vec()))
            .err()
            .expect("a damaged snapshot is an error")
            .to_string();
        assert!(error.contains(SNAPSHOT_FILE_NAME), "{error}");
    }
}
