//! Cluster metadata: the brokers, topics, where each partition lives (a shard of a broker), and
//! topic configurations.
//!
//! Every shard keeps its own copy of [`ClusterState`], changed only by applying the
//! [`MetadataChange`]s that the controller has first made durable (in the metadata log of a
//! single broker, or committed by the controller quorum of a cluster) and then broadcast. A
//! shard never edits its copy on its own.

pub mod controller;
pub mod identity;
pub mod metadata_log;
pub mod placement;
pub mod topic_name;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::TopicConfig;

/// A shard's index within its broker: shard i listens on the broker's port + i.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardId(pub u16);

impl ShardId {
    /// The shard's position in per-shard vectors.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Bits of a Kafka node id that carry the shard: node id = `broker << NODE_SHARD_BITS | shard`.
pub const NODE_SHARD_BITS: u32 = 10;

/// One shard of one broker: a Kafka node of its own, with its own port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Node {
    /// The broker (`--node-id`; 0 for a single broker).
    pub broker: u32,
    /// The shard within the broker.
    pub shard: ShardId,
}

impl Node {
    /// Shard `shard` of `broker`.
    pub fn new(broker: u32, shard: u16) -> Self {
        Self {
            broker,
            shard: ShardId(shard),
        }
    }

    /// The Kafka node id: the broker id above the shard's bits, so a single broker (id 0) has
    /// node ids 0, 1, 2, ... as before clusters existed.
    pub fn node_id(self) -> i32 {
        ((self.broker << NODE_SHARD_BITS) | u32::from(self.shard.0)) as i32
    }

    /// The node of a Kafka node id, if it is one Spate could have made.
    pub fn from_node_id(node_id: i32) -> Option<Self> {
        let id = u32::try_from(node_id).ok()?;
        let broker = id >> NODE_SHARD_BITS;
        (broker <= crate::config::NODE_ID_MAX)
            .then(|| Self::new(broker, (id & ((1 << NODE_SHARD_BITS) - 1)) as u16))
    }
}

/// A broker as the cluster knows it, from its registration with the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// The broker id.
    pub id: u32,
    /// Kafka's `broker.rack`, if given.
    pub rack: Option<String>,
    /// The host clients reach it at.
    pub host: String,
    /// Each shard's port, by shard.
    pub ports: Vec<u16>,
    /// Grows with each registration, so a heartbeat of an earlier life is told apart.
    pub epoch: u64,
    /// Set when its heartbeats stopped for `broker.session.timeout.ms`: its partitions have
    /// no leader until it registers again.
    pub fenced: bool,
}

impl BrokerInfo {
    /// The broker's nodes, one per shard.
    pub fn nodes(&self) -> impl Iterator<Item = Node> + '_ {
        (0..self.ports.len()).map(|shard| Node::new(self.id, shard as u16))
    }
}

/// One topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// The topic name.
    pub name: String,
    /// Kafka topic id (a UUID), fixed at creation.
    pub topic_id: [u8; 16],
    /// The node serving each partition, by partition index: its owner, or for a replicated
    /// partition the replica that leads it (the preferred replica until a leader is reported).
    pub partitions: Vec<Node>,
    /// Each partition's replicas, the preferred leader first, for a topic with a replication
    /// factor above 1; empty for a topic of unreplicated partitions.
    #[serde(default)]
    pub replicas: Vec<Vec<Node>>,
    /// The Raft term (leader epoch) of each replicated partition's reported leader; 0 before
    /// one is reported.
    #[serde(default)]
    pub leader_terms: Vec<u64>,
    /// Each replicated partition's in-sync replicas (broker ids) as its leader of the current
    /// term last reported them; empty before a report of this term.
    #[serde(default)]
    pub isr: Vec<Vec<u32>>,
    /// The topic's configuration: the broker defaults with `overrides` applied.
    pub config: TopicConfig,
    /// The configs set on the topic itself (CreateTopics, IncrementalAlterConfigs), by Kafka
    /// name; every other config follows the broker default.
    pub overrides: BTreeMap<String, String>,
}

impl TopicMeta {
    /// Whether the topic's partitions are replicated (a replication factor above 1).
    pub fn is_replicated(&self) -> bool {
        !self.replicas.is_empty()
    }

    /// The replicas of a partition: its replica set, or its one owner.
    pub fn replicas_of(&self, partition: usize) -> Vec<Node> {
        match self.replicas.get(partition) {
            Some(replicas) => replicas.clone(),
            None => self
                .partitions
                .get(partition)
                .copied()
                .into_iter()
                .collect(),
        }
    }

    /// Whether `node` holds a replica of `partition`.
    pub fn is_replica(&self, partition: usize, node: Node) -> bool {
        self.replicas
            .get(partition)
            .is_some_and(|replicas| replicas.contains(&node))
    }

    /// The term of a replicated partition's reported leader (0 before any).
    pub fn leader_term(&self, partition: usize) -> u64 {
        self.leader_terms.get(partition).copied().unwrap_or(0)
    }

    /// The in-sync replicas (broker ids) the current leader of `partition` reported; empty
    /// before its first report.
    pub fn reported_isr(&self, partition: usize) -> &[u32] {
        self.isr.get(partition).map_or(&[], Vec::as_slice)
    }
}

/// A durable change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataChange {
    /// A topic was created with this placement and configuration.
    TopicCreated(TopicMeta),
    /// A topic was deleted.
    TopicDeleted {
        /// The deleted topic's name.
        name: String,
    },
    /// A topic's partition count grew (CreatePartitions); the new partitions' owners follow.
    PartitionsAdded {
        /// The topic's name.
        name: String,
        /// Owners of the added partitions (preferred leaders, if replicated), in partition order.
        added: Vec<Node>,
        /// The added partitions' replicas, if the topic is replicated.
        #[serde(default)]
        added_replicas: Vec<Vec<Node>>,
    },
    /// A topic's configuration changed.
    ConfigChanged {
        /// The topic's name.
        name: String,
        /// The whole new configuration.
        config: TopicConfig,
        /// The whole new set of values set on the topic.
        overrides: BTreeMap<String, String>,
    },
    /// The cluster got its id (the controller quorum's first change).
    ClusterCreated {
        /// The cluster id clients see.
        cluster_id: String,
    },
    /// A broker registered (first start or restart): it is alive with a new epoch.
    BrokerRegistered(BrokerInfo),
    /// A broker's heartbeats stopped: its partitions have no leader until it registers again.
    BrokerFenced {
        /// The broker id.
        broker: u32,
        /// The epoch that stopped heartbeating.
        epoch: u64,
    },
    /// A replicated partition's Raft group elected a leader (the leader reports it).
    LeaderElected {
        /// The topic's name.
        name: String,
        /// The topic's id, so a report for a deleted namesake is ignored.
        topic_id: [u8; 16],
        /// The partition index.
        partition: u32,
        /// The leading replica.
        leader: Node,
        /// Its Raft term (the partition's leader epoch).
        term: u64,
    },
    /// A replicated partition's leader reported which replicas are in sync (Kafka's
    /// AlterPartition).
    IsrChanged {
        /// The topic's name.
        name: String,
        /// The topic's id.
        topic_id: [u8; 16],
        /// The partition index.
        partition: u32,
        /// The reporting leader's term: a report of an older term is ignored.
        term: u64,
        /// Broker ids of the in-sync replicas, the leader included, sorted.
        isr: Vec<u32>,
    },
}

impl std::fmt::Display for MetadataChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetadataChange::TopicCreated(topic) => write!(
                f,
                "create topic {} ({} partitions)",
                topic.name,
                topic.partitions.len()
            ),
            MetadataChange::TopicDeleted { name } => write!(f, "delete topic {name}"),
            MetadataChange::PartitionsAdded { name, added, .. } => {
                write!(f, "add {} partitions to {name}", added.len())
            }
            MetadataChange::ConfigChanged { name, .. } => write!(f, "change configs of {name}"),
            MetadataChange::ClusterCreated { cluster_id } => {
                write!(f, "create cluster {cluster_id}")
            }
            MetadataChange::BrokerRegistered(broker) => {
                write!(f, "register broker {} epoch {}", broker.id, broker.epoch)
            }
            MetadataChange::BrokerFenced { broker, epoch } => {
                write!(f, "fence broker {broker} epoch {epoch}")
            }
            MetadataChange::LeaderElected {
                name,
                partition,
                leader,
                term,
                ..
            } => write!(
                f,
                "partition {partition} of {name} led by broker {} in term {term}",
                leader.broker
            ),
            MetadataChange::IsrChanged {
                name,
                partition,
                term,
                isr,
                ..
            } => write!(
                f,
                "partition {partition} of {name} in sync on brokers {isr:?} in term {term}"
            ),
        }
    }
}

/// The brokers and topics of the cluster, as of the last change applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    cluster_id: Option<String>,
    brokers: BTreeMap<u32, BrokerInfo>,
    topics: BTreeMap<String, TopicMeta>,
    /// Names whose deletion a change recorded (some may have been created again since): the
    /// only topics whose leftover partition directories may be removed.
    deleted_names: BTreeSet<String>,
}

impl ClusterState {
    /// Applies a change. Changes come from the metadata log in order, so a change that does not
    /// fit (deleting an unknown topic) is ignored rather than trusted.
    pub fn apply(&mut self, change: &MetadataChange) {
        match change {
            MetadataChange::TopicCreated(topic) => {
                self.topics.insert(topic.name.clone(), topic.clone());
            }
            MetadataChange::TopicDeleted { name } => {
                if self.topics.remove(name).is_some() {
                    self.deleted_names.insert(name.clone());
                }
            }
            MetadataChange::PartitionsAdded {
                name,
                added,
                added_replicas,
            } => {
                if let Some(topic) = self.topics.get_mut(name) {
                    topic.partitions.extend(added.iter().copied());
                    topic.replicas.extend(added_replicas.iter().cloned());
                }
            }
            MetadataChange::ConfigChanged {
                name,
                config,
                overrides,
            } => {
                if let Some(topic) = self.topics.get_mut(name) {
                    topic.config = config.clone();
                    topic.overrides = overrides.clone();
                }
            }
            MetadataChange::ClusterCreated { cluster_id } => {
                self.cluster_id.get_or_insert_with(|| cluster_id.clone());
            }
            MetadataChange::BrokerRegistered(broker) => {
                self.brokers.insert(broker.id, broker.clone());
            }
            MetadataChange::BrokerFenced { broker, epoch } => {
                if let Some(info) = self.brokers.get_mut(broker)
                    && info.epoch == *epoch
                {
                    info.fenced = true;
                }
            }
            MetadataChange::LeaderElected {
                name,
                topic_id,
                partition,
                leader,
                term,
            } => {
                if let Some(topic) = self.topics.get_mut(name)
                    && topic.topic_id == *topic_id
                    && topic.is_replica(*partition as usize, *leader)
                    && topic.leader_term(*partition as usize) < *term
                {
                    let index = *partition as usize;
                    topic.partitions[index] = *leader;
                    if topic.leader_terms.len() < topic.partitions.len() {
                        topic.leader_terms.resize(topic.partitions.len(), 0);
                    }
                    topic.leader_terms[index] = *term;
                    // The new leader reports its own view.
                    if let Some(isr) = topic.isr.get_mut(index) {
                        isr.clear();
                    }
                }
            }
            MetadataChange::IsrChanged {
                name,
                topic_id,
                partition,
                term,
                isr,
            } => {
                if let Some(topic) = self.topics.get_mut(name)
                    && topic.topic_id == *topic_id
                    && topic.leader_term(*partition as usize) == *term
                {
                    let index = *partition as usize;
                    if topic.isr.len() < topic.partitions.len() {
                        topic.isr.resize(topic.partitions.len(), Vec::new());
                    }
                    topic.isr[index] = isr.clone();
                }
            }
        }
    }

    /// The cluster id, once the controller chose it.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// A broker by id.
    pub fn broker(&self, id: u32) -> Option<&BrokerInfo> {
        self.brokers.get(&id)
    }

    /// Every registered broker, fenced or not, by id.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values()
    }

    /// Whether `node`'s broker is registered and not fenced: only then does it lead its
    /// partitions.
    pub fn node_is_live(&self, node: Node) -> bool {
        self.brokers
            .get(&node.broker)
            .is_some_and(|broker| !broker.fenced && node.shard.index() < broker.ports.len())
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    /// Whether a change recorded the deletion of a topic called `name`: then a directory of
    /// that name that no current topic owns is a leftover of the deleted one.
    pub fn deletion_recorded(&self, name: &str) -> bool {
        self.deleted_names.contains(name)
    }

    /// The topics whose deletion a change recorded and that do not exist now.
    pub fn deleted_topics(&self) -> impl Iterator<Item = &String> {
        self.deleted_names
            .iter()
            .filter(|name| !self.topics.contains_key(*name))
    }

    /// Forgets the recorded deletions: after changes were lost (a metadata log cut at
    /// corruption), a lost change may have created any deleted name again, so no deletion
    /// proves a directory dead any more.
    pub fn forget_deletions(&mut self) {
        self.deleted_names.clear();
    }

    /// Every topic, by name.
    pub fn topics(&self) -> impl Iterator<Item = &TopicMeta> {
        self.topics.values()
    }

    /// Partitions owned by each node.
    pub fn partitions_per_node(&self) -> BTreeMap<Node, usize> {
        let mut counts = BTreeMap::new();
        for node in self.topics.values().flat_map(|topic| &topic.partitions) {
            *counts.entry(*node).or_default() += 1;
        }
        counts
    }
}
