//! The controller's decisions: whether a topic change is allowed and what it becomes.
//!
//! Pure functions of the current [`ClusterState`]; shard 0 runs them one request at a time, then
//! makes the resulting [`MetadataChange`] durable and broadcasts it (src/shard/control.rs). Errors
//! are typed here and turned into Kafka error codes only in src/api/.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

use crate::config::{InvalidTopicConfig, TopicConfig, TopicDefaults};

use super::placement::{PlacementError, PlacementNode, place_replicas};
use super::topic_name::validate_topic_name;
use super::{ClusterState, MetadataChange, Node, TopicMeta};

/// Most partitions one topic may have; a typo like 1000000 would otherwise create a million
/// directories and files.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// Configs whose value is a comma-separated list: the only ones APPEND and SUBTRACT apply to.
const LIST_CONFIGS: &[&str] = &["cleanup.policy"];

/// What a client asked to create.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreateTopicSpec {
    /// The topic name.
    pub name: String,
    /// Partitions, or -1 for the broker default.
    pub num_partitions: i32,
    /// Replication factor: -1 or 1 on a single node.
    pub replication_factor: i16,
    /// Whether the client gave a manual replica assignment (not supported).
    pub manual_assignment: bool,
    /// Topic configs by Kafka name.
    pub configs: Vec<(String, Option<String>)>,
}

/// How IncrementalAlterConfigs changes one config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConfigOperation {
    /// Set the value on the topic.
    Set,
    /// Remove the topic's value: the broker default applies again.
    Delete,
    /// Add items to a list config.
    Append,
    /// Remove items from a list config.
    Subtract,
}

/// One change to one config of a topic.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConfigAlteration {
    /// The config's Kafka name.
    pub name: String,
    /// What to do with it.
    pub operation: ConfigOperation,
    /// The value (SET) or the list items (APPEND, SUBTRACT).
    pub value: Option<String>,
}

/// What a client asked to change in one topic's configuration.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AlterConfigsSpec {
    /// The topic name.
    pub topic: String,
    /// The changes, applied in order.
    pub alterations: Vec<ConfigAlteration>,
}

/// What a client asked of CreatePartitions for one topic.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreatePartitionsSpec {
    /// The topic name.
    pub topic: String,
    /// The new total partition count.
    pub count: i32,
    /// Whether the client placed the new partitions itself (not supported).
    pub manual_assignment: bool,
}

/// A topic change clients asked for, as it travels to the controller (over the mesh to shard 0,
/// and in a cluster on to the controller quorum's leader).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum AdminRequest {
    /// CreateTopics.
    CreateTopics {
        /// The topics.
        specs: Vec<CreateTopicSpec>,
        /// Only check them.
        validate_only: bool,
    },
    /// DeleteTopics.
    DeleteTopics(Vec<String>),
    /// IncrementalAlterConfigs / AlterConfigs.
    AlterConfigs {
        /// The changes, one per topic.
        specs: Vec<AlterConfigsSpec>,
        /// Only check them.
        validate_only: bool,
    },
    /// CreatePartitions.
    CreatePartitions {
        /// The new counts.
        specs: Vec<CreatePartitionsSpec>,
        /// Only check them.
        validate_only: bool,
    },
    /// Replicated partitions' leaders report their in-sync replicas (Kafka's AlterPartition),
    /// a shard's changed partitions in one request.
    ReportIsr(Vec<IsrReport>),
    /// A replicated partition's new leader reports itself (from the leader's shard).
    ReportLeader {
        /// The topic's name.
        name: String,
        /// The topic's id.
        topic_id: [u8; 16],
        /// The partition index.
        partition: u32,
        /// The leading replica.
        leader: Node,
        /// Its Raft term.
        term: u64,
    },
}

/// One partition's in-sync replicas as its leader sees them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IsrReport {
    /// The topic's name.
    pub name: String,
    /// The topic's id.
    pub topic_id: [u8; 16],
    /// The partition index.
    pub partition: u32,
    /// The reporting leader.
    pub leader: Node,
    /// Its Raft term.
    pub term: u64,
    /// Broker ids of the replicas in sync, the leader included, sorted.
    pub isr: Vec<u32>,
}

/// A leader's ISR report, taken only from the partition's current leader (its term and node
/// as last reported) and only naming the partition's replicas.
fn plan_isr(state: &ClusterState, report: &IsrReport) -> Result<MetadataChange, TopicError> {
    let index = report.partition as usize;
    let topic = state
        .topic(&report.name)
        .filter(|topic| topic.topic_id == report.topic_id)
        .ok_or_else(|| TopicError::UnknownTopic(report.name.clone()))?;
    let current = topic.partitions.get(index).copied();
    if current != Some(report.leader) || topic.leader_term(index) != report.term {
        return Err(TopicError::StaleLeader(format!(
            "{}-{} is not led by broker {} in term {}",
            report.name, report.partition, report.leader.broker, report.term
        )));
    }
    let replicas = topic.replicas_of(index);
    let known = |broker: &u32| replicas.iter().any(|node| node.broker == *broker);
    if !report.isr.contains(&report.leader.broker) || !report.isr.iter().all(known) {
        return Err(TopicError::StaleLeader(format!(
            "{}-{}: in-sync replicas {:?} are not among its replicas",
            report.name, report.partition, report.isr
        )));
    }
    Ok(MetadataChange::IsrChanged {
        name: report.name.clone(),
        topic_id: report.topic_id,
        partition: report.partition,
        term: report.term,
        isr: report.isr.clone(),
    })
}

impl AdminRequest {
    /// How many results the request has.
    pub fn len(&self) -> usize {
        match self {
            AdminRequest::CreateTopics { specs, .. } => specs.len(),
            AdminRequest::DeleteTopics(names) => names.len(),
            AdminRequest::AlterConfigs { specs, .. } => specs.len(),
            AdminRequest::CreatePartitions { specs, .. } => specs.len(),
            AdminRequest::ReportLeader { .. } => 1,
            AdminRequest::ReportIsr(reports) => reports.len(),
        }
    }

    /// Whether it has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the items are only to be checked, not made.
    pub fn validate_only(&self) -> bool {
        match self {
            AdminRequest::CreateTopics { validate_only, .. }
            | AdminRequest::AlterConfigs { validate_only, .. }
            | AdminRequest::CreatePartitions { validate_only, .. } => *validate_only,
            AdminRequest::DeleteTopics(_)
            | AdminRequest::ReportLeader { .. }
            | AdminRequest::ReportIsr(_) => false,
        }
    }

    /// Decides item `index` against `state` (the state after the previous items' changes).
    pub fn plan(
        &self,
        index: usize,
        state: &ClusterState,
        defaults: &TopicDefaults,
        default_partitions: i32,
    ) -> Result<MetadataChange, TopicError> {
        match self {
            AdminRequest::CreateTopics { specs, .. } => {
                plan_create_topic(state, &specs[index], defaults, default_partitions)
            }
            AdminRequest::DeleteTopics(names) => plan_delete_topic(state, &names[index]),
            AdminRequest::AlterConfigs { specs, .. } => {
                plan_alter_configs(state, &specs[index], defaults)
            }
            AdminRequest::CreatePartitions { specs, .. } => {
                plan_create_partitions(state, &specs[index])
            }
            AdminRequest::ReportIsr(reports) => plan_isr(state, &reports[index]),
            AdminRequest::ReportLeader {
                name,
                topic_id,
                partition,
                leader,
                term,
            } => {
                let topic = state
                    .topic(name)
                    .filter(|topic| topic.topic_id == *topic_id)
                    .ok_or_else(|| TopicError::UnknownTopic(name.clone()))?;
                if !topic.is_replica(*partition as usize, *leader) {
                    return Err(TopicError::StaleLeader(format!(
                        "broker {} holds no replica of {name}-{partition}",
                        leader.broker
                    )));
                }
                if topic.leader_term(*partition as usize) >= *term {
                    return Err(TopicError::StaleLeader(format!(
                        "{name}-{partition} has a leader of term {} already",
                        topic.leader_term(*partition as usize)
                    )));
                }
                Ok(MetadataChange::LeaderElected {
                    name: name.clone(),
                    topic_id: *topic_id,
                    partition: *partition,
                    leader: *leader,
                    term: *term,
                })
            }
        }
    }
}

/// Why a topic change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum TopicError {
    /// The name breaks Kafka's rules.
    #[error("{0}")]
    InvalidName(String),
    /// A topic of that name exists.
    #[error("topic {0:?} already exists")]
    AlreadyExists(String),
    /// No such topic.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// A bad partition count.
    #[error("{0}")]
    InvalidPartitions(String),
    /// A replication factor below 1 (other than -1, the default).
    #[error("replication factor must be at least 1 (or -1 for the default), got {0}")]
    InvalidReplicationFactor(i16),
    /// More replicas than live brokers.
    #[error("replication factor {factor} larger than the {brokers} live brokers")]
    NotEnoughBrokers {
        /// The replication factor asked.
        factor: i16,
        /// The live brokers.
        brokers: usize,
    },
    /// A leader report older than the leader recorded, or from a broker with no replica.
    #[error("{0}")]
    StaleLeader(String),
    /// No registered, unfenced broker can take partitions.
    #[error("no live broker can take the partitions")]
    NoLiveBrokers,
    /// The controller quorum has no leader, or it could not be reached in time.
    #[error("the controller is not available: {0}")]
    ControllerUnavailable(String),
    /// The change was not complete within the request's timeout_ms; it may still be made.
    #[error("not complete within the request's timeout of {0} ms; it may still complete")]
    TimedOut(i32),
    /// Manual replica assignments are not supported.
    #[error("manual replica assignment is not supported; give a partition count")]
    ManualAssignment,
    /// CreatePartitions named brokers for the new partitions; the broker places them itself.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// A config value was refused.
    #[error(transparent)]
    InvalidConfig(#[from] InvalidTopicConfig),
    /// The change could not be made durable or applied.
    #[error("storage error: {0}")]
    Storage(String),
    /// A topic the broker keeps for itself cannot be deleted.
    #[error(
        "{0} is an internal topic and cannot be deleted: it holds every group's committed offsets"
    )]
    InternalTopic(String),
}

/// Decides a topic creation: validated name and settings, placement over the live nodes.
pub fn plan_create_topic(
    state: &ClusterState,
    spec: &CreateTopicSpec,
    defaults: &TopicDefaults,
    default_partitions: i32,
) -> Result<MetadataChange, TopicError> {
    validate_topic_name(&spec.name).map_err(TopicError::InvalidName)?;
    if state.topic(&spec.name).is_some() {
        return Err(TopicError::AlreadyExists(spec.name.clone()));
    }
    if spec.manual_assignment {
        return Err(TopicError::ManualAssignment);
    }
    let replication_factor = match spec.replication_factor {
        -1 => 1,
        factor if factor >= 1 => factor,
        factor => return Err(TopicError::InvalidReplicationFactor(factor)),
    };
    let partitions = match spec.num_partitions {
        -1 => default_partitions,
        n => n,
    };
    if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
        return Err(TopicError::InvalidPartitions(format!(
            "number of partitions must be between 1 and {TOPIC_PARTITIONS_MAX}, got {partitions}"
        )));
    }
    let overrides: BTreeMap<String, String> = spec
        .configs
        .iter()
        .filter_map(|(name, value)| Some((name.clone(), value.clone()?)))
        .collect();
    let config = topic_config(defaults, &overrides)?;
    let topic_id = random_topic_id(&spec.name);
    let replicas = place_on_live_nodes(
        state,
        partitions as usize,
        replication_factor,
        topic_id[0] as usize,
    )?;
    Ok(MetadataChange::TopicCreated(TopicMeta {
        name: spec.name.clone(),
        topic_id,
        partitions: replicas.iter().map(|replicas| replicas[0]).collect(),
        replicas: if replication_factor > 1 {
            replicas
        } else {
            Vec::new()
        },
        leader_terms: Vec::new(),
        isr: Vec::new(),
        config,
        overrides,
    }))
}

/// A topic's configuration: the broker defaults with the topic's own values applied.
pub fn topic_config(
    defaults: &TopicDefaults,
    overrides: &BTreeMap<String, String>,
) -> Result<TopicConfig, InvalidTopicConfig> {
    let mut config = TopicConfig::from_defaults(defaults);
    for (name, value) in overrides {
        refuse_compaction(name, value)?;
        config.set(name, value)?;
    }
    Ok(config)
}

fn refuse_compaction(name: &str, value: &str) -> Result<(), InvalidTopicConfig> {
    if name == "cleanup.policy" && value.split(',').any(|policy| policy.trim() == "compact") {
        return Err(InvalidTopicConfig {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: "compaction is not supported yet".into(),
        });
    }
    Ok(())
}

/// Decides an IncrementalAlterConfigs change of one topic: the new overrides and the resulting
/// configuration. Any refused alteration refuses the whole topic's change, as Kafka does.
pub fn plan_alter_configs(
    state: &ClusterState,
    spec: &AlterConfigsSpec,
    defaults: &TopicDefaults,
) -> Result<MetadataChange, TopicError> {
    let topic = state
        .topic(&spec.topic)
        .ok_or_else(|| TopicError::UnknownTopic(spec.topic.clone()))?;
    let default_entries = TopicConfig::from_defaults(defaults).to_entries();
    let mut overrides = topic.overrides.clone();
    for alteration in &spec.alterations {
        let name = alteration.name.as_str();
        let invalid = |reason: &'static str| InvalidTopicConfig {
            name: name.to_owned(),
            value: alteration.value.clone().unwrap_or_default(),
            reason: reason.into(),
        };
        let Some(default_value) = default_entries.get(name) else {
            return Err(invalid("unknown or unsupported topic config").into());
        };
        let value = || {
            alteration
                .value
                .as_deref()
                .ok_or_else(|| invalid("a value is required"))
        };
        match alteration.operation {
            ConfigOperation::Set => {
                overrides.insert(name.to_owned(), value()?.to_owned());
            }
            ConfigOperation::Delete => {
                overrides.remove(name);
            }
            ConfigOperation::Append | ConfigOperation::Subtract => {
                if !LIST_CONFIGS.contains(&name) {
                    return Err(invalid("APPEND and SUBTRACT apply only to list configs").into());
                }
                let current = overrides.get(name).unwrap_or(default_value);
                let list = edit_list(current, value()?, alteration.operation);
                overrides.insert(name.to_owned(), list);
            }
        }
    }
    let config = topic_config(defaults, &overrides)?;
    Ok(MetadataChange::ConfigChanged {
        name: spec.topic.clone(),
        config,
        overrides,
    })
}

/// Adds (APPEND) or removes (SUBTRACT) the comma-separated `items` of a list value.
fn edit_list(current: &str, items: &str, operation: ConfigOperation) -> String {
    let split = |text: &str| -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut list = split(current);
    for item in split(items) {
        if operation == ConfigOperation::Append && !list.contains(&item) {
            list.push(item);
        } else if operation == ConfigOperation::Subtract {
            list.retain(|kept| *kept != item);
        }
    }
    list.join(",")
}

/// Decides a CreatePartitions change: the topic grows to `spec.count` partitions, the new ones
/// placed on the least-loaded nodes as at creation.
pub fn plan_create_partitions(
    state: &ClusterState,
    spec: &CreatePartitionsSpec,
) -> Result<MetadataChange, TopicError> {
    let topic = state
        .topic(&spec.topic)
        .ok_or_else(|| TopicError::UnknownTopic(spec.topic.clone()))?;
    let current = topic.partitions.len();
    if i64::from(spec.count) <= current as i64 {
        return Err(TopicError::InvalidPartitions(format!(
            "topic {:?} has {current} partitions; the new count {} must be greater",
            spec.topic, spec.count
        )));
    }
    if spec.count > TOPIC_PARTITIONS_MAX {
        return Err(TopicError::InvalidPartitions(format!(
            "number of partitions must be at most {TOPIC_PARTITIONS_MAX}, got {}",
            spec.count
        )));
    }
    if spec.manual_assignment {
        return Err(TopicError::InvalidReplicaAssignment(
            "replica assignments are not supported; the broker places new partitions".into(),
        ));
    }
    let start = topic.topic_id[0] as usize + current;
    let factor = topic.replicas.first().map_or(1, Vec::len) as i16;
    let replicas = place_on_live_nodes(state, spec.count as usize - current, factor, start)?;
    Ok(MetadataChange::PartitionsAdded {
        name: spec.topic.clone(),
        added: replicas.iter().map(|replicas| replicas[0]).collect(),
        added_replicas: if topic.is_replicated() {
            replicas
        } else {
            Vec::new()
        },
    })
}

/// Replicas for `count` new partitions among the shards of live brokers, `factor` each on
/// distinct brokers, the preferred leader first: spread evenly over the brokers, each on its
/// broker's least-loaded shard, emptier brokers first; `start` rotates which broker leads
/// first, so partition 0 of successive topics spreads.
fn place_on_live_nodes(
    state: &ClusterState,
    count: usize,
    factor: i16,
    start: usize,
) -> Result<Vec<Vec<Node>>, TopicError> {
    let loads = state.partitions_per_node();
    let nodes: Vec<PlacementNode> = state
        .brokers()
        .filter(|broker| !broker.fenced)
        .flat_map(|broker| {
            broker.nodes().map(|node| PlacementNode {
                broker: node.broker,
                shard: node.shard.0,
                rack: broker.rack.clone(),
                partitions: loads.get(&node).copied().unwrap_or(0),
            })
        })
        .collect();
    if nodes.is_empty() {
        return Err(TopicError::NoLiveBrokers);
    }
    let placed =
        place_replicas(&nodes, count, factor as usize, start).map_err(|error| match error {
            PlacementError::NotEnoughBrokers { available, .. } => TopicError::NotEnoughBrokers {
                factor,
                brokers: available,
            },
            PlacementError::ZeroReplicationFactor => TopicError::InvalidReplicationFactor(factor),
        })?;
    Ok(placed
        .into_iter()
        .map(|replicas| {
            replicas
                .into_iter()
                .map(|(broker, shard)| Node::new(broker, shard))
                .collect()
        })
        .collect())
}

/// Decides a topic deletion.
pub fn plan_delete_topic(state: &ClusterState, name: &str) -> Result<MetadataChange, TopicError> {
    if state.topic(name).is_none() {
        return Err(TopicError::UnknownTopic(name.to_owned()));
    }
    if name == crate::group::offsets_topic::OFFSETS_TOPIC {
        return Err(TopicError::InternalTopic(name.to_owned()));
    }
    Ok(MetadataChange::TopicDeleted {
        name: name.to_owned(),
    })
}

/// A random version-4 UUID for a new topic. `RandomState` is seeded from the OS per process and
/// the name and clock are mixed in, which is plenty for ids that only need to differ.
fn random_topic_id(name: &str) -> [u8; 16] {
    let mut id = [0u8; 16];
    for (i, half) in id.chunks_mut(8).enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write(name.as_bytes());
        hasher.write_usize(i);
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        half.copy_from_slice(&hasher.finish().to_be_bytes());
    }
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TopicDefaults {
        TopicDefaults::default()
    }

    fn one_broker_of_two_shards() -> ClusterState {
        let mut state = ClusterState::default();
        state.apply(&MetadataChange::BrokerRegistered(crate::meta::BrokerInfo {
            id: 0,
            rack: None,
            host: "127.0.0.1".into(),
            ports: vec![9092, 9093],
            epoch: 1,
            fenced: false,
        }));
        state
    }

    fn per_shard(state: &ClusterState) -> Vec<usize> {
        state.partitions_per_node().into_values().collect()
    }

    fn spec(name: &str, partitions: i32) -> CreateTopicSpec {
        CreateTopicSpec {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: -1,
            manual_assignment: false,
            configs: vec![],
        }
    }

    #[test]
    fn creation_is_validated_and_placed() {
        // Proves defaults apply for -1, bad input is refused, placement is balanced, and the
        // offsets topic cannot be deleted.
        let mut state = one_broker_of_two_shards();
        let change = plan_create_topic(&state, &spec("t", -1), &defaults(), 3).unwrap();
        state.apply(&change);
        assert_eq!(state.topic("t").unwrap().partitions.len(), 3);
        let change = plan_create_topic(&state, &spec("u", 3), &defaults(), 3).unwrap();
        state.apply(&change);
        assert_eq!(per_shard(&state), vec![3, 3]);
        let again = plan_create_topic(&state, &spec("t", 1), &defaults(), 3);
        assert_eq!(again, Err(TopicError::AlreadyExists("t".into())));
        assert!(plan_create_topic(&state, &spec("x", 0), &defaults(), 3).is_err());
        assert!(plan_create_topic(&state, &spec("bad/name", 1), &defaults(), 3).is_err());
        let mut replicated = spec("r", 1);
        replicated.replication_factor = 3;
        assert_eq!(
            plan_create_topic(&state, &replicated, &defaults(), 3),
            Err(TopicError::NotEnoughBrokers {
                factor: 3,
                brokers: 1
            })
        );
        let mut configured = spec("c", 1);
        configured.configs = vec![("retention.ms".into(), Some("x".into()))];
        assert!(matches!(
            plan_create_topic(&state, &configured, &defaults(), 3),
            Err(TopicError::InvalidConfig(_))
        ));
        assert!(plan_delete_topic(&state, "nope").is_err());
        assert!(plan_delete_topic(&state, "t").is_ok());
        let offsets = crate::group::offsets_topic::OFFSETS_TOPIC;
        let change = plan_create_topic(&state, &spec(offsets, 1), &defaults(), 3).unwrap();
        state.apply(&change);
        assert_eq!(
            plan_delete_topic(&state, offsets),
            Err(TopicError::InternalTopic(offsets.into())),
            "the offsets topic is never deleted"
        );
    }

    fn three_brokers() -> ClusterState {
        let mut state = ClusterState::default();
        for id in 1..=3 {
            state.apply(&MetadataChange::BrokerRegistered(crate::meta::BrokerInfo {
                id,
                rack: None,
                host: format!("127.0.1.{id}"),
                ports: vec![9092],
                epoch: 1,
                fenced: false,
            }));
        }
        state
    }

    fn report(state: &ClusterState, partition: u32, broker: u32, term: u64) -> AdminRequest {
        AdminRequest::ReportLeader {
            name: "r".into(),
            topic_id: state.topic("r").unwrap().topic_id,
            partition,
            leader: Node::new(broker, 0),
            term,
        }
    }

    #[test]
    fn replicated_topics_get_distinct_brokers_and_only_newer_leaders() {
        // Proves RF=3 places each partition on three distinct brokers with preferred leaders
        // spread, and that a leader report moves the partition's serving node only when it comes
        // from a replica with a newer term.
        let mut state = three_brokers();
        let mut replicated = spec("r", 3);
        replicated.replication_factor = 3;
        state.apply(&plan_create_topic(&state, &replicated, &defaults(), 3).unwrap());
        let topic = state.topic("r").unwrap().clone();
        assert!(topic.is_replicated());
        for (partition, replicas) in topic.replicas.iter().enumerate() {
            let brokers: std::collections::BTreeSet<u32> =
                replicas.iter().map(|node| node.broker).collect();
            assert_eq!(brokers.len(), 3, "partition {partition}: {replicas:?}");
            assert_eq!(topic.partitions[partition], replicas[0]);
        }
        let preferred: std::collections::BTreeSet<u32> =
            topic.partitions.iter().map(|node| node.broker).collect();
        assert_eq!(
            preferred.len(),
            3,
            "preferred leaders spread: {preferred:?}"
        );

        let follower = topic.replicas[0][1].broker;
        let plan =
            |state: &ClusterState, request: AdminRequest| request.plan(0, state, &defaults(), 3);
        state.apply(&plan(&state, report(&state, 0, follower, 2)).unwrap());
        assert_eq!(state.topic("r").unwrap().partitions[0].broker, follower);
        assert_eq!(state.topic("r").unwrap().leader_term(0), 2);
        // The same or an older term, or a broker without a replica, changes nothing.
        let older = plan(&state, report(&state, 0, topic.replicas[0][0].broker, 2));
        assert!(matches!(older, Err(TopicError::StaleLeader(_))));
        let stranger = plan(&state, report(&state, 0, 7, 9));
        assert!(matches!(stranger, Err(TopicError::StaleLeader(_))));
        // A change applied out of order (a stale one) is ignored by the state itself too.
        state.apply(&MetadataChange::LeaderElected {
            name: "r".into(),
            topic_id: topic.topic_id,
            partition: 0,
            leader: topic.replicas[0][0],
            term: 1,
        });
        assert_eq!(state.topic("r").unwrap().partitions[0].broker, follower);
    }

    #[test]
    fn isr_reports_are_taken_from_the_current_leader_only() {
        // Proves an ISR report changes the metadata only when it comes from the partition's
        // current leader in its current term and names its replicas (the leader among them),
        // and that a new leader's election clears its predecessor's report.
        let mut state = three_brokers();
        let mut replicated = spec("r", 1);
        replicated.replication_factor = 3;
        state.apply(&plan_create_topic(&state, &replicated, &defaults(), 1).unwrap());
        let replicas = state.topic("r").unwrap().replicas[0].clone();
        let (leader, follower) = (replicas[0], replicas[1]);
        let plan =
            |state: &ClusterState, request: AdminRequest| request.plan(0, state, &defaults(), 3);
        state.apply(&plan(&state, report(&state, 0, leader.broker, 2)).unwrap());
        let isr_report = |state: &ClusterState, from: Node, term: u64, isr: Vec<u32>| {
            AdminRequest::ReportIsr(vec![IsrReport {
                name: "r".into(),
                topic_id: state.topic("r").unwrap().topic_id,
                partition: 0,
                leader: from,
                term,
                isr,
            }])
        };
        let pair = vec![leader.broker, follower.broker];
        state.apply(&plan(&state, isr_report(&state, leader, 2, pair.clone())).unwrap());
        assert_eq!(state.topic("r").unwrap().reported_isr(0), pair.as_slice());
        for refused in [
            isr_report(&state, leader, 1, pair.clone()),
            isr_report(&state, follower, 2, pair.clone()),
            isr_report(&state, leader, 2, vec![follower.broker]),
            isr_report(&state, leader, 2, vec![leader.broker, 7]),
        ] {
            let planned = plan(&state, refused);
            assert!(
                matches!(planned, Err(TopicError::StaleLeader(_))),
                "{planned:?}"
            );
        }
        state.apply(&plan(&state, report(&state, 0, follower.broker, 3)).unwrap());
        assert!(state.topic("r").unwrap().reported_isr(0).is_empty());
    }

    fn alter(topic: &str, changes: &[(&str, ConfigOperation, Option<&str>)]) -> AlterConfigsSpec {
        AlterConfigsSpec {
            topic: topic.into(),
            alterations: changes
                .iter()
                .map(|(name, operation, value)| ConfigAlteration {
                    name: (*name).into(),
                    operation: *operation,
                    value: value.map(str::to_owned),
                })
                .collect(),
        }
    }

    fn invalid_reason(result: Result<MetadataChange, TopicError>) -> String {
        match result {
            Err(TopicError::InvalidConfig(error)) => error.reason.into_owned(),
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn configs_remember_overrides_and_alter_incrementally() {
        // Proves overrides are recorded at creation, SET/DELETE/APPEND/SUBTRACT change them, and
        // refused alterations (unknown names, non-list APPEND, compaction) change nothing.
        use ConfigOperation::{Append, Delete, Set, Subtract};
        let mut state = one_broker_of_two_shards();
        let mut configured = spec("t", 1);
        configured.configs = vec![
            ("retention.ms".into(), Some("1000".into())),
            ("segment.bytes".into(), None),
        ];
        state.apply(&plan_create_topic(&state, &configured, &defaults(), 1).unwrap());
        let topic = state.topic("t").unwrap();
        assert_eq!(topic.config.retention_ms, 1000);
        assert_eq!(topic.overrides.keys().collect::<Vec<_>>(), ["retention.ms"]);
        let change = plan_alter_configs(
            &state,
            &alter(
                "t",
                &[
                    ("retention.ms", Delete, None),
                    ("max.message.bytes", Set, Some("5000")),
                    ("cleanup.policy", Subtract, Some("delete")),
                    ("cleanup.policy", Append, Some("delete")),
                ],
            ),
            &defaults(),
        )
        .unwrap();
        state.apply(&change);
        let topic = state.topic("t").unwrap();
        assert_eq!(topic.config.retention_ms, defaults().retention_ms);
        assert_eq!(topic.config.max_message_bytes, 5000);
        assert_eq!(topic.overrides["cleanup.policy"], "delete");
        assert!(!topic.overrides.contains_key("retention.ms"));
        let unknown = plan_alter_configs(&state, &alter("nope", &[]), &defaults());
        assert_eq!(unknown, Err(TopicError::UnknownTopic("nope".into())));
        let reason = |changes: &[(&str, ConfigOperation, Option<&str>)]| {
            invalid_reason(plan_alter_configs(
                &state,
                &alter("t", changes),
                &defaults(),
            ))
        };
        assert_eq!(
            reason(&[("cleanup.policy", Append, Some("compact"))]),
            "compaction is not supported yet"
        );
        assert_eq!(
            reason(&[("cleanup.policy", Set, Some("compact"))]),
            "compaction is not supported yet"
        );
        assert_eq!(
            reason(&[("retention.ms", Append, Some("5"))]),
            "APPEND and SUBTRACT apply only to list configs"
        );
        assert_eq!(
            reason(&[("retention.ms", Set, None)]),
            "a value is required"
        );
        assert_eq!(
            reason(&[("retention.ms", Set, Some("-5"))]),
            "must be -1 or more"
        );
        assert_eq!(
            reason(&[("no.such", Delete, None)]),
            "unknown or unsupported topic config"
        );
    }

    #[test]
    fn partitions_only_grow_and_are_placed_least_loaded() {
        // Proves CreatePartitions refuses shrinking, unknown topics and manual assignments, and
        // places the added partitions on the emptier shards.
        let mut state = one_broker_of_two_shards();
        state.apply(&plan_create_topic(&state, &spec("t", 1), &defaults(), 1).unwrap());
        let grow = |count, manual_assignment| CreatePartitionsSpec {
            topic: "t".into(),
            count,
            manual_assignment,
        };
        assert!(matches!(
            plan_create_partitions(&state, &grow(1, false)),
            Err(TopicError::InvalidPartitions(_))
        ));
        assert!(matches!(
            plan_create_partitions(&state, &grow(TOPIC_PARTITIONS_MAX + 1, false)),
            Err(TopicError::InvalidPartitions(_))
        ));
        assert!(matches!(
            plan_create_partitions(&state, &grow(3, true)),
            Err(TopicError::InvalidReplicaAssignment(_))
        ));
        let mut unknown = grow(3, false);
        unknown.topic = "nope".into();
        assert!(matches!(
            plan_create_partitions(&state, &unknown),
            Err(TopicError::UnknownTopic(_))
        ));
        let change = plan_create_partitions(&state, &grow(4, false)).unwrap();
        let MetadataChange::PartitionsAdded { added, .. } = &change else {
            panic!("expected PartitionsAdded, got {change:?}");
        };
        assert_eq!(added.len(), 3);
        state.apply(&change);
        assert_eq!(state.topic("t").unwrap().partitions.len(), 4);
        assert_eq!(per_shard(&state), vec![2, 2]);
    }
}
