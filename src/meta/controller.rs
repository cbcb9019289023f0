//! The controller's decisions: whether a topic change is allowed and what it becomes.
//!
//! Pure functions of the current [`ClusterState`]; shard 0 runs them one request at a time, then
//! makes the resulting [`MetadataChange`] durable and broadcasts it (src/shard/control.rs). Errors
//! are typed here and turned into Kafka error codes only in src/api/.

use std::hash::{BuildHasher, Hasher};

use crate::config::{InvalidTopicConfig, TopicConfig, TopicDefaults};

use super::placement::place_partitions;
use super::topic_name::validate_topic_name;
use super::{ClusterState, MetadataChange, TopicMeta};

/// Most partitions one topic may have; a typo like 1000000 would otherwise create a million
/// directories and files.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// What a client asked to create.
#[derive(Debug, Clone)]
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

/// Why a topic change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// A replication factor a single node cannot provide.
    #[error("replication factor {0} is not possible on a single-node cluster")]
    InvalidReplicationFactor(i16),
    /// Manual replica assignments are not supported.
    #[error("manual replica assignment is not supported; give a partition count")]
    ManualAssignment,
    /// A config value was refused.
    #[error(transparent)]
    InvalidConfig(#[from] InvalidTopicConfig),
    /// The change could not be made durable or applied.
    #[error("storage error: {0}")]
    Storage(String),
}

/// Decides a topic creation: validated name and settings, placement over `shard_count` shards.
pub fn plan_create_topic(
    state: &ClusterState,
    spec: &CreateTopicSpec,
    defaults: &TopicDefaults,
    default_partitions: i32,
    shard_count: usize,
) -> Result<MetadataChange, TopicError> {
    validate_topic_name(&spec.name).map_err(TopicError::InvalidName)?;
    if state.topic(&spec.name).is_some() {
        return Err(TopicError::AlreadyExists(spec.name.clone()));
    }
    if spec.manual_assignment {
        return Err(TopicError::ManualAssignment);
    }
    if !matches!(spec.replication_factor, -1 | 1) {
        return Err(TopicError::InvalidReplicationFactor(
            spec.replication_factor,
        ));
    }
    let partitions = match spec.num_partitions {
        -1 => default_partitions,
        n => n,
    };
    if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
        return Err(TopicError::InvalidPartitions(format!(
            "number of partitions must be between 1 and {TOPIC_PARTITIONS_MAX}, got {partitions}"
        )));
    }
    let mut config = TopicConfig::from_defaults(defaults);
    for (name, value) in &spec.configs {
        if let Some(value) = value {
            config.set(name, value)?;
        }
    }
    let topic_id = random_topic_id(&spec.name);
    let start = topic_id[0] as usize % shard_count;
    let owners = place_partitions(
        &state.partitions_per_shard(shard_count),
        partitions as usize,
        start,
    );
    Ok(MetadataChange::TopicCreated(TopicMeta {
        name: spec.name.clone(),
        topic_id,
        partitions: owners,
        config,
    }))
}

/// Decides a topic deletion.
pub fn plan_delete_topic(state: &ClusterState, name: &str) -> Result<MetadataChange, TopicError> {
    if state.topic(name).is_none() {
        return Err(TopicError::UnknownTopic(name.to_owned()));
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
        // Proves defaults apply for -1, bad input is refused, and placement is balanced.
        let mut state = ClusterState::default();
        let change = plan_create_topic(&state, &spec("t", -1), &defaults(), 3, 2).unwrap();
        state.apply(&change);
        assert_eq!(state.topic("t").unwrap().partitions.len(), 3);
        let change = plan_create_topic(&state, &spec("u", 3), &defaults(), 3, 2).unwrap();
        state.apply(&change);
        assert_eq!(state.partitions_per_shard(2), vec![3, 3]);
        let again = plan_create_topic(&state, &spec("t", 1), &defaults(), 3, 2);
        assert_eq!(again, Err(TopicError::AlreadyExists("t".into())));
        assert!(plan_create_topic(&state, &spec("x", 0), &defaults(), 3, 2).is_err());
        assert!(plan_create_topic(&state, &spec("bad/name", 1), &defaults(), 3, 2).is_err());
        let mut replicated = spec("r", 1);
        replicated.replication_factor = 3;
        assert!(plan_create_topic(&state, &replicated, &defaults(), 3, 2).is_err());
        let mut configured = spec("c", 1);
        configured.configs = vec![("retention.ms".into(), Some("x".into()))];
        assert!(matches!(
            plan_create_topic(&state, &configured, &defaults(), 3, 2),
            Err(TopicError::InvalidConfig(_))
        ));
        assert!(plan_delete_topic(&state, "nope").is_err());
        assert!(plan_delete_topic(&state, "t").is_ok());
    }
}
