//! Cluster metadata: topics, where each partition lives (its shard), and topic configurations.
//!
//! Every shard keeps its own copy of [`ClusterState`], changed only by applying the
//! [`MetadataChange`]s that the controller (shard 0) has first made durable in the metadata log
//! and then broadcast. A shard never edits its copy on its own.

pub mod controller;
pub mod identity;
pub mod metadata_log;
pub mod placement;
pub mod topic_name;

use std::collections::{BTreeMap, BTreeSet};

use crate::config::TopicConfig;

/// A shard's index: shard i is Kafka node i and listens on port + i.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

impl ShardId {
    /// The Kafka node id of this shard.
    pub fn node_id(self) -> i32 {
        i32::from(self.0)
    }

    /// The shard's position in per-shard vectors.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// One topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// The topic name.
    pub name: String,
    /// Kafka topic id (a UUID), fixed at creation.
    pub topic_id: [u8; 16],
    /// The owning shard of each partition, by partition index.
    pub partitions: Vec<ShardId>,
    /// The topic's configuration: the broker defaults with `overrides` applied.
    pub config: TopicConfig,
    /// The configs set on the topic itself (CreateTopics, IncrementalAlterConfigs), by Kafka
    /// name; every other config follows the broker default.
    pub overrides: BTreeMap<String, String>,
}

/// A durable change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        /// Owners of the added partitions, in partition order.
        added: Vec<ShardId>,
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
}

/// The topics of the cluster, as of the last change applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
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
            MetadataChange::PartitionsAdded { name, added } => {
                if let Some(topic) = self.topics.get_mut(name) {
                    topic.partitions.extend(added.iter().copied());
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
        }
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

    /// Partitions owned by each of `shard_count` shards.
    pub fn partitions_per_shard(&self, shard_count: usize) -> Vec<usize> {
        let mut counts = vec![0; shard_count];
        for shard in self.topics.values().flat_map(|topic| &topic.partitions) {
            if let Some(count) = counts.get_mut(shard.index()) {
                *count += 1;
            }
        }
        counts
    }
}
