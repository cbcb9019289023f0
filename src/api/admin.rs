//! CreateTopics, DeleteTopics and CreatePartitions, all decided and committed by the controller
//! (shard 0) and answered once every shard has applied the change.

use std::rc::Rc;

use crate::meta::controller::{CreatePartitionsSpec, CreateTopicSpec};
use crate::protocol::ErrorCode;
use crate::protocol::field::Uuid;
use crate::protocol::messages::create_partitions::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use crate::protocol::messages::create_topics::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsRequest, CreateTopicsResponse,
};
use crate::protocol::messages::delete_topics::{
    DeletableTopicResult, DeleteTopicsRequest, DeleteTopicsResponse,
};
use crate::shard::Shard;
use crate::shard::control::{create_partitions, create_topics, delete_topics};

use super::configs::topic_config_source;
use super::errors::topic_error_code;

/// Answers a CreateTopics request.
pub async fn handle_create_topics(
    shard: &Rc<Shard>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let specs: Vec<CreateTopicSpec> = request
        .topics
        .iter()
        .map(|topic| CreateTopicSpec {
            name: topic.name.clone(),
            num_partitions: topic.num_partitions,
            replication_factor: topic.replication_factor,
            manual_assignment: !topic.assignments.is_empty(),
            configs: topic
                .configs
                .iter()
                .map(|config| (config.name.clone(), config.value.clone()))
                .collect(),
        })
        .collect();
    let results = create_topics(shard, specs, request.validate_only).await;
    let cluster = shard.cluster.borrow();
    let topics = request
        .topics
        .into_iter()
        .zip(results)
        .map(|(topic, result)| match result {
            Err(error) => CreatableTopicResult {
                name: topic.name,
                error_code: topic_error_code(&error).code(),
                error_message: Some(error.to_string()),
                ..CreatableTopicResult::default()
            },
            Ok(()) => {
                let created = cluster.topic(&topic.name);
                let num_partitions = match (created, topic.num_partitions) {
                    (Some(meta), _) => meta.partitions.len() as i32,
                    (None, -1) => shard.config.default_partitions,
                    (None, n) => n,
                };
                CreatableTopicResult {
                    topic_id: created.map(|meta| Uuid(meta.topic_id)).unwrap_or_default(),
                    error_code: 0,
                    error_message: None,
                    num_partitions,
                    replication_factor: 1,
                    configs: (version >= 5).then(|| {
                        created
                            .map(|meta| {
                                meta.config
                                    .to_entries()
                                    .into_iter()
                                    .map(|(name, value)| CreatableTopicConfigs {
                                        name: name.to_owned(),
                                        value: Some(value),
                                        read_only: false,
                                        config_source: topic_config_source(
                                            &shard.config.topic_defaults,
                                            meta,
                                            name,
                                        ),
                                        is_sensitive: false,
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    }),
                    name: topic.name,
                    ..CreatableTopicResult::default()
                }
            }
        })
        .collect();
    CreateTopicsResponse {
        topics,
        ..CreateTopicsResponse::default()
    }
}

/// Answers a DeleteTopics request (by name; v6 may name a topic by id instead).
pub async fn handle_delete_topics(
    shard: &Rc<Shard>,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let names: Vec<String> = if request.topics.is_empty() {
        request.topic_names
    } else {
        let cluster = shard.cluster.borrow();
        request
            .topics
            .iter()
            .map(|topic| match &topic.name {
                Some(name) => name.clone(),
                None => cluster
                    .topics()
                    .find(|meta| meta.topic_id == topic.topic_id.0)
                    .map(|meta| meta.name.clone())
                    .unwrap_or_default(),
            })
            .collect()
    };
    let ids: Vec<Uuid> = {
        let cluster = shard.cluster.borrow();
        names
            .iter()
            .map(|name| {
                cluster
                    .topic(name)
                    .map(|meta| Uuid(meta.topic_id))
                    .unwrap_or_default()
            })
            .collect()
    };
    let results = delete_topics(shard, names.clone()).await;
    let responses = names
        .into_iter()
        .zip(ids)
        .zip(results)
        .map(|((name, topic_id), result)| DeletableTopicResult {
            name: Some(name),
            topic_id,
            error_code: result
                .as_ref()
                .err()
                .map_or(0, |error| topic_error_code(error).code()),
            error_message: result.err().map(|error| error.to_string()),
        })
        .collect();
    DeleteTopicsResponse {
        responses,
        ..DeleteTopicsResponse::default()
    }
}

/// Answers a CreatePartitions request. The change is complete when answered, so `timeout_ms`
/// never expires first. A topic named twice is refused (INVALID_REQUEST), as Kafka does: which
/// count was meant is unknown.
pub async fn handle_create_partitions(
    shard: &Rc<Shard>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let duplicated = |name: &str| request.topics.iter().filter(|t| t.name == name).count() > 1;
    let specs = request
        .topics
        .iter()
        .filter(|topic| !duplicated(&topic.name))
        .map(|topic| CreatePartitionsSpec {
            topic: topic.name.clone(),
            count: topic.count,
            manual_assignment: topic.assignments.is_some(),
        })
        .collect();
    let mut results = create_partitions(shard, specs, request.validate_only)
        .await
        .into_iter();
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let (error_code, error_message) = if duplicated(&topic.name) {
                let message = format!("topic {:?} is named more than once", topic.name);
                (ErrorCode::InvalidRequest.code(), Some(message))
            } else {
                match results.next() {
                    Some(Ok(())) => (0, None),
                    Some(Err(error)) => (topic_error_code(&error).code(), Some(error.to_string())),
                    None => (ErrorCode::UnknownServerError.code(), None),
                }
            };
            CreatePartitionsTopicResult {
                name: topic.name.clone(),
                error_code,
                error_message,
            }
        })
        .collect();
    CreatePartitionsResponse {
        throttle_time_ms: 0,
        results,
    }
}
