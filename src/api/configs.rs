//! DescribeConfigs, IncrementalAlterConfigs and the legacy AlterConfigs for topics, and
//! DescribeConfigs for brokers.
//!
//! A topic's values are its own overrides on the broker defaults (flags); each value is reported
//! with where it comes from, as Kafka does, so admin tools show what was set on the topic. Broker
//! configs are static here (set with `spate serve` flags): they can be described, not altered.
//! Changes go through the controller (src/shard/control.rs) and are answered once every shard has
//! applied them.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::config::{TopicConfig, TopicDefaults};
use crate::meta::TopicMeta;
use crate::meta::controller::{AlterConfigsSpec, ConfigAlteration, ConfigOperation};
use crate::protocol::ErrorCode;
use crate::protocol::messages::alter_configs::{
    AlterConfigsRequest as LegacyAlterConfigsRequest,
    AlterConfigsResource as LegacyAlterConfigsResource,
    AlterConfigsResourceResponse as LegacyAlterConfigsResourceResponse,
    AlterConfigsResponse as LegacyAlterConfigsResponse,
};
use crate::protocol::messages::describe_configs::{
    DescribeConfigsRequest, DescribeConfigsResource, DescribeConfigsResourceResult,
    DescribeConfigsResponse, DescribeConfigsResult, DescribeConfigsSynonym,
};
use crate::protocol::messages::incremental_alter_configs::{
    AlterConfigsResource, AlterConfigsResourceResponse, AlterableConfig,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use crate::shard::Shard;
use crate::shard::control::alter_configs;

use super::errors::topic_error_code;

/// Kafka's ConfigResource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// Kafka's ConfigResource type of a broker (named by its node id).
const RESOURCE_BROKER: i8 = 4;

/// ConfigSource: a value set on the topic itself.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
/// ConfigSource: a broker default given by a flag, different from Kafka's default.
const SOURCE_STATIC_BROKER: i8 = 4;
/// ConfigSource: Kafka's own default.
const SOURCE_DEFAULT: i8 = 5;

/// ConfigType values (DescribeConfigs v3+).
const TYPE_UNKNOWN: i8 = 0;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// What DescribeConfigs says about one topic config beyond its value.
struct ConfigInfo {
    name: &'static str,
    broker_name: &'static str,
    config_type: i8,
    documentation: &'static str,
}

/// The topic configs Spate knows, with the broker config that gives their default.
const CONFIG_INFOS: &[ConfigInfo] = &[
    ConfigInfo {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        config_type: TYPE_LIST,
        documentation: "delete: retention deletes old segments (compact is not supported yet).",
    },
    ConfigInfo {
        name: "compression.type",
        broker_name: "compression.type",
        config_type: TYPE_STRING,
        documentation: "The codec batches are stored with (uncompressed, gzip, snappy, lz4, zstd), \
                        or producer to keep the producer's; other codecs are re-compressed.",
    },
    ConfigInfo {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        config_type: TYPE_INT,
        documentation: "The largest record batch the topic accepts.",
    },
    ConfigInfo {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        config_type: TYPE_STRING,
        documentation: "CreateTime: the producer's timestamps; LogAppendTime: the broker's clock.",
    },
    ConfigInfo {
        name: "min.insync.replicas",
        broker_name: "min.insync.replicas",
        config_type: TYPE_INT,
        documentation: "The in-sync replicas (leader included) an acks=all produce to a \
                        replicated partition needs; fewer: NOT_ENOUGH_REPLICAS.",
    },
    ConfigInfo {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        config_type: TYPE_LONG,
        documentation: "Oldest closed segments are deleted beyond this size; -1: no limit.",
    },
    ConfigInfo {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        config_type: TYPE_LONG,
        documentation: "Closed segments older than this are deleted; -1: kept forever.",
    },
    ConfigInfo {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        config_type: TYPE_INT,
        documentation: "The active segment rolls when it reaches this size.",
    },
    ConfigInfo {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        config_type: TYPE_LONG,
        documentation: "The active segment rolls when it is this old.",
    },
];

fn config_info(name: &str) -> Option<&'static ConfigInfo> {
    CONFIG_INFOS.iter().find(|info| info.name == name)
}

/// The broker config that gives a topic config's default (the topic name if none is known).
fn broker_name(name: &'static str) -> &'static str {
    config_info(name).map_or(name, |info| info.broker_name)
}

/// Broker defaults and Kafka's own defaults, by topic config name: the two sources a value not
/// set on the topic can come from.
struct Defaults {
    broker: BTreeMap<&'static str, String>,
    kafka: BTreeMap<&'static str, String>,
}

impl Defaults {
    fn new(defaults: &TopicDefaults) -> Self {
        Self {
            broker: TopicConfig::from_defaults(defaults).to_entries(),
            kafka: TopicConfig::from_defaults(&TopicDefaults::default()).to_entries(),
        }
    }

    /// Where a default comes from: a flag that changed it, or Kafka's default.
    fn source(&self, name: &str) -> i8 {
        if self.broker.get(name) == self.kafka.get(name) {
            SOURCE_DEFAULT
        } else {
            SOURCE_STATIC_BROKER
        }
    }

    /// The default's synonyms, most specific first (a flag, then Kafka's default).
    fn synonyms(&self, name: &'static str) -> Vec<DescribeConfigsSynonym> {
        let mut synonyms = Vec::with_capacity(2);
        if self.source(name) == SOURCE_STATIC_BROKER {
            synonyms.push(DescribeConfigsSynonym {
                name: broker_name(name).to_owned(),
                value: self.broker.get(name).cloned(),
                source: SOURCE_STATIC_BROKER,
            });
        }
        synonyms.push(DescribeConfigsSynonym {
            name: broker_name(name).to_owned(),
            value: self.kafka.get(name).cloned(),
            source: SOURCE_DEFAULT,
        });
        synonyms
    }
}

/// Where a topic's value for `name` comes from (ConfigSource), as CreateTopics also reports it.
pub fn topic_config_source(defaults: &TopicDefaults, topic: &TopicMeta, name: &str) -> i8 {
    if topic.overrides.contains_key(name) {
        SOURCE_DYNAMIC_TOPIC
    } else {
        Defaults::new(defaults).source(name)
    }
}

/// What a DescribeConfigs request asked to see besides the values.
struct Detail {
    synonyms: bool,
    documentation: bool,
    version: i16,
}

impl Detail {
    fn entry(
        &self,
        name: &'static str,
        value: String,
        source: i8,
        read_only: bool,
        synonyms: Vec<DescribeConfigsSynonym>,
    ) -> DescribeConfigsResourceResult {
        let info = config_info(name);
        DescribeConfigsResourceResult {
            name: name.to_owned(),
            value: Some(value),
            read_only,
            is_default: source == SOURCE_DEFAULT,
            config_source: source,
            is_sensitive: false,
            synonyms: if self.synonyms { synonyms } else { Vec::new() },
            config_type: if self.version >= 3 {
                info.map_or(TYPE_UNKNOWN, |info| info.config_type)
            } else {
                TYPE_UNKNOWN
            },
            documentation: (self.documentation && self.version >= 3)
                .then(|| info.map(|info| info.documentation.to_owned()))
                .flatten(),
        }
    }
}

/// Answers a DescribeConfigs request.
pub fn handle_describe_configs(
    shard: &Rc<Shard>,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let detail = Detail {
        synonyms: request.include_synonyms,
        documentation: request.include_documentation,
        version,
    };
    let results = request
        .resources
        .into_iter()
        .map(|resource| describe_resource(shard, resource, &detail))
        .collect();
    DescribeConfigsResponse {
        throttle_time_ms: 0,
        results,
    }
}

fn describe_resource(
    shard: &Rc<Shard>,
    resource: DescribeConfigsResource,
    detail: &Detail,
) -> DescribeConfigsResult {
    let wanted = |name: &str| {
        resource
            .configuration_keys
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|key| key == name))
    };
    let described = match resource.resource_type {
        RESOURCE_TOPIC => describe_topic(shard, &resource.resource_name, detail, wanted),
        RESOURCE_BROKER => describe_broker(shard, &resource.resource_name, detail, wanted),
        other => Err((
            ErrorCode::InvalidRequest,
            format!("resource type {other} is not supported; describe topics (2) or brokers (4)"),
        )),
    };
    let (error_code, error_message, configs) = match described {
        Ok(configs) => (ErrorCode::NoError, None, configs),
        Err((code, message)) => (code, Some(message), Vec::new()),
    };
    DescribeConfigsResult {
        error_code: error_code.code(),
        error_message,
        resource_type: resource.resource_type,
        resource_name: resource.resource_name,
        configs,
    }
}

type Described = Result<Vec<DescribeConfigsResourceResult>, (ErrorCode, String)>;

fn describe_topic(
    shard: &Rc<Shard>,
    name: &str,
    detail: &Detail,
    wanted: impl Fn(&str) -> bool,
) -> Described {
    let cluster = shard.cluster.borrow();
    let topic = cluster.topic(name).ok_or_else(|| {
        (
            ErrorCode::UnknownTopicOrPartition,
            format!("topic {name:?} does not exist"),
        )
    })?;
    let defaults = Defaults::new(&shard.config.topic_defaults);
    Ok(topic
        .config
        .to_entries()
        .into_iter()
        .filter(|(config, _)| wanted(config))
        .map(|(config, value)| {
            let mut synonyms = Vec::with_capacity(3);
            let source = if topic.overrides.contains_key(config) {
                synonyms.push(DescribeConfigsSynonym {
                    name: config.to_owned(),
                    value: Some(value.clone()),
                    source: SOURCE_DYNAMIC_TOPIC,
                });
                SOURCE_DYNAMIC_TOPIC
            } else {
                defaults.source(config)
            };
            synonyms.extend(defaults.synonyms(config));
            detail.entry(config, value, source, false, synonyms)
        })
        .collect())
}

fn describe_broker(
    shard: &Rc<Shard>,
    name: &str,
    detail: &Detail,
    wanted: impl Fn(&str) -> bool,
) -> Described {
    // An empty name is the cluster-wide default; otherwise a node id of this broker.
    let known = name.is_empty()
        || name
            .parse::<i32>()
            .ok()
            .and_then(crate::meta::Node::from_node_id)
            .is_some_and(|node| {
                node.broker == shard.broker_id && node.shard.index() < shard.shard_count
            });
    if !known {
        return Err((
            ErrorCode::InvalidRequest,
            format!(
                "no broker {name:?} here; this broker's nodes are {} to {}",
                shard.node().node_id() - i32::from(shard.id.0),
                shard.node().node_id() - i32::from(shard.id.0) + shard.shard_count as i32 - 1
            ),
        ));
    }
    let defaults = Defaults::new(&shard.config.topic_defaults);
    Ok(defaults
        .broker
        .iter()
        .map(|(config, value)| (*config, broker_name(config), value))
        .filter(|(_, broker, _)| wanted(broker))
        .map(|(config, broker, value)| {
            let mut entry = detail.entry(
                config,
                value.clone(),
                defaults.source(config),
                true,
                defaults.synonyms(config),
            );
            entry.name = broker.to_owned();
            entry
        })
        .collect())
}

/// Kafka's AlterConfigOp code for an operation.
fn config_operation(code: i8) -> Option<ConfigOperation> {
    match code {
        0 => Some(ConfigOperation::Set),
        1 => Some(ConfigOperation::Delete),
        2 => Some(ConfigOperation::Append),
        3 => Some(ConfigOperation::Subtract),
        _ => None,
    }
}

/// A resource refused before reaching the controller, or the spec to send it.
fn alter_spec(resource: &AlterConfigsResource) -> Result<AlterConfigsSpec, (ErrorCode, String)> {
    match resource.resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err((
                ErrorCode::PolicyViolation,
                "broker configs are static: they are set with spate serve flags".to_owned(),
            ));
        }
        other => {
            return Err((
                ErrorCode::InvalidRequest,
                format!("resource type {other} is not supported; alter topics (2)"),
            ));
        }
    }
    if let Some(duplicate) = resource
        .configs
        .iter()
        .enumerate()
        .find(|(i, config)| resource.configs[..*i].iter().any(|c| c.name == config.name))
    {
        return Err((
            ErrorCode::InvalidRequest,
            format!(
                "config {} is altered twice in one request",
                duplicate.1.name
            ),
        ));
    }
    let alterations = resource
        .configs
        .iter()
        .map(|config| {
            let operation = config_operation(config.config_operation).ok_or_else(|| {
                (
                    ErrorCode::InvalidRequest,
                    format!(
                        "unknown config operation {} for {}",
                        config.config_operation, config.name
                    ),
                )
            })?;
            Ok(ConfigAlteration {
                name: config.name.clone(),
                operation,
                value: config.value.clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(AlterConfigsSpec {
        topic: resource.resource_name.clone(),
        alterations,
    })
}

/// Answers an IncrementalAlterConfigs request.
pub async fn handle_incremental_alter_configs(
    shard: &Rc<Shard>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let checked: Vec<_> = request.resources.iter().map(alter_spec).collect();
    let specs: Vec<AlterConfigsSpec> = checked
        .iter()
        .filter_map(|spec| spec.as_ref().ok().cloned())
        .collect();
    let mut results = alter_configs(shard, specs, request.validate_only)
        .await
        .into_iter();
    let responses = request
        .resources
        .into_iter()
        .zip(checked)
        .map(|(resource, checked)| {
            let outcome = match checked {
                Err(refused) => Err(refused),
                Ok(_) => match results.next() {
                    Some(Ok(())) => Ok(()),
                    Some(Err(error)) => Err((topic_error_code(&error), error.to_string())),
                    None => Err((
                        ErrorCode::UnknownServerError,
                        "no result from the controller".to_owned(),
                    )),
                },
            };
            let (error_code, error_message) = match outcome {
                Ok(()) => (ErrorCode::NoError, None),
                Err((code, message)) => (code, Some(message)),
            };
            AlterConfigsResourceResponse {
                error_code: error_code.code(),
                error_message,
                resource_type: resource.resource_type,
                resource_name: resource.resource_name,
            }
        })
        .collect();
    IncrementalAlterConfigsResponse {
        throttle_time_ms: 0,
        responses,
    }
}

/// Kafka's AlterConfigOp code SET.
const OPERATION_SET: i8 = 0;
/// Kafka's AlterConfigOp code DELETE.
const OPERATION_DELETE: i8 = 1;

/// Answers a legacy AlterConfigs request: each topic's configs are replaced as a whole, as Kafka
/// does (a config the request leaves out, or sends as null, returns to the broker default).
///
/// Each resource becomes an IncrementalAlterConfigs resource (DELETE for every config the
/// request leaves out or nulls, SET for the others) and takes that API's path, so the refusals
/// (broker configs, unknown resource types) and the controller's validation are the same. The
/// whole replacement is planned by the controller against the topic's current overrides, so a
/// concurrent change is never half kept. A config named twice keeps its last value, as in Kafka;
/// a resource named twice is refused (INVALID_REQUEST).
pub async fn handle_alter_configs(
    shard: &Rc<Shard>,
    request: LegacyAlterConfigsRequest,
) -> LegacyAlterConfigsResponse {
    let known_configs = TopicConfig::from_defaults(&shard.config.topic_defaults).to_entries();
    let duplicated = |resource: &LegacyAlterConfigsResource| {
        request
            .resources
            .iter()
            .filter(|other| {
                other.resource_type == resource.resource_type
                    && other.resource_name == resource.resource_name
            })
            .count()
            > 1
    };
    let (duplicates, unique): (Vec<_>, Vec<_>) = request
        .resources
        .iter()
        .partition(|resource| duplicated(resource));
    let incremental = IncrementalAlterConfigsRequest {
        resources: unique
            .iter()
            .map(|resource| replacement(resource, &known_configs))
            .collect(),
        validate_only: request.validate_only,
    };
    let answered = handle_incremental_alter_configs(shard, incremental).await;
    let refused = duplicates
        .into_iter()
        .map(|resource| AlterConfigsResourceResponse {
            error_code: ErrorCode::InvalidRequest.code(),
            error_message: Some("the resource is named twice in one request".to_owned()),
            resource_type: resource.resource_type,
            resource_name: resource.resource_name.clone(),
        });
    LegacyAlterConfigsResponse {
        throttle_time_ms: 0,
        responses: answered
            .responses
            .into_iter()
            .chain(refused)
            .map(|response| LegacyAlterConfigsResourceResponse {
                error_code: response.error_code,
                error_message: response.error_message,
                resource_type: response.resource_type,
                resource_name: response.resource_name,
            })
            .collect(),
    }
}

/// The incremental form of a whole replacement: DELETE for each known config not given a value,
/// then SET for each given one (the last value of a config named twice).
fn replacement(
    resource: &LegacyAlterConfigsResource,
    known_configs: &BTreeMap<&'static str, String>,
) -> AlterConfigsResource {
    let mut values: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for config in &resource.configs {
        values.insert(&config.name, config.value.as_deref());
    }
    let deletes = known_configs
        .keys()
        .filter(|name| !matches!(values.get(*name), Some(Some(_))))
        .map(|name| AlterableConfig {
            name: (*name).to_owned(),
            config_operation: OPERATION_DELETE,
            value: None,
        });
    let sets = values.iter().filter_map(|(name, value)| {
        value.map(|value| AlterableConfig {
            name: (*name).to_owned(),
            config_operation: OPERATION_SET,
            value: Some(value.to_owned()),
        })
    });
    // Nulled configs Spate does not know are still named, so the controller refuses them as
    // unknown, as Kafka refuses an unknown config whatever its value.
    let unknown_nulls = values
        .iter()
        .filter(|(name, value)| value.is_none() && !known_configs.contains_key(*name))
        .map(|(name, _)| AlterableConfig {
            name: (*name).to_owned(),
            config_operation: OPERATION_DELETE,
            value: None,
        });
    AlterConfigsResource {
        resource_type: resource.resource_type,
        resource_name: resource.resource_name.clone(),
        configs: deletes.chain(unknown_nulls).chain(sets).collect(),
    }
}
