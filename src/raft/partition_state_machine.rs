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
//! Snapshots: the log itself is the data, so a snapshot says where the log goes on, not what it
//! held: the entry it covers up to (the last one a purge removes, wholly below the decided log
//! start), the membership in force there, and the offset after that entry. It is built on
//! request before a purge and kept in `raft-snapshot` with the applied position (log id,
//! membership, commit point, log start) that openraft reads back at start-up, once the log is
//! fdatasync'ed up to that commit point. A replica behind its leader's log start is sent the
//! snapshot and installs it as Kafka resets such a follower: it empties its log to start at
//! that offset (`ReplicaLog::restart`) and catches up from there by entries. The file is
//! written before the log is emptied, and an open that finds the log short of its snapshot
//! finishes the reset.

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
    /// The memberships applied since the last snapshot's, that one first: a snapshot covers
    /// an entry below the applied one and needs the membership in force there.
    memberships: Vec<StoredMembershipOf<C>>,
    snapshot: Option<(SnapshotMetaOf<C>, Vec<u8>)>,
    /// The last log start the leader decided (applied from a `CONTROL_TYPE_LOG_START` entry),
    /// with that entry's index.
    log_start: Option<(u64, i64)>,
}

/// What a snapshot holds (its data, JSON in `raft-snapshot`): the applied position when it was
/// written, and what it covers.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct SnapshotData {
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    committed_offset: i64,
    log_start: Option<(u64, i64)>,
    /// What it covers (`None`: no entry yet).
    #[serde(default)]
    covered: Option<Covered>,
    /// 0 (absent) in a snapshot written before snapshots could cover less than the applied
    /// position: such a one covers that position.
    #[serde(default)]
    version: u32,
}

/// The `SnapshotData::version` written.
const SNAPSHOT_VERSION: u32 = 1;

/// What a snapshot covers: the log up to an entry.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Covered {
    /// The last entry covered (openraft's snapshot last log id).
    last_log_id: LogIdOf<C>,
    /// The membership in force at that entry.
    membership: StoredMembershipOf<C>,
    /// One past that entry's last offset: where a replica installing the snapshot starts.
    next_offset: i64,
}

impl SnapshotData {
    fn covered(&self) -> Option<Covered> {
        if self.version >= SNAPSHOT_VERSION {
            return self.covered.clone();
        }
        self.last_applied.map(|last_log_id| Covered {
            last_log_id,
            membership: self.membership.clone(),
            next_offset: self.committed_offset,
        })
    }

    fn meta(&self) -> SnapshotMetaOf<C> {
        let covered = self.covered();
        SnapshotMetaOf::<C> {
            last_log_id: covered.as_ref().map(|covered| covered.last_log_id),
            last_membership: covered.map_or_else(StoredMembershipOf::<C>::default, |covered| {
                covered.membership
            }),
        }
    }

    fn decode(body: &[u8], what: impl std::fmt::Display) -> io::Result<Self> {
        serde_json::from_slice(body).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what} is damaged: {error}"),
            )
        })
    }
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
    /// The state machine of the replicated log `log`, from its last snapshot if it has one
    /// (finishing the reset of an install a stop interrupted); without one, the commit point
    /// starts at the log start (nothing above it is known to be committed).
    /// `log_start_decided` is notified when an applied entry decides a new log start.
    pub async fn open(log: ReplicaLog, log_start_decided: Rc<Signal>) -> io::Result<Self> {
        let path = Self::snapshot_path(&log);
        let read_path = path.clone();
        let body = glommio::executor()
            .spawn_blocking(move || crc_sealed::read_file(&read_path))
            .await?;
        let saved = body
            .map(|body| SnapshotData::decode(&body, path.display()).map(|data| (data, body)))
            .transpose()?;
        let mut state = State {
            last_applied: None,
            membership: StoredMembershipOf::<C>::default(),
            memberships: Vec::new(),
            snapshot: None,
            log_start: None,
        };
        let mut committed_offset = None;
        if let Some((saved, body)) = saved {
            if let Some(covered) = saved.covered() {
                if !holds_or_purged(&log, covered.last_log_id) {
                    log.restart(covered.last_log_id, covered.next_offset)
                        .await?;
                }
                state.memberships.push(covered.membership);
            }
            state.memberships.push(saved.membership.clone());
            committed_offset = Some(saved.committed_offset);
            state.snapshot = Some((saved.meta(), body));
            state.last_applied = saved.last_applied;
            state.membership = saved.membership;
            state.log_start = saved.log_start;
        }
        let partition_log = log.log();
        let log_start = partition_log.log_start_offset();
        // The log was fdatasync'ed up to the snapshot's commit point before it was saved.
        let committed_offset = committed_offset
            .unwrap_or(log_start)
            .clamp(log_start, partition_log.log_end_offset().max(log_start));
        partition_log.set_commit_limit(committed_offset);
        Ok(Self {
            log,
            state: Rc::new(RefCell::new(state)),
            committed_offset: Rc::new(Cell::new(committed_offset)),
            committed: Signal::new(),
            log_start_decided,
        })
    }

    /// Whether a snapshot a leader sent is one this machine can install: its data decodes and
    /// covers the entry its meta names, from a valid offset. Checked before openraft sees it,
    /// since an install that fails stops the group.
    pub fn check_snapshot(meta: &SnapshotMetaOf<C>, data: &[u8]) -> Result<(), String> {
        let data = SnapshotData::decode(data, "the snapshot").map_err(|error| error.to_string())?;
        match (data.covered(), meta.last_log_id) {
            (Some(covered), Some(last_log_id))
                if covered.last_log_id == last_log_id && covered.next_offset >= 0 =>
            {
                Ok(())
            }
            _ => Err(format!(
                "the snapshot's data does not cover the entry its meta names ({:?})",
                meta.last_log_id
            )),
        }
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

    /// What a snapshot built now covers: the last entry wholly below the decided log start (at
    /// most the applied one), else the last entry purged; never less than the last snapshot.
    fn coverage(&self) -> Option<Covered> {
        let mut state = self.state.borrow_mut();
        let below_log_start = state.log_start.and_then(|(_, offset)| {
            let index = self
                .log
                .last_index_ending_by(offset)?
                .min(state.last_applied?.index);
            Some((self.log.log_id_at(index)?, self.log.end_of(index)?))
        });
        let previous = state.snapshot.as_ref().and_then(|(_, body)| {
            SnapshotData::decode(body, "the last snapshot")
                .ok()?
                .covered()
        });
        let Some((last_log_id, next_offset)) = below_log_start.or_else(|| self.log.purged()) else {
            return previous;
        };
        if let Some(previous) = previous
            && previous.last_log_id >= last_log_id
        {
            return Some(previous);
        }
        let in_force = state.memberships.iter().rposition(|membership| {
            membership
                .log_id()
                .is_none_or(|id| id.index <= last_log_id.index)
        })?;
        state.memberships.drain(..in_force);
        Some(Covered {
            last_log_id,
            membership: state.memberships[0].clone(),
            next_offset,
        })
    }

    /// The snapshot's data: the applied position now, and what it covers.
    fn data(&self, covered: Option<Covered>) -> SnapshotData {
        let state = self.state.borrow();
        SnapshotData {
            last_applied: state.last_applied,
            membership: state.membership.clone(),
            committed_offset: self.committed_offset.get(),
            log_start: state.log_start,
            covered,
            version: SNAPSHOT_VERSION,
        }
    }

    /// Keeps `data` as the snapshot, in `raft-snapshot` and in memory.
    async fn keep(&self, data: &SnapshotData) -> io::Result<SnapshotOf<C, Vec<u8>>> {
        let body = serde_json::to_vec(data).map_err(io::Error::other)?;
        let path = Self::snapshot_path(&self.log);
        let written = body.clone();
        glommio::executor()
            .spawn_blocking(move || crc_sealed::write_file(&path, written))
            .await?;
        let meta = data.meta();
        self.state.borrow_mut().snapshot = Some((meta.clone(), body.clone()));
        Ok(SnapshotOf::<C, Vec<u8>> {
            meta,
            snapshot: body,
        })
    }

    /// Moves the commit point up to `offset`.
    fn commit_to(&self, offset: i64) {
        if offset > self.committed_offset.get() {
            self.committed_offset.set(offset);
            self.log.log().set_commit_limit(offset);
            self.committed.notify();
        }
    }
}

/// Whether `log` holds the entry `log_id`, or purged past it.
fn holds_or_purged(log: &ReplicaLog, log_id: LogIdOf<C>) -> bool {
    log.log_id_at(log_id.index) == Some(log_id)
        || log
            .purged()
            .is_some_and(|(purged, _)| purged.index > log_id.index)
}

impl RaftSnapshotBuilder<C> for PartitionStateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<u8>>, io::Error> {
        let data = self.data(self.coverage());
        // The snapshot keeps the commit point, read back at start-up: that much of the log
        // must survive a crash first.
        self.log
            .log()
            .sync_to(data.committed_offset)
            .await
            .map_err(|error| io::Error::other(error.to_string()))?;
        self.keep(&data).await
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
                        let membership = StoredMembership::new(Some(log_id), membership);
                        state.memberships.push(membership.clone());
                        state.membership = membership;
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
            self.commit_to(end);
            if let Some(responder) = responder {
                responder.send(());
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    /// A leader sends its snapshot to a replica it can no longer send the entries it needs:
    /// the replica holds the covered entry (it only lagged), or it empties its log to start
    /// after it.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let leader = SnapshotData::decode(&snapshot, "the leader's snapshot")?;
        let (Some(last_log_id), Some(offered)) = (meta.last_log_id, leader.covered()) else {
            return Err(io::Error::other("the leader's snapshot covers no entry"));
        };
        let held = self.log.log_id_at(last_log_id.index) == Some(last_log_id);
        let next_offset = match self.log.end_of(last_log_id.index) {
            Some(end) if held => end,
            _ => offered.next_offset,
        };
        {
            let mut state = self.state.borrow_mut();
            state.last_applied = Some(last_log_id);
            state.membership = meta.last_membership.clone();
            state.memberships = vec![meta.last_membership.clone()];
            // A decision in a later entry comes again with that entry.
            state.log_start = leader
                .log_start
                .filter(|(index, _)| *index <= last_log_id.index);
        }
        let mut data = self.data(Some(Covered {
            last_log_id,
            membership: meta.last_membership.clone(),
            next_offset,
        }));
        data.committed_offset = if held {
            data.committed_offset.max(next_offset)
        } else {
            next_offset
        };
        // The file first: an open that finds the log short of it finishes the reset.
        self.keep(&data).await?;
        if held {
            self.commit_to(next_offset);
        } else {
            tracing::info!(
                dir = %self.log.log().dir().display(),
                offset = next_offset,
                entry = %last_log_id,
                "replica behind its leader's log start: emptying its log to start there"
            );
            self.log.restart(last_log_id, next_offset).await?;
            self.committed_offset.set(next_offset);
            self.log.log().set_commit_limit(next_offset);
            self.committed.notify();
        }
        if self.state.borrow().log_start.is_some() {
            self.log_start_decided.notify();
        }
        Ok(())
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
