//! One consumer group's state machine (Kafka's classic protocol): Empty, PreparingRebalance,
//! CompletingRebalance, Stable, Dead; its members, generation, protocol and leader, and the
//! JoinGroup and SyncGroup requests parked until the rebalance reaches them.
//!
//! Every method is synchronous and takes `now`: time moves only through `tick`, which the
//! coordinator calls periodically to expire sessions, end the initial delay and enforce the
//! rebalance timeout. A parked request is answered through its one-shot sender; a dropped
//! receiver (the client went away) is ignored. Committed offsets live here too (a group with only
//! offsets is Empty), but are changed only once the offset store made them durable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::local_channel::LocalSender;

use super::error::GroupError;
use super::offset_store::CommittedOffset;

/// A group's state, as Kafka names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (maybe committed offsets).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Deleted or unknown. Only reported: a deleted group is removed from the coordinator
    /// rather than kept in this state.
    Dead,
}

impl GroupState {
    /// Kafka's name for the state (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// The broker's group settings.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// group.initial.rebalance.delay.ms.
    pub initial_rebalance_delay: Duration,
    /// group.min.session.timeout.ms.
    pub session_timeout_ms_min: i32,
    /// group.max.session.timeout.ms.
    pub session_timeout_ms_max: i32,
}

/// A JoinGroup request, as the group sees it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The member id sent (empty for a new member).
    pub member_id: String,
    /// The static instance id, if any.
    pub group_instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocol type ("consumer").
    pub protocol_type: String,
    /// Protocols in preference order, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Whether a new dynamic member must first get its id (JoinGroup v4+).
    pub require_known_member_id: bool,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    /// The refusal, if any.
    pub error: Option<GroupError>,
    /// The new generation.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// Whether the leader must skip the assignment (a static leader rejoining a stable group).
    pub skip_assignment: bool,
    /// The member's id.
    pub member_id: String,
    /// For the leader: every member's id, instance id and metadata for the selected protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    fn refused(error: GroupError, member_id: String) -> Self {
        Self {
            error: Some(error),
            generation_id: -1,
            member_id,
            ..Self::default()
        }
    }
}

/// A SyncGroup request, as the group sees it.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// The member.
    pub member_id: String,
    /// The generation it joined.
    pub generation_id: i32,
    /// Its static instance id.
    pub group_instance_id: Option<String>,
    /// The protocol type it expects (v5+).
    pub protocol_type: Option<String>,
    /// The protocol it expects (v5+).
    pub protocol_name: Option<String>,
    /// From the leader: every member's assignment.
    pub assignments: Vec<(String, Bytes)>,
}

/// The answer to a SyncGroup: the member's assignment, with the group's protocol.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    /// The assignment, or why there is none.
    pub assignment: Result<Bytes, GroupError>,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
}

/// One member.
pub struct Member {
    /// Its id.
    pub member_id: String,
    /// Its static instance id.
    pub group_instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    /// The assignment the leader gave it.
    pub assignment: Bytes,
    join_waiter: Option<LocalSender<JoinOutcome>>,
    sync_waiter: Option<LocalSender<SyncOutcome>>,
    last_seen: Instant,
}

impl Member {
    /// Its metadata for `protocol`, empty if it does not support it.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }
}

/// A Stable group's membership as the offsets topic keeps it (Kafka's group metadata record),
/// so a coordinator that takes the group over after a failover keeps its members and generation
/// instead of making them rejoin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The generation.
    pub generation_id: i32,
    /// The members' protocol type.
    pub protocol_type: String,
    /// The protocol selected at that generation's rebalance.
    pub protocol_name: String,
    /// The leader's member id.
    pub leader: String,
    /// The members.
    pub members: Vec<MemberRecord>,
}

/// One member of a [`Membership`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// Its id.
    pub member_id: String,
    /// Its static instance id.
    pub group_instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Session timeout, ms.
    pub session_timeout_ms: u32,
    /// Rebalance timeout, ms.
    pub rebalance_timeout_ms: u32,
    /// Its metadata for the selected protocol.
    pub metadata: Bytes,
    /// Its assignment.
    pub assignment: Bytes,
}

/// One consumer group.
pub struct Group {
    /// The group id.
    pub id: String,
    /// Its state.
    pub state: GroupState,
    /// Its generation, bumped by every completed rebalance.
    pub generation_id: i32,
    /// The members' protocol type, set by the first member to join an Empty group; none for a
    /// group that only ever had commits from outside group management.
    pub protocol_type: Option<String>,
    /// The protocol chosen at the last rebalance.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED and not joined yet, with their expiry.
    pending_members: HashMap<String, Instant>,
    /// When the running rebalance gives up waiting for members.
    rebalance_deadline: Option<Instant>,
    /// The initial delay of a rebalance from Empty: its end, and the latest it may be extended to.
    initial_delay: Option<(Instant, Instant)>,
    joined_during_delay: bool,
    /// When the group last became Empty.
    empty_since: Instant,
    /// Committed offsets by (topic, partition).
    pub offsets: HashMap<(String, i32), CommittedOffset>,
}

impl Group {
    /// A new, empty group.
    pub fn new(id: String) -> Self {
        Self {
            id,
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            rebalance_deadline: None,
            initial_delay: None,
            joined_during_delay: false,
            empty_since: Instant::now(),
            offsets: HashMap::new(),
        }
    }

    /// The membership to keep in the offsets topic: `Some` while Stable.
    pub fn membership(&self) -> Option<Membership> {
        if self.state != GroupState::Stable {
            return None;
        }
        let protocol_name = self.protocol_name.clone().unwrap_or_default();
        let millis = |duration: Duration| u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
        Some(Membership {
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            leader: self.leader.clone().unwrap_or_default(),
            members: self
                .members
                .values()
                .map(|member| MemberRecord {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    session_timeout_ms: millis(member.session_timeout),
                    rebalance_timeout_ms: millis(member.rebalance_timeout),
                    metadata: member.metadata(&protocol_name),
                    assignment: member.assignment.clone(),
                })
                .collect(),
            protocol_name,
        })
    }

    /// Takes the group over Stable with `membership` (a coordinator loading its offsets
    /// partition after a failover): the members carry on at their generation, each with a fresh
    /// session from `now`, so one that is gone expires as it would have.
    pub fn restore(&mut self, membership: Membership, now: Instant) {
        self.state = if membership.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.generation_id = membership.generation_id;
        self.protocol_type = Some(membership.protocol_type.clone());
        self.protocol_name = Some(membership.protocol_name.clone());
        self.leader = Some(membership.leader);
        self.pending_members.clear();
        self.rebalance_deadline = None;
        self.initial_delay = None;
        self.joined_during_delay = false;
        self.empty_since = now;
        self.members = membership
            .members
            .into_iter()
            .map(|member| {
                let restored = Member {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id,
                    client_id: member.client_id,
                    client_host: member.client_host,
                    session_timeout: Duration::from_millis(member.session_timeout_ms.into()),
                    rebalance_timeout: Duration::from_millis(member.rebalance_timeout_ms.into()),
                    protocol_type: membership.protocol_type.clone(),
                    protocols: vec![(membership.protocol_name.clone(), member.metadata)],
                    assignment: member.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    last_seen: now,
                };
                (member.member_id, restored)
            })
            .collect();
    }

    /// Whether the group has been Empty, without offsets or pending members, for `retention`:
    /// the coordinator then forgets it, so groups that come and go do not accumulate.
    pub fn is_forgotten(&self, now: Instant, retention: Duration) -> bool {
        self.state == GroupState::Empty
            && self.offsets.is_empty()
            && self.pending_members.is_empty()
            && now.duration_since(self.empty_since) >= retention
    }

    /// Handles a JoinGroup: `Some` is the answer now, `None` means the waiter was parked and
    /// will be answered when the rebalance completes.
    pub fn join(
        &mut self,
        request: JoinRequest,
        limits: &GroupLimits,
        new_member_id: String,
        waiter: LocalSender<JoinOutcome>,
        now: Instant,
    ) -> Option<JoinOutcome> {
        let member_id = request.member_id.clone();
        if let Err(error) = self.check_join(&request, limits) {
            return Some(JoinOutcome::refused(error, member_id));
        }
        if request.member_id.is_empty() {
            return self.join_new(request, limits, new_member_id, waiter, now);
        }
        if self.pending_members.remove(&request.member_id).is_some() {
            self.add_member(request, waiter, now, limits);
            return None;
        }
        let Some(member) = self.members.get(&request.member_id) else {
            // A static instance id held by another member id: this one was replaced (fenced).
            let held = request
                .group_instance_id
                .as_deref()
                .is_some_and(|instance_id| {
                    self.members
                        .values()
                        .any(|m| m.group_instance_id.as_deref() == Some(instance_id))
                });
            let error = if held {
                GroupError::FencedInstanceId
            } else {
                GroupError::UnknownMemberId
            };
            return Some(JoinOutcome::refused(error, member_id));
        };
        if member.group_instance_id != request.group_instance_id {
            return Some(JoinOutcome::refused(
                GroupError::FencedInstanceId,
                member_id,
            ));
        }
        let unchanged = member.protocols == request.protocols;
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            GroupState::CompletingRebalance | GroupState::Stable if unchanged && !is_leader => {
                // A follower resending its join: answer with the current generation.
                Some(self.current_outcome(&member_id, false))
            }
            GroupState::CompletingRebalance if unchanged => {
                Some(self.current_outcome(&member_id, false))
            }
            _ => {
                self.update_member(request, waiter, now);
                self.prepare_rebalance(now, limits);
                self.maybe_complete_join(now);
                None
            }
        }
    }

    fn check_join(&self, request: &JoinRequest, limits: &GroupLimits) -> Result<(), GroupError> {
        let timeout = request.session_timeout_ms;
        if timeout < limits.session_timeout_ms_min || timeout > limits.session_timeout_ms_max {
            return Err(GroupError::InvalidSessionTimeout(timeout));
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if self.members.is_empty() {
            return Ok(());
        }
        let same_type = self.protocol_type.as_deref() == Some(request.protocol_type.as_str());
        let shared = request
            .protocols
            .iter()
            .any(|(name, _)| self.members.values().all(|m| supports(m, name)));
        if same_type && shared {
            Ok(())
        } else {
            Err(GroupError::InconsistentGroupProtocol)
        }
    }

    fn join_new(
        &mut self,
        request: JoinRequest,
        limits: &GroupLimits,
        new_member_id: String,
        waiter: LocalSender<JoinOutcome>,
        now: Instant,
    ) -> Option<JoinOutcome> {
        if let Some(instance_id) = request.group_instance_id.clone() {
            let known = self
                .members
                .values()
                .find(|m| m.group_instance_id.as_deref() == Some(instance_id.as_str()))
                .map(|m| m.member_id.clone());
            if let Some(old_member_id) = known {
                return self.replace_static_member(
                    &old_member_id,
                    request,
                    limits,
                    new_member_id,
                    waiter,
                    now,
                );
            }
        } else if request.require_known_member_id {
            let expiry = now + Duration::from_millis(request.session_timeout_ms as u64);
            self.pending_members.insert(new_member_id.clone(), expiry);
            return Some(JoinOutcome::refused(
                GroupError::MemberIdRequired,
                new_member_id,
            ));
        }
        let request = JoinRequest {
            member_id: new_member_id,
            ..request
        };
        self.add_member(request, waiter, now, limits);
        None
    }

    /// A static member restarted under a new member id: the old id is fenced. In a stable group
    /// with unchanged protocols it gets the current generation at once, without a rebalance.
    fn replace_static_member(
        &mut self,
        old_member_id: &str,
        request: JoinRequest,
        limits: &GroupLimits,
        new_member_id: String,
        waiter: LocalSender<JoinOutcome>,
        now: Instant,
    ) -> Option<JoinOutcome> {
        let mut member = self.members.remove(old_member_id).expect("member found");
        if let Some(old_waiter) = member.join_waiter.take() {
            let refused = JoinOutcome::refused(GroupError::FencedInstanceId, old_member_id.into());
            let _ = old_waiter.try_send(refused);
        }
        if let Some(old_waiter) = member.sync_waiter.take() {
            let _ = old_waiter.try_send(self.sync_outcome(Err(GroupError::FencedInstanceId)));
        }
        let unchanged = member.protocols == request.protocols;
        member.member_id = new_member_id.clone();
        member.last_seen = now;
        self.members.insert(new_member_id.clone(), member);
        let was_leader = self.leader.as_deref() == Some(old_member_id);
        if was_leader {
            self.leader = Some(new_member_id.clone());
        }
        if self.state == GroupState::Stable && unchanged {
            return Some(self.current_outcome(&new_member_id, was_leader));
        }
        let request = JoinRequest {
            member_id: new_member_id,
            ..request
        };
        self.update_member(request, waiter, now);
        self.prepare_rebalance(now, limits);
        self.maybe_complete_join(now);
        None
    }

    fn add_member(
        &mut self,
        request: JoinRequest,
        waiter: LocalSender<JoinOutcome>,
        now: Instant,
        limits: &GroupLimits,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        let member = Member {
            member_id: request.member_id.clone(),
            group_instance_id: request.group_instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout: Duration::ZERO,
            rebalance_timeout: Duration::ZERO,
            protocol_type: String::new(),
            protocols: Vec::new(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            last_seen: now,
        };
        self.members.insert(request.member_id.clone(), member);
        self.joined_during_delay = true;
        self.update_member(request, waiter, now);
        self.prepare_rebalance(now, limits);
        self.maybe_complete_join(now);
    }

    fn update_member(
        &mut self,
        request: JoinRequest,
        waiter: LocalSender<JoinOutcome>,
        now: Instant,
    ) {
        let member = self
            .members
            .get_mut(&request.member_id)
            .expect("member present");
        let session_timeout = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
        member.session_timeout = session_timeout;
        // JoinGroup v0 has no rebalance timeout (-1): Kafka uses the session timeout.
        member.rebalance_timeout = if request.rebalance_timeout_ms > 0 {
            Duration::from_millis(request.rebalance_timeout_ms as u64)
        } else {
            session_timeout
        };
        member.protocol_type = request.protocol_type;
        member.protocols = request.protocols;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.last_seen = now;
        if let Some(old) = member.join_waiter.replace(waiter) {
            let refused = JoinOutcome::refused(GroupError::RebalanceInProgress, request.member_id);
            let _ = old.try_send(refused);
        }
    }

    /// Moves to PreparingRebalance (if not there already), failing parked SyncGroups.
    fn prepare_rebalance(&mut self, now: Instant, limits: &GroupLimits) {
        match self.state {
            GroupState::PreparingRebalance | GroupState::Dead => return,
            GroupState::CompletingRebalance => {
                for member in self.members.values_mut() {
                    member.assignment = Bytes::new();
                }
                self.fail_sync_waiters(GroupError::RebalanceInProgress);
            }
            GroupState::Empty | GroupState::Stable => {}
        }
        let rebalance_timeout = self.rebalance_timeout_max();
        if self.state == GroupState::Empty {
            // The first members of a group usually start together: wait a little for the rest,
            // so they share one rebalance.
            self.initial_delay = Some((
                now + limits.initial_rebalance_delay,
                now + rebalance_timeout.max(limits.initial_rebalance_delay),
            ));
            self.joined_during_delay = false;
        }
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline = Some(now + rebalance_timeout);
        tracing::debug!(group = %self.id, generation = self.generation_id, "preparing rebalance");
    }

    fn rebalance_timeout_max(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    fn fail_sync_waiters(&mut self, error: GroupError) {
        let outcome = self.sync_outcome(Err(error));
        for member in self.members.values_mut() {
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.try_send(outcome.clone());
            }
        }
    }

    fn sync_outcome(&self, assignment: Result<Bytes, GroupError>) -> SyncOutcome {
        SyncOutcome {
            assignment,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
        }
    }

    /// Completes the join phase when every member has rejoined (and no new member is still
    /// getting its id), or when the rebalance timeout has passed.
    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance || self.initial_delay.is_some() {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some())
            && self.pending_members.is_empty();
        let timed_out = self
            .rebalance_deadline
            .is_some_and(|deadline| now >= deadline);
        if all_joined || timed_out {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: Instant) {
        // Members that did not rejoin in time are out.
        self.members.retain(|_, m| m.join_waiter.is_some());
        self.pending_members.clear();
        self.rebalance_deadline = None;
        self.generation_id += 1;
        if self.members.is_empty() {
            // The protocol type stays: Kafka lists and describes an Empty group with the type
            // its members had ("consumer"), and the next first member sets it again.
            self.state = GroupState::Empty;
            self.empty_since = now;
            self.protocol_name = None;
            self.leader = None;
            return;
        }
        self.protocol_name = Some(self.select_protocol());
        if !self
            .leader
            .as_ref()
            .is_some_and(|leader| self.members.contains_key(leader))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        tracing::debug!(
            group = %self.id,
            generation = self.generation_id,
            members = self.members.len(),
            "join phase complete"
        );
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            let outcome = self.current_outcome(&member_id, false);
            let member = self.members.get_mut(&member_id).expect("member present");
            member.last_seen = now;
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.try_send(outcome);
            }
        }
    }

    /// The protocol every member supports that most members prefer (ties: the earliest in the
    /// first member's preference order).
    fn select_protocol(&self) -> String {
        let first = self.members.values().next().expect("a member");
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|m| supports(m, name)))
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(&name.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        // Joins are refused unless the members keep a protocol in common, so `candidates` is
        // not empty; should it be, the first member's preference keeps the group usable.
        let Some(mut best) = candidates.first().copied() else {
            return first
                .protocols
                .first()
                .map(|(name, _)| name.clone())
                .unwrap_or_default();
        };
        for candidate in &candidates {
            if votes.get(candidate) > votes.get(best) {
                best = candidate;
            }
        }
        best.to_owned()
    }

    /// The join answer for `member_id` in the current generation; the leader gets every
    /// member's metadata.
    fn current_outcome(&self, member_id: &str, skip_assignment: bool) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| {
                    let metadata = m.metadata(&protocol);
                    (m.member_id.clone(), m.group_instance_id.clone(), metadata)
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            skip_assignment,
            member_id: member_id.to_owned(),
            members,
        }
    }

    /// Handles a SyncGroup: `Some` is the answer now, `None` means the waiter was parked until
    /// the leader sends the assignment.
    pub fn sync(
        &mut self,
        request: SyncRequest,
        waiter: LocalSender<SyncOutcome>,
        now: Instant,
    ) -> Option<SyncOutcome> {
        let member_id = request.member_id.as_str();
        let instance_id = request.group_instance_id.as_deref();
        if let Err(error) = self.check_sync_member(member_id, request.generation_id, instance_id) {
            return Some(self.sync_outcome(Err(error)));
        }
        let type_differs = request
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref());
        let name_differs = request
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != self.protocol_name.as_ref());
        if type_differs || name_differs {
            return Some(self.sync_outcome(Err(GroupError::InconsistentGroupProtocol)));
        }
        match self.state {
            GroupState::PreparingRebalance => {
                Some(self.sync_outcome(Err(GroupError::RebalanceInProgress)))
            }
            GroupState::Stable => {
                let member = self.members.get_mut(member_id).expect("checked member");
                member.last_seen = now;
                let assignment = member.assignment.clone();
                Some(self.sync_outcome(Ok(assignment)))
            }
            GroupState::CompletingRebalance => {
                let member = self.members.get_mut(member_id).expect("checked member");
                member.last_seen = now;
                member.sync_waiter = Some(waiter);
                if self.leader.as_deref() == Some(member_id) {
                    self.assign(request.assignments);
                }
                None
            }
            GroupState::Empty | GroupState::Dead => {
                Some(self.sync_outcome(Err(GroupError::UnknownMemberId)))
            }
        }
    }

    /// Stores the leader's assignments (members it left out get none) and answers every parked
    /// SyncGroup.
    fn assign(&mut self, assignments: Vec<(String, Bytes)>) {
        let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
        for member in self.members.values_mut() {
            member.assignment = assignments.remove(&member.member_id).unwrap_or_default();
        }
        self.state = GroupState::Stable;
        tracing::debug!(group = %self.id, generation = self.generation_id, "stable");
        let (protocol_type, protocol_name) =
            (self.protocol_type.clone(), self.protocol_name.clone());
        for member in self.members.values_mut() {
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.try_send(SyncOutcome {
                    assignment: Ok(member.assignment.clone()),
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                });
            }
        }
    }

    /// Checks that a request comes from a current member of the current generation.
    fn check_member(
        &self,
        member_id: &str,
        generation_id: i32,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        self.check_identity(member_id, group_instance_id)?;
        if generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// SyncGroup's check (Kafka's `classicGroupSync`): only an instance id that another member
    /// holds is refused (fenced); an instance id nobody holds is not checked.
    fn check_sync_member(
        &self,
        member_id: &str,
        generation_id: i32,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let fenced = group_instance_id.is_some_and(|instance_id| {
            self.members.values().any(|m| {
                m.group_instance_id.as_deref() == Some(instance_id) && m.member_id != member_id
            })
        });
        if fenced {
            return Err(GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// Checks that `member_id` is a member and, for a static member, that it still holds its
    /// instance id (Kafka's `validateMember`): an instance id another member took over is fenced.
    fn check_identity(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if let Some(instance_id) = group_instance_id {
            let holder = self
                .members
                .values()
                .find(|m| m.group_instance_id.as_deref() == Some(instance_id))
                .ok_or(GroupError::UnknownMemberId)?;
            if holder.member_id != member_id {
                return Err(GroupError::FencedInstanceId);
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        Ok(())
    }

    /// Handles a Heartbeat; it keeps the member's session alive.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        generation_id: i32,
        group_instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Empty {
            return Err(GroupError::UnknownMemberId);
        }
        self.check_member(member_id, generation_id, group_instance_id)?;
        self.members
            .get_mut(member_id)
            .expect("checked member")
            .last_seen = now;
        match self.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Removes a member (LeaveGroup), found by member id or, for static members, by instance id.
    /// Returns the removed member's id.
    pub fn leave(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        now: Instant,
        limits: &GroupLimits,
    ) -> Result<String, GroupError> {
        let found = match group_instance_id {
            Some(instance_id) => {
                let member = self
                    .members
                    .values()
                    .find(|m| m.group_instance_id.as_deref() == Some(instance_id))
                    .ok_or(GroupError::UnknownMemberId)?;
                if !member_id.is_empty() && member.member_id != member_id {
                    return Err(GroupError::FencedInstanceId);
                }
                member.member_id.clone()
            }
            None if self.pending_members.remove(member_id).is_some() => {
                self.maybe_complete_join(now);
                return Ok(member_id.to_owned());
            }
            None if self.members.contains_key(member_id) => member_id.to_owned(),
            None => return Err(GroupError::UnknownMemberId),
        };
        self.remove_members(std::slice::from_ref(&found), now, limits);
        Ok(found)
    }

    /// Removes members (left or expired) and rebalances the rest.
    fn remove_members(&mut self, member_ids: &[String], now: Instant, limits: &GroupLimits) {
        for member_id in member_ids {
            let Some(mut member) = self.members.remove(member_id) else {
                continue;
            };
            if let Some(waiter) = member.join_waiter.take() {
                let refused = JoinOutcome::refused(GroupError::UnknownMemberId, member_id.clone());
                let _ = waiter.try_send(refused);
            }
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.try_send(self.sync_outcome(Err(GroupError::UnknownMemberId)));
            }
            tracing::debug!(group = %self.id, member = %member_id, "member removed");
        }
        if self
            .leader
            .as_ref()
            .is_some_and(|l| !self.members.contains_key(l))
        {
            self.leader = None;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, limits);
                self.maybe_complete_join(now);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Advances time: expires sessions and pending member ids, ends the initial delay, and
    /// completes a rebalance whose timeout has passed.
    pub fn tick(&mut self, now: Instant, limits: &GroupLimits) {
        self.pending_members.retain(|_, expiry| *expiry > now);
        // A member parked in JoinGroup or SyncGroup is waiting on the coordinator, not silent.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .filter(|m| now >= m.last_seen + m.session_timeout)
            .map(|m| m.member_id.clone())
            .collect();
        if !expired.is_empty() {
            tracing::info!(group = %self.id, members = ?expired, "session timeout");
            self.remove_members(&expired, now, limits);
        }
        if let Some((end, latest)) = self.initial_delay
            && now >= end
        {
            if self.joined_during_delay && now < latest {
                self.initial_delay =
                    Some(((now + limits.initial_rebalance_delay).min(latest), latest));
                self.joined_during_delay = false;
            } else {
                self.initial_delay = None;
            }
        }
        self.maybe_complete_join(now);
    }

    /// The earliest instant after `now` at which `tick` has something to do: a session or a
    /// pending member id expiring, the initial delay ending, the rebalance timing out. The coordinator wakes
    /// then, so a member is removed when its session timeout has passed, not up to a tick later
    /// (a client that waits exactly the session timeout, as librdkafka's tests do after closing
    /// a static member, then finds the group Empty, as with Kafka's timers).
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .map(|m| m.last_seen + m.session_timeout);
        let initial_delay_end = self.initial_delay.map(|(end, _)| end);
        sessions
            .chain(self.pending_members.values().copied())
            .chain(initial_delay_end)
            .chain(self.rebalance_deadline)
            .filter(|deadline| *deadline > now)
            .min()
    }

    /// Checks an OffsetCommit against the group (Kafka's `validateOffsetCommit`). A commit with
    /// generation -1, no member id and no instance id comes from an admin client or a consumer
    /// outside group management: it is accepted only while the group is Empty, so it cannot
    /// overwrite the offsets of partitions that members own. Any other commit must come from a
    /// member of the current generation.
    pub fn check_commit(
        &self,
        member_id: &str,
        generation_id: i32,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        let outside_group = generation_id < 0 && member_id.is_empty();
        if outside_group && group_instance_id.is_none() {
            return Err(GroupError::UnknownMemberId);
        }
        self.check_member(member_id, generation_id, group_instance_id)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// A commit from a member counts as a sign of life while the group is Stable or
    /// PreparingRebalance, as in Kafka (`rescheduleClassicGroupMemberHeartbeat`).
    pub fn touch(&mut self, member_id: &str, now: Instant) {
        let alive_by_commit = matches!(
            self.state,
            GroupState::Stable | GroupState::PreparingRebalance
        );
        if !alive_by_commit {
            return;
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_seen = now;
        }
    }

    /// The topics the members subscribe to (consumer protocol), or `None` when unknown (then
    /// every topic counts as subscribed).
    pub fn subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = HashSet::new();
        for member in self.members.values() {
            topics.extend(subscription_topics(&member.metadata(protocol))?);
        }
        Some(topics)
    }
}

fn supports(member: &Member, protocol: &str) -> bool {
    member.protocols.iter().any(|(name, _)| name == protocol)
}

/// The topics of a consumer protocol Subscription: `i16 version`, then `i32 count` strings of
/// `i16 length` bytes (the same in every version).
fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let count = i32::from_be_bytes(metadata.get(2..6)?.try_into().ok()?);
    let mut position = 6;
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        let len = i16::from_be_bytes(metadata.get(position..position + 2)?.try_into().ok()?);
        let start = position + 2;
        let end = start + usize::try_from(len).ok()?;
        topics.push(String::from_utf8(metadata.get(start..end)?.to_vec()).ok()?);
        position = end;
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::channels::local_channel::{self, LocalReceiver};

    const LIMITS: GroupLimits = GroupLimits {
        initial_rebalance_delay: Duration::from_millis(100),
        session_timeout_ms_min: 6000,
        session_timeout_ms_max: 300_000,
    };

    fn join_request(member_id: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 6000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta-{member_id}"))))
                .collect(),
            require_known_member_id: true,
        }
    }

    type Parked = LocalReceiver<JoinOutcome>;

    /// Joins a new member the v4 way: MEMBER_ID_REQUIRED, then the join with that id.
    /// A group that members "a" and "b" joined at `start`, through the initial delay (extended
    /// once, for the member that joined during it); their parked joins.
    fn two_joined(start: Instant) -> (Group, Parked, Parked) {
        let mut group = Group::new("g".into());
        let a = join_new(&mut group, "a", &["range"], start);
        let b = join_new(&mut group, "b", &["range"], start);
        group.tick(start + Duration::from_millis(150), &LIMITS);
        group.tick(start + Duration::from_millis(300), &LIMITS);
        (group, a, b)
    }

    fn join_new(group: &mut Group, id: &str, protocols: &[&str], now: Instant) -> Parked {
        let (sender, _) = local_channel::new_bounded(1);
        let first = group
            .join(join_request("", protocols), &LIMITS, id.into(), sender, now)
            .unwrap();
        assert_eq!(first.error, Some(GroupError::MemberIdRequired));
        assert_eq!(first.member_id, id);
        let (sender, receiver) = local_channel::new_bounded(1);
        let parked = group.join(
            join_request(id, protocols),
            &LIMITS,
            String::new(),
            sender,
            now,
        );
        assert!(parked.is_none());
        receiver
    }

    fn take(receiver: &Parked) -> Option<JoinOutcome> {
        futures_lite::future::block_on(futures_lite::future::poll_once(receiver.recv())).flatten()
    }

    fn sync(
        group: &mut Group,
        id: &str,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Option<SyncOutcome> {
        let (sender, _) = local_channel::new_bounded(1);
        let request = SyncRequest {
            member_id: id.into(),
            generation_id: group.generation_id,
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments,
        };
        group.sync(request, sender, now)
    }

    #[test]
    fn members_join_after_the_initial_delay_and_get_a_stable_generation() {
        // Proves the first rebalance waits the initial delay, then answers every member, picks
        // the protocol all support by preference, gives the leader every member's metadata, and
        // becomes Stable once the leader's assignment arrives.
        let start = Instant::now();
        let mut group = Group::new("g".into());
        let a = join_new(&mut group, "a", &["range", "roundrobin"], start);
        let b = join_new(&mut group, "b", &["roundrobin", "range"], start);
        let c = join_new(&mut group, "c", &["roundrobin"], start);
        assert_eq!(group.state, GroupState::PreparingRebalance);
        group.tick(start + Duration::from_millis(50), &LIMITS);
        assert!(take(&a).is_none());
        // Members joined during the delay: it is extended once, then the join completes.
        group.tick(start + Duration::from_millis(150), &LIMITS);
        group.tick(start + Duration::from_millis(300), &LIMITS);
        let (a, b, c) = (take(&a).unwrap(), take(&b).unwrap(), take(&c).unwrap());
        assert_eq!(group.state, GroupState::CompletingRebalance);
        assert_eq!(a.generation_id, 1);
        assert_eq!(a.protocol_name.as_deref(), Some("roundrobin"));
        assert_eq!(a.leader, "a");
        assert_eq!(a.members.len(), 3);
        assert!(b.members.is_empty() && c.members.is_empty());
        let later = start + Duration::from_millis(400);
        assert!(sync(&mut group, "b", vec![], later).is_none());
        let assignments = vec![
            ("a".into(), Bytes::from("pa")),
            ("b".into(), Bytes::from("pb")),
        ];
        assert!(sync(&mut group, "a", assignments, later).is_none());
        assert_eq!(group.state, GroupState::Stable);
        let c_sync = sync(&mut group, "c", vec![], later).unwrap();
        assert_eq!(c_sync.assignment, Ok(Bytes::new()));
        assert_eq!(group.members["b"].assignment, Bytes::from("pb"));
    }

    #[test]
    fn a_restored_membership_keeps_members_at_their_generation() {
        // Proves a Stable group's membership, restored into a new coordinator's group (after
        // a failover), takes the members' heartbeats and syncs at their generation with their
        // assignments, and that a member gone meanwhile expires after its session timeout.
        let start = Instant::now();
        let (mut group, a, b) = two_joined(start);
        let (_, _) = (take(&a).unwrap(), take(&b).unwrap());
        let later = start + Duration::from_millis(400);
        assert!(group.membership().is_none(), "not Stable yet");
        let assignments = vec![
            ("a".into(), Bytes::from("pa")),
            ("b".into(), Bytes::from("pb")),
        ];
        assert!(sync(&mut group, "a", assignments, later).is_none());
        let membership = group.membership().expect("Stable");

        let restored_at = later + Duration::from_secs(1);
        let mut taken_over = Group::new("g".into());
        taken_over.restore(membership.clone(), restored_at);
        assert_eq!(taken_over.state, GroupState::Stable);
        assert_eq!(taken_over.membership(), Some(membership));
        assert_eq!(taken_over.heartbeat("a", 1, None, restored_at), Ok(()));
        let b_sync = sync(&mut taken_over, "b", vec![], restored_at).unwrap();
        assert_eq!(b_sync.assignment, Ok(Bytes::from("pb")));
        assert_eq!(
            taken_over.heartbeat("a", 2, None, restored_at),
            Err(GroupError::IllegalGeneration)
        );
        // "b" stays silent past its session timeout: it expires, "a" must rebalance.
        let session = Duration::from_millis(join_request("b", &[]).session_timeout_ms as u64);
        taken_over
            .heartbeat("a", 1, None, restored_at + session)
            .unwrap();
        taken_over.tick(restored_at + session + Duration::from_millis(1), &LIMITS);
        assert!(!taken_over.members.contains_key("b"));
        assert_eq!(taken_over.state, GroupState::PreparingRebalance);
    }

    #[test]
    fn errors_for_wrong_members_generations_and_timeouts() {
        // Proves the error codes clients rely on: unknown member, illegal generation, invalid
        // session timeout, rebalance in progress, and commit validation (Kafka's
        // validateOffsetCommit) for simple consumers, admin clients and members.
        let start = Instant::now();
        let mut group = Group::new("g".into());
        assert_eq!(group.check_commit("", -1, None), Ok(()));
        let mut bad = join_request("", &["range"]);
        bad.session_timeout_ms = 10;
        let (sender, _) = local_channel::new_bounded(1);
        let refused = group.join(bad, &LIMITS, "x".into(), sender, start).unwrap();
        assert_eq!(refused.error, Some(GroupError::InvalidSessionTimeout(10)));
        let a = join_new(&mut group, "a", &["range"], start);
        group.tick(start + Duration::from_millis(200), &LIMITS);
        assert_eq!(take(&a).unwrap().generation_id, 1);
        assert!(sync(&mut group, "a", vec![("a".into(), Bytes::from("x"))], start).is_none());
        assert_eq!(group.heartbeat("a", 1, None, start), Ok(()));
        assert_eq!(
            group.heartbeat("a", 0, None, start),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(
            group.heartbeat("zz", 1, None, start),
            Err(GroupError::UnknownMemberId)
        );
        // An admin client's commit (no member, generation -1) is refused while members own
        // the partitions; a member's commit must carry the current generation.
        assert_eq!(
            group.check_commit("", -1, None),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(group.check_commit("a", 1, None), Ok(()));
        assert_eq!(
            group.check_commit("a", 7, None),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(
            group.check_commit("a", -1, None),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(
            group.check_commit("a", 1, Some("not-held")),
            Err(GroupError::UnknownMemberId)
        );
        let b = join_new(&mut group, "b", &["range"], start);
        assert_eq!(
            group.heartbeat("a", 1, None, start),
            Err(GroupError::RebalanceInProgress)
        );
        assert!(take(&b).is_none());
    }

    #[test]
    fn a_silent_member_is_expired_and_the_rest_rebalance() {
        // Proves a member that stops heartbeating is removed after its session timeout and the
        // others get a new generation when they rejoin; a leaving member triggers the same.
        let start = Instant::now();
        let (mut group, a, b) = two_joined(start);
        assert!(take(&a).is_some() && take(&b).is_some());
        let t1 = start + Duration::from_secs(4);
        assert!(sync(&mut group, "a", vec![], t1).is_none());
        assert_eq!(group.heartbeat("a", 1, None, t1), Ok(()));
        // b never synced or heartbeat: expired after 6 s.
        group.tick(start + Duration::from_secs(7), &LIMITS);
        assert!(!group.members.contains_key("b"));
        assert_eq!(group.state, GroupState::PreparingRebalance);
        let t2 = start + Duration::from_secs(8);
        let (sender, receiver) = local_channel::new_bounded(1);
        assert!(
            group
                .join(
                    join_request("a", &["range"]),
                    &LIMITS,
                    String::new(),
                    sender,
                    t2
                )
                .is_none()
        );
        assert_eq!(take(&receiver).unwrap().generation_id, 2);
        assert_eq!(group.leave("a", None, t2, &LIMITS), Ok("a".into()));
        assert_eq!(group.state, GroupState::Empty);
        assert_eq!(group.protocol_type.as_deref(), Some("consumer"));
        assert_eq!(group.generation_id, 3);
        assert_eq!(
            group.leave("a", None, t2, &LIMITS),
            Err(GroupError::UnknownMemberId)
        );
    }

    #[test]
    fn a_restarted_static_member_takes_over_without_a_rebalance() {
        // Proves a static member (group.instance.id) rejoining with a new member id in a Stable
        // group gets the current generation at once, and its old member id is fenced.
        let start = Instant::now();
        let mut group = Group::new("g".into());
        let static_join = |member_id: &str| JoinRequest {
            group_instance_id: Some("instance-1".into()),
            ..join_request(member_id, &["range"])
        };
        let (sender, receiver) = local_channel::new_bounded(1);
        assert!(
            group
                .join(static_join(""), &LIMITS, "old".into(), sender, start)
                .is_none()
        );
        group.tick(start + Duration::from_millis(200), &LIMITS);
        assert_eq!(take(&receiver).unwrap().member_id, "old");
        assert!(
            sync(
                &mut group,
                "old",
                vec![("old".into(), Bytes::from("p"))],
                start
            )
            .is_none()
        );
        assert_eq!(group.state, GroupState::Stable);
        let (sender, _) = local_channel::new_bounded(1);
        let rejoined = group
            .join(static_join(""), &LIMITS, "new".into(), sender, start)
            .unwrap();
        assert_eq!(
            (rejoined.member_id.as_str(), rejoined.generation_id),
            ("new", 1)
        );
        assert_eq!(group.state, GroupState::Stable);
        assert_eq!(group.members["new"].assignment, Bytes::from("p"));
        let fenced = group.heartbeat("old", 1, Some("instance-1"), start);
        assert_eq!(fenced, Err(GroupError::FencedInstanceId));
        let (sender, _) = local_channel::new_bounded(1);
        let old_join = group.join(static_join("old"), &LIMITS, String::new(), sender, start);
        assert_eq!(old_join.unwrap().error, Some(GroupError::FencedInstanceId));
        assert_eq!(group.heartbeat("new", 1, Some("instance-1"), start), Ok(()));
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
        // Proves a rebalance waits for every member until the largest rebalance timeout, then
        // completes without the members that did not rejoin (here a member that joined with
        // JoinGroup v0, which has no rebalance timeout of its own).
        let start = Instant::now();
        let mut group = Group::new("g".into());
        let a = join_new(&mut group, "a", &["range"], start);
        let mut v0 = join_request("", &["range"]);
        v0.rebalance_timeout_ms = -1;
        v0.require_known_member_id = false;
        let (sender, b) = local_channel::new_bounded(1);
        assert!(group.join(v0, &LIMITS, "b".into(), sender, start).is_none());
        group.tick(start + Duration::from_millis(150), &LIMITS);
        group.tick(start + Duration::from_millis(300), &LIMITS);
        assert_eq!(take(&a).unwrap().generation_id, 1);
        assert_eq!(take(&b).unwrap().generation_id, 1);
        let t1 = start + Duration::from_secs(1);
        assert!(sync(&mut group, "a", vec![], t1).is_none());
        // c joins; a rejoins, b stays silent (its heartbeats keep its session alive meanwhile).
        let c = join_new(&mut group, "c", &["range"], t1);
        let (sender, a) = local_channel::new_bounded(1);
        let rejoin = join_request("a", &["range"]);
        assert!(
            group
                .join(rejoin, &LIMITS, String::new(), sender, t1)
                .is_none()
        );
        for ms in [2_000, 5_000, 9_900] {
            let now = t1 + Duration::from_millis(ms);
            assert_eq!(
                group.heartbeat("b", 1, None, now),
                Err(GroupError::RebalanceInProgress)
            );
            group.tick(now, &LIMITS);
        }
        assert!(take(&a).is_none(), "still waiting for b");
        group.tick(t1 + Duration::from_millis(10_100), &LIMITS);
        let (a, c) = (take(&a).unwrap(), take(&c).unwrap());
        assert_eq!((a.generation_id, c.generation_id), (2, 2));
        assert_eq!(a.members.len(), 2);
        assert!(!group.members.contains_key("b"));
    }

    #[test]
    fn subscription_topics_are_parsed() {
        // Proves the consumer protocol subscription's topic list is read for OffsetDelete.
        let mut metadata = vec![0, 1, 0, 0, 0, 2];
        for topic in ["ab", "c"] {
            metadata.extend_from_slice(&(topic.len() as i16).to_be_bytes());
            metadata.extend_from_slice(topic.as_bytes());
        }
        metadata.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            subscription_topics(&metadata),
            Some(vec!["ab".into(), "c".into()])
        );
        assert_eq!(subscription_topics(&[0, 1, 0]), None);
    }
}
