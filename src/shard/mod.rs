//! Shards: one pinned glommio executor per core, each a Kafka broker node of its own.
//!
//! A [`Shard`] owns the partitions placed on it (their logs, cache and files) and a copy of the
//! cluster metadata. It serves its own port; clients send each partition's requests straight to
//! its owner, so the data path never leaves the core. Shards share nothing mutable and talk only
//! over the mesh. Everything in a shard is `!Send` (`Rc`, `RefCell`): the compiler keeps it on
//! its core. No `RefCell` borrow is ever held across an `.await`.

pub mod connection;
pub mod control;
pub mod idle_watch;
pub mod launcher;
pub mod listener;
pub mod mesh;
pub mod offline;
pub mod offsets_replica;
pub mod producer_ids;
pub mod replica_liveness;
pub mod replicas;
pub mod request_budget;
pub mod retention;
pub mod routing;
pub mod shard_main;

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::cluster::broker_link::BrokerLink;
use crate::config::BrokerConfig;
use crate::group::GroupCoordinator;
use crate::group::classic_group::GroupLimits;
use crate::log::signal::Signal;
use crate::log::{PartitionLog, ShardCache};
use crate::meta::metadata_log::MetadataLogWriter;
use crate::meta::{ClusterState, Node, ShardId};
use crate::raft::partition_network::{PartitionGroups, PeerLinks};
use crate::raft::partition_store::PartitionRaft;
use crate::raft::recovery_throttle::RecoveryThrottle;
use crate::raft::vote_store::ShardVotes;

use self::replicas::Replica;

use self::mesh::Mesh;
use self::producer_ids::ProducerIdAllocator;
use self::request_budget::RequestBudget;

/// Where a partition lives, from this shard's point of view.
pub enum PartitionRoute {
    /// The topic does not exist.
    UnknownTopic,
    /// The topic exists but has no such partition.
    UnknownPartition,
    /// Another node owns it: the client must ask that node.
    Elsewhere(Node),
    /// This shard owns it.
    Here(Rc<PartitionLog>),
}

/// One shard's state.
pub struct Shard {
    /// This shard's index within the broker.
    pub id: ShardId,
    /// This broker's id (`--node-id`; 0 for a single broker).
    pub broker_id: u32,
    /// Shards in the broker.
    pub shard_count: usize,
    /// Broker configuration.
    pub config: Rc<BrokerConfig>,
    /// Every shard's listening port, by shard id.
    pub ports: Rc<[u16]>,
    /// This shard's copy of the cluster metadata.
    pub cluster: RefCell<ClusterState>,
    /// Logs of the partitions this shard owns, by topic, then partition index.
    partitions: RefCell<HashMap<String, Vec<Option<Rc<PartitionLog>>>>>,
    /// Cache of recent batches shared by this shard's partitions.
    pub cache: Rc<ShardCache>,
    /// Bytes of requests and responses held by this shard's connections (queued.max.request.bytes).
    pub request_budget: Rc<RequestBudget>,
    /// The mesh, connected once at start.
    mesh: OnceCell<Rc<Mesh>>,
    /// Shard 0 of a single broker: the metadata log and the lock that serialises topic changes.
    pub controller: Option<control::Controller>,
    /// Shard 0 of a cluster broker: its link to the controller quorum.
    cluster_link: OnceCell<Rc<BrokerLink>>,
    /// The controller quorum's leader (broker id), as shard 0 last heard; a single broker is
    /// its own controller.
    pub controller_leader: Cell<Option<u32>>,
    /// Producer ids handed out by this shard.
    pub producer_ids: ProducerIdAllocator,
    /// The consumer groups this shard coordinates.
    pub groups: Rc<GroupCoordinator>,
    /// Partitions known to be offline, this shard's and (reported over the mesh) others'.
    pub offline: offline::OfflinePartitions,
    /// The Raft groups of the replicated partitions this shard holds a replica of, which its
    /// listener answers peer shards from.
    pub partition_groups: Rc<PartitionGroups>,
    /// This shard's connections to peer shards, shared by all its groups.
    pub peer_links: Rc<PeerLinks>,
    /// Notified when a replica of this shard applies a new log-start decision.
    pub log_starts_decided: Rc<Signal>,
    /// The bound on this shard's catch-up reads for lagging replicas.
    pub recovery_throttle: Rc<RecoveryThrottle>,
    /// Whether this shard is creating the offsets topic (a FindCoordinator found it missing).
    pub creating_offsets_topic: Cell<bool>,
    /// Why this shard's last creation of the offsets topic failed, told to FindCoordinator.
    pub offsets_topic_failure: RefCell<Option<String>>,
    /// This shard's replicas of replicated partitions, by topic, then partition index.
    replicas: RefCell<HashMap<String, Vec<Option<Rc<Replica>>>>>,
    /// The votes of this shard's groups, opened with its first replica.
    votes: RefCell<Option<ShardVotes<openraft::type_config::alias::VoteOf<PartitionRaft>>>>,
}

impl Shard {
    /// A shard with its state but no partitions opened yet.
    pub fn new(
        id: ShardId,
        broker_id: u32,
        shard_count: usize,
        config: Rc<BrokerConfig>,
        ports: Rc<[u16]>,
        cluster: ClusterState,
        metadata_log: Option<MetadataLogWriter>,
    ) -> Self {
        let cache = Rc::new(ShardCache::new(config.cache_bytes_per_shard));
        Self {
            id,
            broker_id,
            shard_count,
            ports,
            cluster: RefCell::new(cluster),
            partitions: RefCell::new(HashMap::new()),
            cache,
            request_budget: RequestBudget::new(config.queued_max_request_bytes),
            mesh: OnceCell::new(),
            controller: metadata_log.map(control::Controller::new),
            cluster_link: OnceCell::new(),
            controller_leader: Cell::new((!config.cluster_mode()).then_some(broker_id)),
            producer_ids: ProducerIdAllocator::new(Node::new(broker_id, id.0)),
            offline: offline::OfflinePartitions::default(),
            partition_groups: PartitionGroups::new(),
            peer_links: PeerLinks::new(config.source_address()),
            log_starts_decided: Signal::new(),
            recovery_throttle: Rc::new(RecoveryThrottle::new(
                config.replica_recovery_bytes_per_second,
            )),
            creating_offsets_topic: Cell::new(false),
            offsets_topic_failure: RefCell::new(None),
            replicas: RefCell::new(HashMap::new()),
            votes: RefCell::new(None),
            groups: Rc::new(GroupCoordinator::new(
                id.0,
                GroupLimits {
                    initial_rebalance_delay: std::time::Duration::from_millis(
                        config.group_initial_rebalance_delay_ms,
                    ),
                    session_timeout_ms_min: config.group_min_session_timeout_ms,
                    session_timeout_ms_max: config.group_max_session_timeout_ms,
                },
            )),
            config,
        }
    }

    /// This shard as a Kafka node.
    pub fn node(&self) -> Node {
        Node {
            broker: self.broker_id,
            shard: self.id,
        }
    }

    /// Shard 0's link to the controller quorum, in a cluster.
    pub fn cluster_link(&self) -> Option<&Rc<BrokerLink>> {
        self.cluster_link.get()
    }

    /// Sets the link once at start-up (shard 0 of a cluster broker).
    pub fn attach_cluster_link(&self, link: Rc<BrokerLink>) {
        assert!(self.cluster_link.set(link).is_ok(), "link attached twice");
    }

    /// The mesh. Panics before `attach_mesh`, which start-up calls before serving anything.
    pub fn mesh(&self) -> &Rc<Mesh> {
        self.mesh.get().expect("mesh connected at start-up")
    }

    /// Sets the mesh once at start-up.
    pub fn attach_mesh(&self, mesh: Rc<Mesh>) {
        assert!(self.mesh.set(mesh).is_ok(), "mesh attached twice");
    }

    /// Routes a partition: here, elsewhere, or unknown.
    pub fn route(&self, topic: &str, partition: i32) -> PartitionRoute {
        let owner = {
            let cluster = self.cluster.borrow();
            let Some(meta) = cluster.topic(topic) else {
                return PartitionRoute::UnknownTopic;
            };
            match usize::try_from(partition)
                .ok()
                .and_then(|i| meta.partitions.get(i))
            {
                Some(&owner) => owner,
                None => return PartitionRoute::UnknownPartition,
            }
        };
        if let Some(replica) = self.replica(topic, partition) {
            // A replica serves only while it leads; a follower sends clients to the leader.
            return if replica.is_leader() {
                PartitionRoute::Here(replica.log())
            } else {
                PartitionRoute::Elsewhere(owner)
            };
        }
        if owner != self.node() {
            return PartitionRoute::Elsewhere(owner);
        }
        let partitions = self.partitions.borrow();
        match partitions
            .get(topic)
            .and_then(|logs| logs.get(partition as usize))
            .and_then(Option::as_ref)
        {
            Some(log) => PartitionRoute::Here(Rc::clone(log)),
            // Placed here but not open yet (being created): the client retries.
            None => PartitionRoute::Elsewhere(owner),
        }
    }

    /// This shard's replica of a replicated partition, if it holds one.
    pub fn replica(&self, topic: &str, partition: i32) -> Option<Rc<Replica>> {
        let index = usize::try_from(partition).ok()?;
        self.replicas
            .borrow()
            .get(topic)?
            .get(index)?
            .as_ref()
            .cloned()
    }

    /// Registers an opened replica.
    pub fn insert_replica(&self, topic: &str, partition: usize, replica: Rc<Replica>) {
        let mut replicas = self.replicas.borrow_mut();
        let slots = replicas.entry(topic.to_owned()).or_default();
        if slots.len() <= partition {
            slots.resize(partition + 1, None);
        }
        slots[partition] = Some(replica);
    }

    /// Removes and returns every replica of a topic.
    pub fn remove_topic_replicas(&self, topic: &str) -> Vec<Rc<Replica>> {
        self.replicas
            .borrow_mut()
            .remove(topic)
            .map(|slots| slots.into_iter().flatten().collect())
            .unwrap_or_default()
    }

    /// Every replica this shard holds.
    pub fn all_replicas(&self) -> Vec<Rc<Replica>> {
        self.replicas
            .borrow()
            .values()
            .flat_map(|slots| slots.iter().flatten().cloned())
            .collect()
    }

    /// The votes file of this shard's partition groups, in
    /// `DATA_DIR/__meta/partition-votes/shard-N/`, opened on first use.
    pub async fn partition_votes(
        &self,
    ) -> Result<ShardVotes<openraft::type_config::alias::VoteOf<PartitionRaft>>, String> {
        if let Some(votes) = self.votes.borrow().as_ref() {
            return Ok(votes.clone());
        }
        let dir = self
            .config
            .data_dir
            .join(crate::meta::metadata_log::META_DIR_NAME)
            .join("partition-votes")
            .join(format!("shard-{}", self.id.0));
        let votes = ShardVotes::open(&dir)
            .await
            .map_err(|error| format!("{}: {error}", dir.display()))?;
        // Another open may have finished while this one waited: keep the first.
        let mut slot = self.votes.borrow_mut();
        Ok(slot.get_or_insert(votes).clone())
    }

    /// Registers an opened log this shard owns.
    pub fn insert_partition(&self, topic: &str, partition: usize, log: Rc<PartitionLog>) {
        let mut partitions = self.partitions.borrow_mut();
        let logs = partitions.entry(topic.to_owned()).or_default();
        if logs.len() <= partition {
            logs.resize(partition + 1, None);
        }
        logs[partition] = Some(log);
    }

    /// Whether this shard's log of a partition is offline (corrupt at start-up).
    pub fn partition_is_offline(&self, topic: &str, partition: usize) -> bool {
        self.partitions
            .borrow()
            .get(topic)
            .and_then(|logs| logs.get(partition))
            .and_then(Option::as_ref)
            .is_some_and(|log| log.is_offline())
    }

    /// Removes and returns every log of a topic.
    pub fn remove_topic_partitions(&self, topic: &str) -> Vec<Rc<PartitionLog>> {
        self.partitions
            .borrow_mut()
            .remove(topic)
            .map(|logs| logs.into_iter().flatten().collect())
            .unwrap_or_default()
    }

    /// Every log this shard owns.
    pub fn all_partitions(&self) -> Vec<Rc<PartitionLog>> {
        self.partitions
            .borrow()
            .values()
            .flat_map(|logs| logs.iter().flatten().cloned())
            .collect()
    }

    /// The directory of a partition's log.
    pub fn partition_dir(&self, topic: &str, partition: usize) -> std::path::PathBuf {
        self.config.data_dir.join(format!("{topic}-{partition}"))
    }
}
