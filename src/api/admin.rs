//! CreateTopics, DeleteTopics and CreatePartitions, all decided and committed by the controller
//! (shard 0, or the controller quorum in a cluster) and answered once every shard of this broker
//! has applied the change, or with REQUEST_TIMED_OUT once the request's timeout_ms passed.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use crate::io::deadline::within;

use crate::meta::controller::{CreatePartitionsSpec, CreateTopicSpec, TopicError};
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

/// Runs a topic change to its end in a task of its own, but answers within `timeout_ms` when it
/// is positive: a change that takes longer (a controller quorum electing a leader) is still
/// made, and the client is told REQUEST_TIMED_OUT for each item, as Kafka's controller does.
/// The change is never cut short, so every shard applies it or none.
async fn within_timeout(
    timeout_ms: i32,
    count: usize,
    work: impl Future<Output = Vec<Result<(), TopicError>>> + 'static,
) -> Vec<Result<(), TopicError>> {
    let task = glommio::spawn_local(work).detach();
    let finished = if timeout_ms > 0 {
        within(Duration::from_millis(timeout_ms as u64), task).await
    } else {
        Some(task.await)
    };
    match finished {
        Some(Some(results)) => results,
        _ => (0..count)
            .map(|_| Err(TopicError::TimedOut(timeout_ms)))
            .collect(),
    }
}

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
    let count = specs.len();
    let validate_only = request.validate_only;
    let work = {
        let shard = Rc::clone(shard);
        async move { create_topics(&shard, specs, validate_only).await }
    };
    let results = within_timeout(request.timeout_ms, count, work).await;
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
    let work = {
        let shard = Rc::clone(shard);
        let names = names.clone();
        async move { delete_topics(&shard, names).await }
    };
    let results = within_timeout(request.timeout_ms, names.len(), work).await;
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

/// Answers a CreatePartitions request (within `timeout_ms`, see `within_timeout`). A topic named
/// twice is refused (INVALID_REQUEST), as Kafka does: which count was meant is unknown.
pub async fn handle_create_partitions(
    shard: &Rc<Shard>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let duplicated = |name: &str| request.topics.iter().filter(|t| t.name == name).count() > 1;
    let specs: Vec<CreatePartitionsSpec> = request
        .topics
        .iter()
        .filter(|topic| !duplicated(&topic.name))
        .map(|topic| CreatePartitionsSpec {
            topic: topic.name.clone(),
            count: topic.count,
            manual_assignment: topic.assignments.is_some(),
        })
        .collect();
    let count = specs.len();
    let validate_only = request.validate_only;
    let work = {
        let shard = Rc::clone(shard);
        async move { create_partitions(&shard, specs, validate_only).await }
    };
    let mut results = within_timeout(request.timeout_ms, count, work)
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
