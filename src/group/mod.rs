//! The consumer-group coordinator of one shard: the groups routed to this shard
//! (`shard::routing::group_node`), their membership state machines (`classic_group.rs`) and their
//! committed offsets. A single broker (and a cluster whose offsets.topic.replication.factor is
//! one) keeps them in the shard's own offset store (`offset_store.rs`); a cluster keeps them in
//! the replicated `__consumer_offsets` topic (`offsets_topic.rs`), and a shard coordinates the
//! groups of the offsets partitions its replicas lead.
//!
//! Guarantees: an offset commit is applied (visible to OffsetFetch) only after it is durable (in
//! the store, or committed by a majority of the offsets partition's replicas), in the order it
//! was written. Until the offsets are loaded (at start-up, or when a replica becomes leader) the
//! groups' requests are refused with a loading error, and if loading fails, with "not available".
//! Callers must not: send a group to this coordinator that `group_node` does not route here
//! (the API layer answers NOT_COORDINATOR first).

pub mod classic_group;
pub mod error;
mod offset_compaction;
pub mod offset_store;
pub mod offsets_topic;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::LocalSender;

use self::classic_group::{
    Group, GroupLimits, GroupState, JoinOutcome, JoinRequest, Membership, SyncOutcome, SyncRequest,
};
pub use self::error::GroupError;
use self::offset_store::{CommittedOffset, OffsetRecord, OffsetStore, StoredOffsets};
use self::offsets_topic::{HostedPartition, OffsetsLog, offsets_partition};

/// The longest the coordinator sleeps between checks of sessions and rebalance timeouts. It
/// wakes earlier, at the earliest deadline it knows of; a deadline that a request creates while
/// it sleeps (a new member's session, an initial delay) is met at most this late.
const TICK_INTERVAL_MAX: Duration = Duration::from_millis(100);

/// The shortest sleep of the coordinator's timer, so a deadline that is due keeps the loop from
/// spinning when the timer fires a little early.
const TICK_INTERVAL_MIN: Duration = Duration::from_millis(1);

/// How long a group stays known while Empty with no offsets (Kafka forgets such groups at its
/// next offsets cleanup, every 10 minutes by default); until then DescribeGroups and ListGroups
/// show it Empty.
const EMPTY_GROUP_RETENTION: Duration = Duration::from_secs(600);

/// Largest commit metadata accepted (Kafka's offset.metadata.max.bytes default); larger gets
/// OFFSET_METADATA_TOO_LARGE, so a client cannot grow the offset log without bound.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

/// How often a leader of an offsets partition checks whether a checkpoint would pay.
const CHECKPOINT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The offset store's life: loading at start, then open (or failed for good); or, in a cluster,
/// the replicated offsets topic.
enum StoreState {
    Loading {
        /// Topics deleted while loading; their offsets are dropped once loaded.
        deleted_topics: Vec<String>,
    },
    Ready(Rc<OffsetStore>),
    Failed(String),
    /// Offsets live in `__consumer_offsets`; the groups of the partitions led here are served.
    Replicated,
}

/// Where one group's changes are made durable.
enum Writer {
    Local(Rc<OffsetStore>),
    Replicated(Rc<HostedPartition>),
}

/// One partition's commit in an OffsetCommit.
#[derive(Debug, Clone)]
pub struct PartitionCommit {
    /// The topic.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
    /// The value to commit.
    pub value: CommittedOffset,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    /// The state's name.
    pub state: &'static str,
    /// The protocol type, or empty.
    pub protocol_type: String,
    /// The selected protocol while Stable, else empty.
    pub protocol_name: String,
    /// Members: id, instance id, client id, client host, metadata, assignment.
    pub members: Vec<MemberSummary>,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberSummary {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the selected protocol (Stable only).
    pub metadata: bytes::Bytes,
    /// Assignment (Stable only).
    pub assignment: bytes::Bytes,
}

/// The shard's group coordinator.
pub struct GroupCoordinator {
    shard_id: u16,
    limits: GroupLimits,
    groups: RefCell<HashMap<String, Group>>,
    store: RefCell<StoreState>,
    member_counter: Cell<u64>,
    /// The offsets partitions whose replica here leads, by index (replicated offsets only).
    hosted: RefCell<HashMap<u32, Rc<HostedPartition>>>,
    /// Partitions of the offsets topic (replicated offsets only).
    offsets_partitions: Cell<usize>,
}

impl GroupCoordinator {
    /// A coordinator whose store is not loaded yet.
    pub fn new(shard_id: u16, limits: GroupLimits) -> Self {
        Self {
            shard_id,
            limits,
            groups: RefCell::new(HashMap::new()),
            store: RefCell::new(StoreState::Loading {
                deleted_topics: Vec::new(),
            }),
            member_counter: Cell::new(0),
            hosted: RefCell::new(HashMap::new()),
            offsets_partitions: Cell::new(1),
        }
    }

    /// The offset store's directory for `shard_id`.
    pub fn store_dir(data_dir: &std::path::Path, shard_id: u16) -> PathBuf {
        data_dir
            .join(offset_store::GROUPS_DIR_NAME)
            .join(format!("shard-{shard_id}"))
    }

    /// Loads the offset store in the background (dropping the offsets of `deleted_topics`, whose
    /// deletion the metadata log records) and starts the timer task; both run on the current
    /// executor for the shard's life.
    pub fn start(self: &Rc<Self>, dir: PathBuf, deleted_topics: HashSet<String>) {
        let coordinator = Rc::clone(self);
        glommio::spawn_local(async move { coordinator.load(dir, deleted_topics).await }).detach();
        self.start_timer();
    }

    /// Starts the coordinator of a cluster whose offsets live in the replicated offsets topic:
    /// it serves the groups of each offsets partition once its replica here leads.
    pub fn start_replicated(self: &Rc<Self>) {
        *self.store.borrow_mut() = StoreState::Replicated;
        self.start_timer();
    }

    fn start_timer(self: &Rc<Self>) {
        let coordinator = Rc::clone(self);
        glommio::spawn_local(async move {
            loop {
                let wait = coordinator.time_to_next_deadline(Instant::now());
                glommio::timer::sleep(wait).await;
                coordinator.tick(Instant::now());
            }
        })
        .detach();
    }

    async fn load(self: Rc<Self>, dir: PathBuf, deleted_topics: HashSet<String>) {
        match OffsetStore::open(dir, deleted_topics).await {
            Ok((store, offsets)) => {
                self.install(offsets);
                let deleted = match std::mem::replace(
                    &mut *self.store.borrow_mut(),
                    StoreState::Ready(store),
                ) {
                    StoreState::Loading { deleted_topics } => deleted_topics,
                    StoreState::Ready(_) | StoreState::Failed(_) | StoreState::Replicated => {
                        Vec::new()
                    }
                };
                for topic in deleted {
                    self.remove_topic(&topic).await;
                }
                tracing::info!(shard = self.shard_id, "group coordinator loaded");
            }
            Err(error) => {
                tracing::error!(shard = self.shard_id, %error, "offset store failed to load");
                *self.store.borrow_mut() = StoreState::Failed(error.to_string());
            }
        }
    }

    fn install(&self, offsets: StoredOffsets) {
        let mut groups = self.groups.borrow_mut();
        for (group_id, group_offsets) in offsets {
            let group = groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(group_id));
            group.offsets = group_offsets;
        }
    }

    /// Where `group_id`'s changes go, or why this coordinator cannot serve it now.
    fn writer(&self, group_id: &str) -> Result<Writer, GroupError> {
        match &*self.store.borrow() {
            StoreState::Loading { .. } => Err(GroupError::CoordinatorLoading),
            StoreState::Ready(store) => Ok(Writer::Local(Rc::clone(store))),
            StoreState::Failed(reason) => Err(GroupError::CoordinatorNotAvailable(reason.clone())),
            StoreState::Replicated => {
                let partition = offsets_partition(group_id, self.offsets_partitions.get());
                match self.hosted.borrow().get(&partition) {
                    None => Err(GroupError::NotCoordinator),
                    Some(hosted) if !hosted.is_loaded() => Err(GroupError::CoordinatorLoading),
                    Some(hosted) => Ok(Writer::Replicated(Rc::clone(hosted))),
                }
            }
        }
    }

    /// Whether every group this coordinator serves is loaded (ListGroups needs them all).
    fn all_loaded(&self) -> Result<(), GroupError> {
        match &*self.store.borrow() {
            StoreState::Loading { .. } => Err(GroupError::CoordinatorLoading),
            StoreState::Ready(_) => Ok(()),
            StoreState::Failed(reason) => Err(GroupError::CoordinatorNotAvailable(reason.clone())),
            StoreState::Replicated => {
                let hosted = self.hosted.borrow();
                match hosted.values().all(|hosted| hosted.is_loaded()) {
                    true => Ok(()),
                    false => Err(GroupError::CoordinatorLoading),
                }
            }
        }
    }

    /// Whether this shard leads the offsets partition of `group_id` (replicated offsets).
    pub fn hosts(&self, group_id: &str) -> bool {
        let partition = offsets_partition(group_id, self.offsets_partitions.get());
        self.hosted.borrow().contains_key(&partition)
    }

    /// Makes `records` durable through `writer`, then they are applied.
    async fn persist(&self, writer: &Writer, records: Vec<OffsetRecord>) -> Result<(), GroupError> {
        match writer {
            Writer::Local(store) => {
                store
                    .append(&records)
                    .await
                    .map_err(|error| GroupError::CoordinatorNotAvailable(error.to_string()))?;
                self.apply(records, false);
                Ok(())
            }
            // The partition's applier applies them, in the log's order.
            Writer::Replicated(hosted) => hosted.write(&records, now_ms()).await,
        }
    }

    /// This shard's replica of offsets partition `partition` (of `partitions`) now leads: its
    /// groups are loaded from the log, then served here.
    pub fn offsets_partition_led(
        self: &Rc<Self>,
        partition: u32,
        partitions: usize,
        log: Rc<dyn OffsetsLog>,
    ) {
        self.offsets_partitions.set(partitions.max(1));
        self.offsets_partition_lost(partition);
        let hosted = HostedPartition::new(partition, log);
        self.hosted
            .borrow_mut()
            .insert(partition, Rc::clone(&hosted));
        let coordinator = Rc::clone(self);
        let applier = Rc::clone(&hosted);
        glommio::spawn_local(async move {
            applier
                .apply_log(|records, loading| coordinator.apply(records, loading))
                .await;
        })
        .detach();
        let coordinator = Rc::clone(self);
        glommio::spawn_local(async move { coordinator.compact(hosted).await }).detach();
    }

    /// This shard's replica of offsets partition `partition` no longer leads: its groups are
    /// forgotten here (their members find the new coordinator).
    pub fn offsets_partition_lost(&self, partition: u32) {
        if let Some(hosted) = self.hosted.borrow_mut().remove(&partition) {
            hosted.stop();
            tracing::info!(
                shard = self.shard_id,
                partition,
                "group offsets partition left"
            );
        }
        let partitions = self.offsets_partitions.get();
        self.groups
            .borrow_mut()
            .retain(|id, _| offsets_partition(id, partitions) != partition);
    }

    /// Checkpoints `hosted`'s offsets whenever that would drop many dead records, while it
    /// leads.
    async fn compact(&self, hosted: Rc<HostedPartition>) {
        while !hosted.is_stopped() {
            glommio::timer::sleep(CHECKPOINT_CHECK_INTERVAL).await;
            let (live, _) = self.live_in(hosted.partition, false);
            if !hosted.needs_checkpoint(live, hosted.segment_bytes()) {
                continue;
            }
            let live = || self.live_in(hosted.partition, true).1;
            match hosted.checkpoint(live, now_ms()).await {
                Ok(written) => tracing::info!(
                    partition = hosted.partition,
                    written,
                    "group offsets checkpoint"
                ),
                Err(error) => tracing::warn!(
                    partition = hosted.partition,
                    %error,
                    "group offsets checkpoint failed; trying again later"
                ),
            }
        }
    }

    /// The committed offsets counted, and the checkpoint records (every committed offset and
    /// each Stable membership) built with `records`, of the groups of offsets partition
    /// `partition`.
    fn live_in(&self, partition: u32, records: bool) -> (u64, Vec<OffsetRecord>) {
        let partitions = self.offsets_partitions.get();
        let groups = self.groups.borrow();
        let mut count = 0;
        let mut built = Vec::new();
        for (id, group) in groups
            .iter()
            .filter(|(id, _)| offsets_partition(id, partitions) == partition)
        {
            count += group.offsets.len() as u64;
            if !records {
                continue;
            }
            built.extend(
                group
                    .offsets
                    .iter()
                    .map(|((topic, p), value)| OffsetRecord::Commit {
                        group: id.clone(),
                        topic: topic.clone(),
                        partition: *p,
                        value: value.clone(),
                    }),
            );
            if let Some(membership) = group.membership() {
                built.push(OffsetRecord::Membership {
                    group: id.clone(),
                    membership,
                });
            }
        }
        (count, built)
    }

    fn tick(&self, now: Instant) {
        let mut groups = self.groups.borrow_mut();
        for group in groups.values_mut() {
            group.tick(now, &self.limits);
        }
        groups.retain(|_, group| !group.is_forgotten(now, EMPTY_GROUP_RETENTION));
    }

    /// How long the timer may sleep: until the earliest future deadline of any group, within
    /// [TICK_INTERVAL_MIN, TICK_INTERVAL_MAX]. A deadline already past was handled by the tick
    /// that just ran (or is waiting on another one, like a rebalance timeout during the initial
    /// delay), so it does not make the timer spin.
    fn time_to_next_deadline(&self, now: Instant) -> Duration {
        let groups = self.groups.borrow();
        let earliest = groups
            .values()
            .filter_map(|group| group.next_deadline(now))
            .min();
        earliest
            .map_or(TICK_INTERVAL_MAX, |deadline| {
                deadline.saturating_duration_since(now)
            })
            .clamp(TICK_INTERVAL_MIN, TICK_INTERVAL_MAX)
    }

    fn new_member_id(&self, client_id: &str) -> String {
        let counter = self.member_counter.get() + 1;
        self.member_counter.set(counter);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{client_id}-{}-{nanos:x}-{counter}", self.shard_id)
    }

    /// Handles a JoinGroup: `Ok(Some)` answers now, `Ok(None)` means the waiter was parked.
    pub fn join(
        &self,
        group_id: &str,
        request: JoinRequest,
        waiter: LocalSender<JoinOutcome>,
    ) -> Result<Option<JoinOutcome>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.writer(group_id)?;
        let new_member_id = self.new_member_id(&request.client_id);
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Group::new(group_id.to_owned()));
        Ok(group.join(request, &self.limits, new_member_id, waiter, Instant::now()))
    }

    /// Handles a SyncGroup: `Some` answers now, `None` means the waiter was parked.
    pub fn sync(
        &self,
        group_id: &str,
        request: SyncRequest,
        waiter: LocalSender<SyncOutcome>,
    ) -> Result<Option<SyncOutcome>, GroupError> {
        self.writer(group_id)?;
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let was_stable = group.state == GroupState::Stable;
        let outcome = group.sync(request, waiter, Instant::now());
        let membership = group.membership().filter(|_| !was_stable);
        drop(groups);
        if let Some(membership) = membership {
            self.keep_membership(group_id, membership);
        }
        Ok(outcome)
    }

    /// Writes a group's new membership to its offsets partition, in the background: a
    /// coordinator that dies first leaves the members to rejoin its successor, as before.
    fn keep_membership(&self, group_id: &str, membership: Membership) {
        let Ok(Writer::Replicated(hosted)) = self.writer(group_id) else {
            return;
        };
        let record = OffsetRecord::Membership {
            group: group_id.to_owned(),
            membership,
        };
        let mut encoded = Vec::new();
        offset_store::encode_record(&record, &mut encoded);
        if encoded.len() > offset_store::RECORD_BYTES_MAX {
            tracing::debug!(
                group = group_id,
                bytes = encoded.len(),
                "membership too large to keep"
            );
            return;
        }
        let group = group_id.to_owned();
        glommio::spawn_local(async move {
            if let Err(error) = hosted.write(&[record], now_ms()).await {
                tracing::debug!(%group, %error, "keeping the group's membership failed");
            }
        })
        .detach();
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        self.writer(group_id)?;
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        group.heartbeat(member_id, generation_id, group_instance_id, Instant::now())
    }

    /// Handles one member of a LeaveGroup.
    pub fn leave(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<String, GroupError> {
        self.writer(group_id)?;
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let was_empty = group.state == GroupState::Empty;
        let left = group.leave(member_id, group_instance_id, Instant::now(), &self.limits);
        let emptied = (!was_empty && group.state == GroupState::Empty).then(|| Membership {
            generation_id: group.generation_id,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_name: group.protocol_name.clone().unwrap_or_default(),
            leader: String::new(),
            members: Vec::new(),
        });
        drop(groups);
        if let Some(membership) = emptied {
            self.keep_membership(group_id, membership);
        }
        left
    }

    /// Commits offsets: the outer error refuses the whole request; otherwise one result per
    /// commit, in order. Returns once the accepted commits are durable.
    pub async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
        group_instance_id: Option<&str>,
        commits: Vec<PartitionCommit>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let writer = self.writer(group_id)?;
        {
            let mut groups = self.groups.borrow_mut();
            match groups.get_mut(group_id) {
                Some(group) => {
                    group.check_commit(member_id, generation_id, group_instance_id)?;
                    group.touch(member_id, Instant::now());
                }
                // Kafka creates the group for a commit outside group management.
                None if generation_id < 0 => {
                    groups.insert(group_id.to_owned(), Group::new(group_id.to_owned()));
                }
                None => return Err(GroupError::IllegalGeneration),
            }
        }
        let mut results = Vec::with_capacity(commits.len());
        let mut records = Vec::with_capacity(commits.len());
        for commit in commits {
            let metadata_bytes = commit.value.metadata.as_ref().map_or(0, String::len);
            if metadata_bytes > OFFSET_METADATA_BYTES_MAX {
                results.push(Err(GroupError::OffsetMetadataTooLarge(metadata_bytes)));
                continue;
            }
            results.push(Ok(()));
            records.push(OffsetRecord::Commit {
                group: group_id.to_owned(),
                topic: commit.topic,
                partition: commit.partition,
                value: commit.value,
            });
        }
        if let Err(error) = self.persist(&writer, records).await {
            return Ok(results
                .into_iter()
                .map(|result| result.and(Err(error.clone())))
                .collect());
        }
        Ok(results)
    }

    /// Applies durable records to the groups, in log order; memberships only while `loading`
    /// (a coordinator serving the groups is ahead of its own membership records).
    fn apply(&self, records: Vec<OffsetRecord>, loading: bool) {
        let now = Instant::now();
        let mut groups = self.groups.borrow_mut();
        for record in records {
            match record {
                OffsetRecord::Commit {
                    group,
                    topic,
                    partition,
                    value,
                } => {
                    let entry = groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(group));
                    entry.offsets.insert((topic, partition), value);
                }
                OffsetRecord::Delete {
                    group,
                    topic,
                    partition,
                } => {
                    if let Some(entry) = groups.get_mut(&group) {
                        entry.offsets.remove(&(topic, partition));
                    }
                }
                OffsetRecord::Membership { group, membership } => {
                    if loading {
                        groups
                            .entry(group.clone())
                            .or_insert_with(|| Group::new(group))
                            .restore(membership, now);
                    }
                }
            }
        }
    }

    /// A group's committed offsets for the requested partitions (`None`: every committed one),
    /// `None` for a partition without a commit.
    #[allow(clippy::type_complexity)]
    pub fn fetch(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>, GroupError> {
        self.writer(group_id)?;
        let groups = self.groups.borrow();
        let offsets = groups.get(group_id).map(|group| &group.offsets);
        let lookup = |topic: &str, partition: i32| {
            offsets.and_then(|o| o.get(&(topic.to_owned(), partition)).cloned())
        };
        Ok(match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .iter()
                        .map(|p| (*p, lookup(&topic, *p)))
                        .collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut by_topic: std::collections::BTreeMap<String, Vec<_>> = Default::default();
                for ((topic, partition), value) in offsets.into_iter().flatten() {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*partition, Some(value.clone())));
                }
                by_topic.into_iter().collect()
            }
        })
    }

    /// DescribeGroups for one group; an unknown group is reported Dead, as Kafka does.
    pub fn describe(&self, group_id: &str) -> Result<GroupSummary, GroupError> {
        self.writer(group_id)?;
        let groups = self.groups.borrow();
        let Some(group) = groups.get(group_id) else {
            return Ok(GroupSummary {
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            });
        };
        let stable = group.state == GroupState::Stable;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        let members = group
            .members
            .values()
            .map(|m| MemberSummary {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(&protocol)
                } else {
                    Default::default()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Default::default()
                },
            })
            .collect();
        Ok(GroupSummary {
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable { protocol } else { String::new() },
            members,
        })
    }

    /// Every group this shard coordinates: id, protocol type, state name.
    pub fn list(&self) -> Result<Vec<(String, String, &'static str)>, GroupError> {
        self.all_loaded()?;
        let groups = self.groups.borrow();
        let mut listed: Vec<_> = groups
            .values()
            .map(|g| {
                let protocol_type = g.protocol_type.clone().unwrap_or_default();
                (g.id.clone(), protocol_type, g.state.name())
            })
            .collect();
        listed.sort();
        Ok(listed)
    }

    /// Deletes an empty group and its committed offsets.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), GroupError> {
        let writer = self.writer(group_id)?;
        let records: Vec<OffsetRecord> = {
            let mut groups = self.groups.borrow_mut();
            let group = groups.get(group_id).ok_or(GroupError::GroupIdNotFound)?;
            if !group.members.is_empty() {
                return Err(GroupError::NonEmptyGroup);
            }
            let group = groups.remove(group_id).expect("group present");
            group
                .offsets
                .into_keys()
                .map(|(topic, partition)| OffsetRecord::Delete {
                    group: group_id.to_owned(),
                    topic,
                    partition,
                })
                .collect()
        };
        self.persist(&writer, records).await
    }

    /// Deletes committed offsets of a group (OffsetDelete): the outer error refuses the whole
    /// request, else one result per partition, in order.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let writer = self.writer(group_id)?;
        let (results, records) = {
            let groups = self.groups.borrow();
            let group = groups.get(group_id).ok_or(GroupError::GroupIdNotFound)?;
            let subscribed = match group.state {
                GroupState::Empty => Some(HashSet::new()),
                GroupState::Dead => return Err(GroupError::GroupIdNotFound),
                GroupState::PreparingRebalance
                | GroupState::CompletingRebalance
                | GroupState::Stable => {
                    if group.protocol_type.as_deref() != Some("consumer") {
                        return Err(GroupError::NonEmptyGroup);
                    }
                    group.subscribed_topics()
                }
            };
            let mut results = Vec::with_capacity(partitions.len());
            let mut records = Vec::new();
            for (topic, partition) in partitions {
                let is_subscribed = subscribed.as_ref().is_none_or(|s| s.contains(&topic));
                if is_subscribed {
                    results.push(Err(GroupError::GroupSubscribedToTopic));
                    continue;
                }
                results.push(Ok(()));
                if group.offsets.contains_key(&(topic.clone(), partition)) {
                    records.push(OffsetRecord::Delete {
                        group: group_id.to_owned(),
                        topic,
                        partition,
                    });
                }
            }
            (results, records)
        };
        self.persist(&writer, records).await?;
        Ok(results)
    }

    /// Drops every group's committed offsets of a deleted topic, as Kafka does, so a topic
    /// recreated under the same name starts from the consumers' auto.offset.reset.
    pub async fn remove_topic(&self, topic: &str) {
        let store = {
            let mut state = self.store.borrow_mut();
            match &mut *state {
                StoreState::Loading { deleted_topics } => {
                    deleted_topics.push(topic.to_owned());
                    return;
                }
                StoreState::Ready(store) => Some(Rc::clone(store)),
                StoreState::Failed(_) => return,
                StoreState::Replicated => None,
            }
        };
        let records: Vec<OffsetRecord> = {
            let mut groups = self.groups.borrow_mut();
            let mut records = Vec::new();
            for group in groups.values_mut() {
                let partitions: Vec<i32> = group
                    .offsets
                    .keys()
                    .filter(|(t, _)| t == topic)
                    .map(|(_, p)| *p)
                    .collect();
                for partition in partitions {
                    group.offsets.remove(&(topic.to_owned(), partition));
                    records.push(OffsetRecord::Delete {
                        group: group.id.clone(),
                        topic: topic.to_owned(),
                        partition,
                    });
                }
            }
            records
        };
        let Some(store) = store else {
            return self.remove_replicated(topic, records).await;
        };
        if let Err(error) = store.append(&records).await {
            tracing::error!(%error, topic, "dropping a deleted topic's offsets failed");
        }
    }

    /// Writes the deletions of a deleted topic's offsets to the offsets partitions led here.
    async fn remove_replicated(&self, topic: &str, records: Vec<OffsetRecord>) {
        let partitions = self.offsets_partitions.get();
        let mut by_partition: HashMap<u32, Vec<OffsetRecord>> = HashMap::new();
        for record in records {
            let OffsetRecord::Delete { group, .. } = &record else {
                continue;
            };
            by_partition
                .entry(offsets_partition(group, partitions))
                .or_default()
                .push(record);
        }
        for (partition, records) in by_partition {
            let hosted = self.hosted.borrow().get(&partition).cloned();
            let Some(hosted) = hosted else { continue };
            if let Err(error) = hosted.write(&records, now_ms()).await {
                tracing::error!(%error, topic, partition, "dropping a deleted topic's offsets failed");
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::channels::local_channel;

    #[test]
    fn requests_wait_for_the_offset_store() {
        // Proves every group operation is refused with the loading error until the offset store
        // is loaded, and a topic deleted meanwhile is remembered for after the load.
        let limits = GroupLimits {
            initial_rebalance_delay: Duration::ZERO,
            session_timeout_ms_min: 6000,
            session_timeout_ms_max: 300_000,
        };
        let coordinator = GroupCoordinator::new(0, limits);
        let request = JoinRequest {
            member_id: String::new(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: String::new(),
            session_timeout_ms: 6000,
            rebalance_timeout_ms: 6000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), bytes::Bytes::new())],
            require_known_member_id: true,
        };
        let (sender, _) = local_channel::new_bounded(1);
        let loading = Err(GroupError::CoordinatorLoading);
        assert_eq!(coordinator.join("g", request, sender).map(|_| ()), loading);
        assert_eq!(coordinator.heartbeat("g", "m", 1, None), loading);
        assert_eq!(coordinator.fetch("g", None).map(|_| ()), loading);
        assert_eq!(coordinator.list().map(|_| ()), loading);
        futures_lite::future::block_on(coordinator.remove_topic("gone"));
        let StoreState::Loading { deleted_topics } = &*coordinator.store.borrow() else {
            panic!("still loading");
        };
        assert_eq!(deleted_topics, &vec!["gone".to_owned()]);
    }
}
