//! The replicated partitions a shard holds a replica of (docs/architecture.md §8): each one a
//! Raft group over the partition's own log, reached by peers through the partition network.
//!
//! Every replica initializes its group with the same membership (the replicas' brokers), so any
//! of them may come up first. The leader takes produce requests: it decides idempotence before
//! proposing (against the batches it proposed and not yet finished, then the log's producer
//! state), proposes each batch in arrival order and answers once Raft committed it. Readers of
//! any replica see the log only up to the commit point. A leader reports itself to the
//! controller, whose `LeaderElected` change points every broker's metadata at it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::sync::{Semaphore, StaticPermit};
use openraft::raft::responder::ProgressResponder;
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use openraft_rt::WatchReceiver as _;

use crate::io::deadline::within;
use crate::log::signal::Signal;
use crate::log::{IdempotenceCheck, PartitionLog};
use crate::meta::controller::{AdminRequest, IsrReport, TopicError};
use crate::meta::{Node, TopicMeta};
use crate::protocol::ErrorCode;
use crate::protocol::control_batch::{self, CONTROL_TYPE_LOG_START};
use crate::raft::partition_network::{
    GroupKey, GroupNetwork, PartitionRaftNode, PeerLinks, ResolveMember,
};
use crate::raft::partition_state_machine::PartitionStateMachine;
use crate::raft::partition_store::{
    PartitionLogStore, PartitionRaft, PlacementWatch, RecordBatch, ReplicaLog,
};

use super::Shard;

/// openraft's heartbeat interval (ms): unused, since groups send no heartbeats of their own
/// (src/shard/replica_liveness.rs coalesces them per peer shard), but validated against the
/// election timeouts.
const HEARTBEAT_INTERVAL_MS: u64 = 100;
/// openraft's election timeouts (ms). Groups start no election of their own (the liveness task
/// campaigns for them), so only the longest counts: it is openraft's leader lease, for which a
/// follower refuses votes after each AppendEntries. It is shorter than the quiet time after which
/// a follower campaigns, so a busy group's dead leader holds no one up.
const ELECTION_TIMEOUT_MS: (u64, u64) = (300, 400);
/// openraft's leader lease: a leader takes writes only this long after a quorum last
/// acknowledged it.
const LEADER_LEASE: Duration = Duration::from_millis(ELECTION_TIMEOUT_MS.1);
/// A leader renews its lease (one heartbeat round) before a write when less than this is left:
/// an idle group sends nothing that would keep it.
const LEASE_RENEW_MARGIN: Duration = Duration::from_millis(150);
/// How long a write waits for a quorum to renew the lease before it is refused.
const LEASE_RENEW_WAIT: Duration = Duration::from_secs(1);
/// How often a renewal that got no quorum yet sends its heartbeat again.
const LEASE_RENEW_RETRY: Duration = Duration::from_millis(100);
/// A leader that heard from no quorum for this long (no follower acknowledged an AppendEntries
/// nor had its shard answer a heartbeat) answers the writes waiting for their commit with
/// NOT_LEADER_OR_FOLLOWER: it is cut off, the others elect a new leader within about a second,
/// and its clients should look for it rather than wait out their request timeout. A heartbeat
/// goes every 100 ms, so a quorum that is merely busy (a slow fdatasync) still answers.
const QUORUM_SILENCE_MAX: Duration = Duration::from_millis(1_500);
/// How often a write waiting for its commit checks that the leader still hears a quorum.
const QUORUM_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// How long a leader waits for its log-start decision to commit, and a replica for openraft to
/// build the snapshot a purge needs.
const RETENTION_STEP_WAIT: Duration = Duration::from_secs(10);
/// Bytes of acks=1 batches a leader holds proposed but not yet committed. Answered at the
/// leader's write, such batches are not held back by their producers' windows as acks=all
/// batches are; without a bound the leader's log runs ahead of its followers until their
/// acknowledgements (and with them the leader's lease) lag by seconds.
const UNCOMMITTED_ACKS_1_BYTES_MAX: u64 = 2 << 20;
/// How long an acks=1 batch, answered at the leader's write, is followed to its commit before
/// its producer's next batches stop waiting on it.
const PROPOSAL_FOLLOW_MAX: Duration = Duration::from_secs(30);
/// How long a refused idempotent batch holds back its producer's later batches at most (its
/// retry normally comes within a second; a client that gave up on it bumps its epoch).
const REFUSAL_MEMORY: Duration = Duration::from_secs(30);
/// How long a replica's cached peer addresses are used before they are resolved again.
const ADDRESSES_REFRESH: Duration = Duration::from_secs(5);
/// Batches per AppendEntries: bounded so a frame stays far below the network's frame limit.
const PAYLOAD_ENTRIES_MAX: u64 = 64;
/// How long a leader waits for a replica to install its snapshot, in milliseconds.
const SNAPSHOT_INSTALL_TIMEOUT_MS: u64 = 10_000;
/// How long a failed leader report waits before it is sent again.
const REPORT_RETRY: Duration = Duration::from_millis(200);

/// One replica of a replicated partition, on the shard that holds it.
pub struct Replica {
    /// The topic's name.
    pub topic: String,
    /// The partition index.
    pub partition: u32,
    /// The group's name on the wire.
    pub key: GroupKey,
    /// This broker's member id in the group.
    member: u64,
    /// The group's members (broker ids) in the partition's replica order, preferred leader first.
    members: Vec<u64>,
    /// Where each other member is, as last resolved.
    addresses: RefCell<PeerAddresses>,
    resolve: ResolveMember,
    /// The shard's connections to peer shards (their heartbeat answers tell who is reachable).
    links: Rc<PeerLinks>,
    /// When this replica last campaigned (or opened).
    pub campaigned_at: Cell<Instant>,
    /// A per-replica delay added before campaigning, so replicas of many groups that lost the
    /// same leader do not all campaign in the same instant.
    pub jitter: Duration,
    /// When this leader started handing its leadership to the preferred replica; it takes no
    /// writes meanwhile (openraft refuses them once a transfer began).
    pub handing_back: Cell<Option<Instant>>,
    raft: PartitionRaftNode,
    log: ReplicaLog,
    state_machine: PartitionStateMachine,
    /// Whether this replica leads, as its Raft metrics last said.
    leading: Cell<bool>,
    /// When this replica last became leader.
    leading_since: Cell<Instant>,
    /// Proposed batches of each idempotent producer not yet committed or failed.
    proposals: RefCell<HashMap<i64, Proposed>>,
    /// Notified when a proposal finishes.
    proposal_done: Rc<Signal>,
    /// Held from a batch's idempotence decision to its hand-over to Raft.
    proposing: Semaphore,
    /// Notified when this replica's log start moved.
    log_start_moved: Rc<Signal>,
    /// Bytes of acks=1 batches proposed and not yet committed may not pass
    /// [`UNCOMMITTED_ACKS_1_BYTES_MAX`].
    uncommitted_acks_1: Rc<Semaphore>,
    /// Idempotent producers whose batch this replica refused with a retriable error, by
    /// producer id.
    refused: RefCell<HashMap<i64, Refused>>,
    /// replica.lag.time.max.ms: a follower not heard from for this long does not hold the log
    /// start back (retention, DeleteRecords); it is reset when it returns.
    lag_max: Duration,
}

/// An idempotent producer's batch refused with a retriable error. Until it comes back (or the
/// log holds it, or the producer moved to another epoch), the producer's later batches are
/// refused the same way: pipelined, they may arrive once this replica would take them (it just
/// became leader, its lease was just renewed), and an acknowledged later batch tells the client
/// that the refused one was stored, which no retry then corrects (librdkafka reports it
/// delivered, at an unknown offset).
struct Refused {
    epoch: i16,
    first_sequence: i32,
    at: Instant,
}

/// The other members of a group and their addresses, and when they were resolved.
type PeerAddresses = (Vec<(u64, String)>, Option<Instant>);

/// An idempotent producer's proposals in flight.
struct Proposed {
    epoch: i16,
    last_sequence: i32,
    count: usize,
}

/// What a produce to a replicated partition waits for: its commit, or the original's.
pub enum Proposal {
    /// A new batch (of this idempotent producer, if any), being replicated; with a watch on
    /// its placement in the leader's log, and its share of the uncommitted acks=1 bytes, when
    /// it is answered at the leader's write (acks=1).
    Proposed(
        Rc<Replica>,
        Option<i64>,
        ProposalReceiver,
        Option<(PlacementWatch, StaticPermit)>,
    ),
    /// A duplicate of a batch in the log at these offsets; answered once they are committed.
    Duplicate(Rc<Replica>, i64, i64),
}

type ProposalReceiver = openraft::type_config::alias::OneshotReceiverOf<
    crate::raft::partition_store::PartitionRaft,
    openraft::raft::ClientWriteResult<crate::raft::partition_store::PartitionRaft>,
>;

/// A committed produce: the batch's base offset and the log start offset.
pub struct Committed {
    /// The base offset the batch got.
    pub base_offset: i64,
    /// The log start offset.
    pub log_start_offset: i64,
}

impl Replica {
    /// The partition log as it is now (a truncation replaces it).
    pub fn log(&self) -> Rc<PartitionLog> {
        self.log.log()
    }

    /// Retention of a replicated partition, on its leader: decides where the log start moves
    /// (to what `retention.ms` / `retention.bytes` expire, but never past the commit point nor
    /// past what a live follower holds, so no replica that keeps up is ever reset) and writes
    /// that decision to the log. Each replica, leader included, moves its log start when it
    /// applies the decision (`follow_log_starts`), so every replica cuts at the same offset. A
    /// follower away longer than replica.lag.time.max.ms holds nothing back, as in Kafka: if
    /// it returns behind the log start, it is sent a snapshot and empties its log to start
    /// there (`PartitionStateMachine::install_snapshot`).
    pub async fn enforce_retention(self: &Rc<Self>, now_ms: i64) -> Result<(), String> {
        if !self.is_leader() {
            return Ok(());
        }
        let log = self.log();
        let Some(cut) = log
            .retention_cut(now_ms)
            .map_err(|error| error.to_string())?
        else {
            return Ok(());
        };
        let Some(held) = self.held_by_live_followers() else {
            return Ok(());
        };
        let start = cut.min(self.committed_offset()).min(held);
        let decided = self
            .state_machine
            .log_start_decided()
            .map_or(log.log_start_offset(), |(_, offset)| offset)
            .max(log.log_start_offset());
        if start <= decided {
            return Ok(());
        }
        let batch =
            control_batch::build(CONTROL_TYPE_LOG_START, Some(&start.to_be_bytes()), now_ms);
        let proposal = self
            .propose(batch, false)
            .await
            .map_err(|code| format!("log start decision refused: {code:?}"))?;
        proposal
            .committed(RETENTION_STEP_WAIT)
            .await
            .map_err(|code| format!("log start decision not committed: {code:?}"))?;
        tracing::debug!(
            topic = %self.topic,
            partition = self.partition,
            log_start_offset = start,
            "retention decided a new log start"
        );
        Ok(())
    }

    /// The offset below which every live follower (heard from within replica.lag.time.max.ms)
    /// holds the leader's log (the end of the entry each last matched, the smallest of them);
    /// `None` while one has matched nothing known.
    fn held_by_live_followers(&self) -> Option<i64> {
        // A new leader has not heard its followers yet: until it could have, each counts.
        let live = if self.leading_since.get().elapsed() < self.lag_max {
            self.members
                .iter()
                .copied()
                .filter(|member| *member != self.member)
                .collect()
        } else {
            self.followers_heard(self.lag_max, false)
        };
        let matched: Vec<u64> = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow_watched();
            let replication = metrics.replication.as_ref()?;
            live.iter()
                .map(|member| {
                    replication
                        .get(member)
                        .cloned()
                        .flatten()
                        .map(|id| id.index)
                })
                .collect::<Option<Vec<u64>>>()?
        };
        matched
            .into_iter()
            .map(|index| self.log.end_of(index))
            .collect::<Option<Vec<i64>>>()?
            .into_iter()
            .min()
            .or(Some(i64::MAX))
    }

    /// Moves this replica's log start to the last one the leader decided: openraft purges the
    /// entries wholly below it (only what a snapshot covers, so one is built first), then the
    /// log start moves to the decided offset itself, which DeleteRecords may put inside a batch.
    /// Returns the new log start when it moved.
    pub async fn purge_to_decided(&self) -> Result<Option<i64>, String> {
        let Some((_, start)) = self.state_machine.log_start_decided() else {
            return Ok(None);
        };
        let before = self.log().log_start_offset();
        if start <= before {
            return Ok(None);
        }
        if let Some(upto) = self.log.last_index_ending_by(start) {
            // Where the purge puts the log start: the next entry's base offset.
            let boundary = self.log.end_of(upto).unwrap_or(start);
            let covered = |metrics: &openraft::RaftMetrics<PartitionRaft>| {
                metrics.snapshot.is_some_and(|id| id.index >= upto)
            };
            let mut metrics = self.raft.metrics();
            if !covered(&metrics.borrow_watched()) {
                self.raft
                    .trigger()
                    .snapshot()
                    .await
                    .map_err(|error| error.to_string())?;
                let built = within(RETENTION_STEP_WAIT, async {
                    while !covered(&metrics.borrow_watched()) {
                        if metrics.changed().await.is_err() {
                            return;
                        }
                    }
                })
                .await;
                if built.is_none() {
                    return Err("no snapshot covering the entries to purge yet".to_owned());
                }
            }
            self.raft
                .trigger()
                .purge_log(upto)
                .await
                .map_err(|error| error.to_string())?;
            // openraft purges in its own time (once replication reading those entries is
            // done); a purge still pending is finished by the next attempt.
            let purged = within(RETENTION_STEP_WAIT, async {
                while self.log().log_start_offset() < boundary {
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            if purged.is_none() {
                return Err(format!(
                    "openraft has not purged the log up to {boundary} yet"
                ));
            }
        }
        let log = self.log();
        if log.log_start_offset() < start {
            log.delete_records(start)
                .await
                .map_err(|error| error.to_string())?;
        }
        let log_start = log.log_start_offset();
        Ok((log_start > before).then_some(log_start))
    }

    /// DeleteRecords on the leader: moves the log start of every replica to `offset` (-1: the
    /// high watermark) once every live follower holds the log up to it (waiting at most
    /// `limit`, as Kafka waits for its live replicas' log starts), and returns the new log
    /// start.
    pub async fn delete_records(
        self: &Rc<Self>,
        offset: i64,
        limit: Duration,
    ) -> Result<i64, ErrorCode> {
        if !self.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let committed = self.committed_offset();
        let offset = if offset == -1 { committed } else { offset };
        if offset < 0 || offset > committed {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        let log_start = self.log().log_start_offset();
        if offset <= log_start {
            return Ok(log_start);
        }
        let held = within(limit, async {
            while self
                .held_by_live_followers()
                .is_none_or(|held| held < offset)
            {
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if held.is_none() {
            return Err(ErrorCode::RequestTimedOut);
        }
        let batch = control_batch::build(
            CONTROL_TYPE_LOG_START,
            Some(&offset.to_be_bytes()),
            crate::api::now_ms(),
        );
        self.propose(batch, false).await?.committed(limit).await?;
        // The purge follower moves the log start once the decision applies; answer with it.
        let moved = within(limit, async {
            loop {
                let listener = self.log_start_moved.listen();
                if self.log().log_start_offset() >= offset {
                    return;
                }
                listener.await;
            }
        })
        .await;
        if moved.is_none() {
            return Err(ErrorCode::RequestTimedOut);
        }
        Ok(self.log().log_start_offset())
    }

    /// Whether this replica leads its group now.
    pub fn is_leader(&self) -> bool {
        self.leading.get()
    }

    /// The group's Raft node.
    pub fn raft(&self) -> &PartitionRaftNode {
        &self.raft
    }

    /// This broker's member id.
    pub fn member(&self) -> u64 {
        self.member
    }

    /// The members in the partition's replica order, preferred leader first.
    pub fn members(&self) -> &[u64] {
        &self.members
    }

    /// The other members and their addresses (resolved again every few seconds, or while one
    /// is unknown).
    pub fn peer_addresses(&self) -> Vec<(u64, String)> {
        {
            let (addresses, resolved_at) = &*self.addresses.borrow();
            let complete = addresses.len() + 1 == self.members.len();
            if complete && resolved_at.is_some_and(|at| at.elapsed() < ADDRESSES_REFRESH) {
                return addresses.clone();
            }
        }
        let addresses: Vec<(u64, String)> = self
            .members
            .iter()
            .filter(|member| **member != self.member)
            .filter_map(|member| (self.resolve)(*member).map(|addr| (*member, addr)))
            .collect();
        *self.addresses.borrow_mut() = (addresses.clone(), Some(Instant::now()));
        addresses
    }

    /// The replicas in sync as this leader sees them (replica.lag.time.max.ms = `lag_max`):
    /// itself, each follower that acknowledged an AppendEntries within `lag_max`, and each that
    /// holds the whole log and whose shard answered a heartbeat within `lag_max` (an idle
    /// partition sends no AppendEntries).
    pub fn in_sync_replicas(&self, lag_max: Duration) -> usize {
        1 + self.followers_heard(lag_max, true).len()
    }

    /// The broker ids of the replicas in sync as `in_sync_replicas` counts them, sorted.
    pub fn in_sync_brokers(&self, lag_max: Duration) -> Vec<u32> {
        let mut brokers: Vec<u32> = std::iter::once(self.member)
            .chain(self.followers_heard(lag_max, true))
            .filter_map(|member| u32::try_from(member).ok())
            .collect();
        brokers.sort_unstable();
        brokers
    }

    /// This replica's current Raft term.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// Followers heard from within `window`: each that acknowledged an AppendEntries within it,
    /// and each whose shard answered a heartbeat within it (only those holding the whole log
    /// when `caught_up`).
    fn followers_heard(&self, window: Duration, caught_up: bool) -> Vec<u64> {
        // (member, acknowledged within window) of each follower acknowledged or caught up.
        let candidates: Vec<(u64, bool)> = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow_watched();
            let acked = |member: &u64| {
                metrics
                    .heartbeat
                    .as_ref()
                    .and_then(|heartbeats| heartbeats.get(member).cloned().flatten())
                    .is_some_and(|at| at.elapsed() <= window)
            };
            self.members
                .iter()
                .filter(|member| **member != self.member)
                .map(|member| (*member, acked(member)))
                .filter(|(member, acked)| {
                    *acked || !caught_up || holds_whole_log(&metrics, *member)
                })
                .collect()
        };
        let addresses = self.peer_addresses();
        let answering = |member: u64| {
            addresses
                .iter()
                .any(|(peer, addr)| *peer == member && self.links.answered_within(addr, window))
        };
        candidates
            .into_iter()
            .filter(|(member, acked)| *acked || answering(*member))
            .map(|(member, _)| member)
            .collect()
    }

    /// Whether a majority of the group (this replica counted) was heard from within
    /// [`QUORUM_SILENCE_MAX`].
    fn hears_quorum(&self) -> bool {
        (1 + self.followers_heard(QUORUM_SILENCE_MAX, false).len()) * 2 > self.members.len()
    }

    /// Returns once this replica has heard from no quorum for [`QUORUM_SILENCE_MAX`].
    async fn quorum_lost(&self) {
        while self.hears_quorum() {
            glommio::timer::sleep(QUORUM_CHECK_INTERVAL).await;
        }
    }

    /// Whether this replica leads and `member` holds its whole log, as openraft last reported.
    pub fn follower_holds_whole_log(&self, member: u64) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        metrics.state == openraft::ServerState::Leader && holds_whole_log(&metrics, member)
    }

    /// The commit point (the high watermark).
    pub fn committed_offset(&self) -> i64 {
        self.state_machine.committed_offset()
    }

    /// Proposes a validated batch as the leader: idempotence is decided first (a duplicate is
    /// answered with the original's offsets; a batch following an idempotent producer's
    /// proposals in flight goes on; any other batch of that producer waits for them to finish
    /// and is checked against the log), then the batch is handed to Raft in arrival order.
    pub async fn propose(
        self: &Rc<Self>,
        batch: Bytes,
        answer_at_write: bool,
    ) -> Result<Proposal, ErrorCode> {
        if !self.is_leader() || self.handing_back.get().is_some() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let (identity, (_permit, uncommitted)) = loop {
            // openraft refuses a write once its lease lapsed; renewing it means waiting, which
            // must happen before this batch takes its place in line, never after.
            self.renew_lease().await?;
            // From the idempotence decision to the hand-over to Raft, one batch at a time in
            // arrival order: a producer's batch decided after another must reach the log after
            // it, or a refused earlier batch would leave a gap behind an acknowledged later one
            // (which a client takes as proof that the earlier one was stored).
            let permit = self
                .proposing
                .acquire_permit(1)
                .await
                .map_err(|_| ErrorCode::NotLeaderOrFollower)?;
            // In line, so batches keep their order while the backlog drains.
            let uncommitted = if answer_at_write {
                let bytes = (batch.len() as u64).min(UNCOMMITTED_ACKS_1_BYTES_MAX);
                let permit = within(
                    LEASE_RENEW_WAIT,
                    self.uncommitted_acks_1.acquire_static_permit(bytes),
                )
                .await
                .ok_or(ErrorCode::RequestTimedOut)?
                .map_err(|_| ErrorCode::NotLeaderOrFollower)?;
                Some(permit)
            } else {
                None
            };
            if !self.lease_fresh() {
                continue;
            }
            let listener = self.proposal_done.listen();
            if !self.is_leader() {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            let check = self
                .log()
                .check_idempotence(&batch)
                .map_err(|error| crate::api::errors::log_error_code(&error))?;
            let IdempotenceCheck::Producer {
                producer_id,
                epoch,
                first_sequence,
                last_sequence,
                in_log,
            } = check
            else {
                break (None, (permit, uncommitted));
            };
            if self.held_back(producer_id, epoch, first_sequence) {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            let follows = self.proposals.borrow().get(&producer_id).map(|proposed| {
                proposed.epoch == epoch && next_sequence(proposed.last_sequence) == first_sequence
            });
            match follows {
                Some(true) => {
                    break (
                        Some((producer_id, epoch, last_sequence)),
                        (permit, uncommitted),
                    );
                }
                // Another batch of a producer with proposals in flight: a retry of one of them,
                // or out of order; decided against the log once they finish.
                Some(false) => {
                    drop(permit);
                    if within(Duration::from_secs(30), listener).await.is_none() {
                        return Err(ErrorCode::RequestTimedOut);
                    }
                }
                None => match in_log {
                    Ok(None) => {
                        break (
                            Some((producer_id, epoch, last_sequence)),
                            (permit, uncommitted),
                        );
                    }
                    Ok(Some((base_offset, last_offset))) => {
                        return Ok(Proposal::Duplicate(
                            Rc::clone(self),
                            base_offset,
                            last_offset,
                        ));
                    }
                    Err(error) => return Err(crate::api::errors::log_error_code(&error)),
                },
            }
        };
        if let Some((producer_id, epoch, last_sequence)) = identity {
            let mut proposals = self.proposals.borrow_mut();
            let proposed = proposals.entry(producer_id).or_insert(Proposed {
                epoch,
                last_sequence,
                count: 0,
            });
            proposed.epoch = epoch;
            proposed.last_sequence = last_sequence;
            proposed.count += 1;
        }
        let (responder, receiver) = ProgressResponder::complete_only();
        let placement = uncommitted.map(|permit| (self.log.watch_placement(&batch), permit));
        let queued = self
            .raft
            .client_write_ff(RecordBatch(batch), Some(responder))
            .await;
        let producer_id = identity.map(|(producer_id, ..)| producer_id);
        if queued.is_err() {
            self.finish(producer_id);
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        Ok(Proposal::Proposed(
            Rc::clone(self),
            producer_id,
            receiver,
            placement,
        ))
    }

    /// Remembers that `batch` (of an idempotent producer) was refused with a retriable error.
    pub fn note_refused(&self, batch: &[u8]) {
        let Ok(IdempotenceCheck::Producer {
            producer_id,
            epoch,
            first_sequence,
            ..
        }) = self.log().check_idempotence(batch)
        else {
            return;
        };
        let mut refused = self.refused.borrow_mut();
        let entry = refused.entry(producer_id).or_insert(Refused {
            epoch,
            first_sequence,
            at: Instant::now(),
        });
        if entry.epoch != epoch || first_sequence < entry.first_sequence {
            entry.epoch = epoch;
            entry.first_sequence = first_sequence;
        }
        entry.at = Instant::now();
    }

    /// Whether a batch of `producer_id` starting at `first_sequence` in `epoch` must wait for
    /// an earlier batch of it this replica refused (see [`Refused`]).
    fn held_back(&self, producer_id: i64, epoch: i16, first_sequence: i32) -> bool {
        let mut refused = self.refused.borrow_mut();
        let Some(entry) = refused.get(&producer_id) else {
            return false;
        };
        let released = entry.at.elapsed() > REFUSAL_MEMORY
            || entry.epoch != epoch
            || first_sequence <= entry.first_sequence
            || self
                .log()
                .producer_has_passed(producer_id, entry.epoch, entry.first_sequence);
        if released {
            refused.remove(&producer_id);
        }
        !released
    }

    /// Makes sure openraft will take a write: its lease lapses when no quorum acknowledged the
    /// leader for [`LEADER_LEASE`], as happens in an idle group, so a heartbeat round renews it
    /// first (one round trip, paid by the first write after an idle spell). A leader that no
    /// quorum answers within [`LEASE_RENEW_WAIT`] refuses, so its clients look for another.
    async fn renew_lease(&self) -> Result<(), ErrorCode> {
        let mut metrics = self.raft.metrics();
        let started = Instant::now();
        let mut sent: Option<Instant> = None;
        loop {
            if self.lease_fresh() {
                return Ok(());
            }
            if !self.is_leader() {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            if started.elapsed() >= LEASE_RENEW_WAIT {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            if sent.is_none_or(|at| at.elapsed() >= LEASE_RENEW_RETRY) {
                sent = Some(Instant::now());
                if self.raft.trigger().heartbeat().await.is_err() {
                    return Err(ErrorCode::NotLeaderOrFollower);
                }
            }
            let _ = within(LEASE_RENEW_RETRY, metrics.changed()).await;
        }
    }

    /// Whether openraft's lease has more than [`LEASE_RENEW_MARGIN`] left.
    fn lease_fresh(&self) -> bool {
        let acked = self.raft.metrics().borrow_watched().last_quorum_acked;
        acked.is_some_and(|at| at.elapsed() + LEASE_RENEW_MARGIN < LEADER_LEASE)
    }

    /// Ends one in-flight proposal of `producer_id`.
    fn finish(&self, producer_id: Option<i64>) {
        if let Some(producer_id) = producer_id {
            let mut proposals = self.proposals.borrow_mut();
            if let Some(proposed) = proposals.get_mut(&producer_id) {
                proposed.count -= 1;
                if proposed.count == 0 {
                    proposals.remove(&producer_id);
                }
            }
        }
        self.proposal_done.notify();
    }

    /// Waits until the offsets below `end` are committed while this replica leads.
    async fn wait_committed(&self, end: i64, limit: Duration) -> Result<(), ErrorCode> {
        let waited = within(limit, async {
            loop {
                let listener = self.state_machine.changed();
                if self.committed_offset() >= end {
                    return Ok(());
                }
                if !self.is_leader() || !self.hears_quorum() {
                    return Err(ErrorCode::NotLeaderOrFollower);
                }
                // The leadership may end without the commit point moving.
                let _ = within(Duration::from_millis(100), listener).await;
            }
        })
        .await;
        waited.unwrap_or(Err(ErrorCode::RequestTimedOut))
    }
}

impl Proposal {
    /// Waits (at most `limit`) for the batch's commit, or for the leader's own write of it when
    /// it was proposed to be answered there (acks=1); its offsets, or the Kafka error code.
    pub async fn committed(self, limit: Duration) -> Result<Committed, ErrorCode> {
        match self {
            Proposal::Proposed(
                replica,
                producer_id,
                mut receiver,
                Some((placement, uncommitted)),
            ) => {
                // As Kafka answers acks=1: once the leader's O_DIRECT write completed. A
                // failover may take such a batch back (it was on the leader alone).
                let placed = futures_lite::future::or(
                    async { Some(within(limit, placement.placed()).await.flatten()) },
                    async {
                        // Refused or deposed before the batch reached the log.
                        let _ = (&mut receiver).await;
                        None
                    },
                )
                .await;
                drop(placement);
                let result = match placed {
                    Some(Some((log, outcome))) => {
                        match within(limit, log.wait_written(&outcome)).await {
                            Some(Ok(())) => Ok(Committed {
                                base_offset: outcome.base_offset,
                                log_start_offset: outcome.log_start_offset,
                            }),
                            Some(Err(error)) => Err(crate::api::errors::log_error_code(&error)),
                            None => Err(ErrorCode::RequestTimedOut),
                        }
                    }
                    Some(None) => Err(ErrorCode::RequestTimedOut),
                    None => Err(ErrorCode::NotLeaderOrFollower),
                };
                // The producer's proposal stays in flight until Raft is done with it, so its
                // next batch is decided after this one's fate (see `propose`).
                glommio::spawn_local(async move {
                    let _ = within(PROPOSAL_FOLLOW_MAX, &mut receiver).await;
                    drop(uncommitted);
                    replica.finish(producer_id);
                })
                .detach();
                result
            }
            Proposal::Duplicate(replica, base_offset, last_offset) => {
                replica.wait_committed(last_offset + 1, limit).await?;
                Ok(Committed {
                    base_offset,
                    log_start_offset: replica.log().log_start_offset(),
                })
            }
            Proposal::Proposed(replica, producer_id, receiver, None) => {
                // A leader cut off from its quorum may never learn that it lost: it refuses once
                // it heard from no quorum for a while (the batch may still commit if the cut
                // heals first; a retry is then deduplicated or, without idempotence, a
                // duplicate, as after any refusal).
                let outcome =
                    futures_lite::future::or(async { Ok(within(limit, receiver).await) }, async {
                        replica.quorum_lost().await;
                        Err(ErrorCode::NotLeaderOrFollower)
                    })
                    .await;
                let result = match outcome {
                    Err(code) => Err(code),
                    Ok(None) => Err(ErrorCode::RequestTimedOut),
                    Ok(Some(Err(_))) => Err(ErrorCode::NotLeaderOrFollower),
                    Ok(Some(Ok(Err(_)))) => Err(ErrorCode::NotLeaderOrFollower),
                    Ok(Some(Ok(Ok(response)))) => {
                        match replica.log.offset_of(response.log_id.index) {
                            Some(base_offset) => Ok(Committed {
                                base_offset,
                                log_start_offset: replica.log().log_start_offset(),
                            }),
                            None => Err(ErrorCode::NotLeaderOrFollower),
                        }
                    }
                };
                // A proposal that timed out stays in Raft's hands, but its producer's next batch
                // is then checked against the log, which is where a retry is decided.
                replica.finish(producer_id);
                result
            }
        }
    }
}

/// Whether a leader's metrics show `member` matched up to the leader's last log entry.
fn holds_whole_log(
    metrics: &openraft::RaftMetrics<crate::raft::partition_store::PartitionRaft>,
    member: u64,
) -> bool {
    metrics
        .replication
        .as_ref()
        .and_then(|matched| matched.get(&member).cloned().flatten())
        .map(|log_id| log_id.index)
        >= metrics.last_log_index
}

/// The sequence after `sequence` (sequences wrap to 0 after i32::MAX).
fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

/// The Raft configuration of every partition group.
fn group_config() -> Result<Arc<Config>, String> {
    let config = Config {
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: ELECTION_TIMEOUT_MS.0,
        election_timeout_max: ELECTION_TIMEOUT_MS.1,
        max_payload_entries: PAYLOAD_ENTRIES_MAX,
        snapshot_policy: SnapshotPolicy::Never,
        // A snapshot is a few hundred bytes, but installing one empties the replica's log.
        install_snapshot_timeout: SNAPSHOT_INSTALL_TIMEOUT_MS,
        // A replica whose log was lost (a replaced disk, a removed partition directory) comes
        // back empty: its leader starts its progress over and rebuilds it, as Kafka does,
        // instead of taking the log it matched before as still there.
        allow_log_reversion: Some(true),
        // The liveness task heartbeats and campaigns for every group of the shard at once; a
        // per-group tick (every ~20 ms) would cost more than everything else an idle group does.
        enable_tick: false,
        enable_heartbeat: false,
        enable_elect: false,
        ..Config::default()
    };
    config
        .validate()
        .map(Arc::new)
        .map_err(|error| error.to_string())
}

/// Where a member of a partition's group is: the shard holding that broker's replica, at the
/// broker's registered host and that shard's port.
fn resolver(shard: &Rc<Shard>, topic: String, partition: usize) -> ResolveMember {
    let shard = Rc::downgrade(shard);
    Rc::new(move |member: u64| {
        let shard = shard.upgrade()?;
        let cluster = shard.cluster.borrow();
        let node = cluster
            .topic(&topic)?
            .replicas
            .get(partition)?
            .iter()
            .find(|node| u64::from(node.broker) == member)
            .copied()?;
        let broker = cluster.broker(node.broker)?;
        let port = broker.ports.get(node.shard.index())?;
        Some(format!("{}:{port}", broker.host))
    })
}

/// Opens this shard's replica of `partition` of `topic` (its log, its Raft group) and starts
/// serving it. The directory must already be cleared for a fresh topic.
pub async fn open_replica(
    shard: &Rc<Shard>,
    topic: &TopicMeta,
    partition: usize,
    replicas: &[Node],
) -> Result<(), String> {
    let name = format!("{}-{partition}", topic.name);
    let dir = shard.partition_dir(&topic.name, partition);
    let log = PartitionLog::open(dir, topic.config.clone(), Rc::clone(&shard.cache))
        .await
        .map_err(|error| format!("{name}: {error}"))?;
    let votes = shard.partition_votes().await?;
    let store = PartitionLogStore::open(log, name.clone(), votes)
        .await
        .map_err(|error| format!("{name}: {error}"))?;
    let log = store.replica_log();
    let state_machine =
        PartitionStateMachine::open(log.clone(), Rc::clone(&shard.log_starts_decided))
            .await
            .map_err(|error| format!("{name}: {error}"))?;
    let key = GroupKey {
        topic_id: topic.topic_id,
        partition: partition as u32,
    };
    let member = u64::from(shard.broker_id);
    let resolve = resolver(shard, topic.name.clone(), partition);
    let network = GroupNetwork::new(
        key,
        member,
        Rc::clone(&shard.peer_links),
        Rc::clone(&resolve),
    );
    let raft = Raft::new(
        member,
        group_config()?,
        network,
        store,
        state_machine.clone(),
    )
    .await
    .map_err(|error| format!("{name}: {error}"))?;
    // Readers made from now on serve replication (the state machine's came with the start).
    log.throttle_catch_up(Rc::clone(&shard.recovery_throttle));
    shard.partition_groups.insert(key, raft.clone());
    // Every replica proposes the same membership; once initialized, a group refuses it.
    let initialized = raft.is_initialized().await.unwrap_or(true);
    if !initialized {
        let members: BTreeMap<u64, BasicNode> = replicas
            .iter()
            .map(|node| (u64::from(node.broker), BasicNode::new("")))
            .collect();
        if let Err(error) = raft.initialize(members).await {
            tracing::debug!(%error, group = %name, "group initialized elsewhere first");
        }
    }
    let replica = Rc::new(Replica {
        lag_max: Duration::from_millis(shard.config.replica_lag_time_max_ms),
        topic: topic.name.clone(),
        partition: partition as u32,
        key,
        member,
        members: replicas.iter().map(|node| u64::from(node.broker)).collect(),
        addresses: RefCell::new((Vec::new(), None)),
        resolve,
        links: Rc::clone(&shard.peer_links),
        campaigned_at: Cell::new(Instant::now()),
        jitter: super::replica_liveness::campaign_jitter(),
        handing_back: Cell::new(None),
        raft,
        log,
        state_machine,
        leading: Cell::new(false),
        leading_since: Cell::new(Instant::now()),
        proposals: RefCell::new(HashMap::new()),
        proposal_done: Signal::new(),
        proposing: Semaphore::new(1),
        log_start_moved: Signal::new(),
        uncommitted_acks_1: Rc::new(Semaphore::new(UNCOMMITTED_ACKS_1_BYTES_MAX)),
        refused: RefCell::new(HashMap::new()),
    });
    glommio::spawn_local(follow_leadership(
        Rc::downgrade(shard),
        Rc::downgrade(&replica),
    ))
    .detach();
    shard.insert_replica(&topic.name, partition, replica);
    Ok(())
}

/// Stops and forgets this shard's replicas of a deleted topic; their directories are removed.
pub async fn delete_replicas(shard: &Rc<Shard>, topic: &str) -> Result<(), String> {
    for replica in shard.remove_topic_replicas(topic) {
        super::offsets_replica::leadership_changed(shard, &replica, false);
        shard.partition_groups.remove(&replica.key);
        let _ = replica.raft.shutdown().await;
        let name = format!("{}-{}", replica.topic, replica.partition);
        shard
            .partition_votes()
            .await?
            .forget(&name)
            .await
            .map_err(|error| error.to_string())?;
        replica
            .log()
            .delete()
            .await
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// How long the log-start task waits before it tries a failed move again.
const LOG_START_RETRY: Duration = Duration::from_secs(1);

/// Moves each replica's log start once its state machine applied a new decision (and, at start,
/// any decision applied before a restart), until the shard stops. One task per shard: decisions
/// are rare, and a waiting task per replica costs a thousand replicas' worth of idle wake-ups.
pub async fn follow_log_starts(shard: Weak<Shard>) {
    loop {
        let Some(strong) = shard.upgrade() else {
            return;
        };
        let decided = strong.log_starts_decided.listen();
        let replicas = strong.all_replicas();
        drop(strong);
        let mut failed = false;
        for replica in replicas {
            match replica.purge_to_decided().await {
                Ok(None) => {}
                Ok(Some(log_start_offset)) => {
                    tracing::info!(
                        topic = %replica.topic,
                        partition = replica.partition,
                        log_start_offset,
                        "replicated log start moved"
                    );
                    replica.log_start_moved.notify();
                }
                Err(error) => {
                    tracing::warn!(
                        topic = %replica.topic,
                        partition = replica.partition,
                        %error,
                        "moving the replicated log start failed; trying again"
                    );
                    failed = true;
                }
            }
        }
        if failed {
            glommio::timer::sleep(LOG_START_RETRY).await;
        } else {
            decided.await;
        }
    }
}

/// Reports to the controller, for every partition this shard leads, each change of its in-sync
/// replicas (Kafka's AlterPartition), so every broker's Metadata lists the leader's view; all of
/// the shard's changed partitions go in one request. It looks every half
/// replica.lag.time.max.ms, as Kafka's leaders do, so a thousand idle partitions cost nothing
/// measurable. Runs until the shard stops.
pub async fn report_in_sync_replicas(shard: Weak<Shard>) {
    loop {
        let Some(lag_max) = shard
            .upgrade()
            .map(|shard| Duration::from_millis(shard.config.replica_lag_time_max_ms))
        else {
            return;
        };
        glommio::timer::sleep(lag_max / 2).await;
        let Some(shard) = shard.upgrade() else {
            return;
        };
        let reports: Vec<IsrReport> = {
            let replicas = shard.all_replicas();
            let cluster = shard.cluster.borrow();
            replicas
                .iter()
                .filter(|replica| replica.is_leader())
                .filter_map(|replica| {
                    let topic = cluster.topic(&replica.topic)?;
                    let index = replica.partition as usize;
                    let term = replica.term();
                    // Reported only once the metadata names this leader, for the controller
                    // takes a report from the current leader alone.
                    if topic.leader_term(index) != term
                        || topic.partitions.get(index)? != &shard.node()
                    {
                        return None;
                    }
                    let isr = replica.in_sync_brokers(lag_max);
                    (topic.reported_isr(index) != isr.as_slice()).then(|| IsrReport {
                        name: replica.topic.clone(),
                        topic_id: replica.key.topic_id,
                        partition: replica.partition,
                        leader: shard.node(),
                        term,
                        isr,
                    })
                })
                .collect()
        };
        if reports.is_empty() {
            continue;
        }
        let count = reports.len();
        let results = super::control::admin(&shard, AdminRequest::ReportIsr(reports)).await;
        let failed = results.iter().filter(|result| result.is_err()).count();
        if failed > 0 {
            tracing::debug!(
                count,
                failed,
                "in-sync replica reports refused; sent again next time"
            );
        }
    }
}

/// Keeps `replica.leading` current and reports each leadership won to the controller, until the
/// group shuts down.
async fn follow_leadership(shard: Weak<Shard>, replica: Weak<Replica>) {
    let Some(mut metrics) = replica.upgrade().map(|replica| replica.raft.metrics()) else {
        return;
    };
    let mut reported_term = 0;
    loop {
        let (leader, term, applied_term) = {
            let metrics = metrics.borrow_watched();
            (
                metrics.current_leader,
                metrics.current_term,
                metrics.last_applied.map(|log_id| log_id.leader_id.term),
            )
        };
        let (Some(shard), Some(replica)) = (shard.upgrade(), replica.upgrade()) else {
            return;
        };
        // A new leader serves once it applied an entry of its own term (its blank entry): by
        // then its commit point covers everything its predecessors committed, so no consumer
        // sees the high watermark go back.
        let leading = leader == Some(replica.member) && applied_term == Some(term);
        if replica.leading.replace(leading) != leading {
            replica.leading_since.set(Instant::now());
            super::offsets_replica::leadership_changed(&shard, &replica, leading);
        }
        if !leading {
            // Proposals of an ended term fail; their producers retry on the next leader.
            replica.proposal_done.notify();
        }
        if leading && term > reported_term {
            match report_leader(&shard, &replica, term).await {
                Ok(()) => reported_term = term,
                Err(error) => {
                    tracing::debug!(%error, topic = %replica.topic, partition = replica.partition, "leader report failed; retrying");
                    drop((shard, replica));
                    glommio::timer::sleep(REPORT_RETRY).await;
                    continue;
                }
            }
        }
        drop((shard, replica));
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

async fn report_leader(shard: &Rc<Shard>, replica: &Replica, term: u64) -> Result<(), TopicError> {
    let topic_id = replica.key.topic_id;
    let request = AdminRequest::ReportLeader {
        name: replica.topic.clone(),
        topic_id,
        partition: replica.partition,
        leader: shard.node(),
        term,
    };
    match super::control::admin(shard, request).await.pop() {
        Some(Ok(())) | Some(Err(TopicError::StaleLeader(_))) => Ok(()),
        Some(Err(error)) => Err(error),
        None => Err(TopicError::ControllerUnavailable("no answer".into())),
    }
}
