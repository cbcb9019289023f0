//! FindCoordinator: names the node that coordinates a consumer group
//! (`shard::routing::group_node`), one key per request before v4 and many from v4. In a cluster
//! that keeps offsets in `__consumer_offsets`, the first lookup creates that topic, as Kafka
//! does; until its leaders are known the answer is COORDINATOR_NOT_AVAILABLE and clients retry.
//!
//! Transactions are not supported, so transaction coordinator lookups are refused. librdkafka
//! also reads this API's presence as a sign of a modern broker: without it, it disables LZ4.

use std::rc::Rc;

use crate::group::offsets_topic::OFFSETS_TOPIC;
use crate::meta::controller::{CreateTopicSpec, TopicError};
use crate::protocol::ErrorCode;
use crate::protocol::messages::find_coordinator::{
    Coordinator, FindCoordinatorRequest, FindCoordinatorResponse,
};
use crate::shard::Shard;
use crate::shard::control::create_topics;
use crate::shard::routing::group_node;

/// FindCoordinator key type of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;

/// Answers a FindCoordinator request.
pub fn handle_find_coordinator(
    shard: &Rc<Shard>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys = if version >= 4 {
        request.coordinator_keys
    } else {
        vec![request.key]
    };
    let coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| coordinator(shard, key, request.key_type))
        .collect();
    let first = coordinators.first().cloned().unwrap_or_default();
    FindCoordinatorResponse {
        error_code: first.error_code,
        error_message: first.error_message.clone(),
        node_id: first.node_id,
        host: first.host.clone(),
        port: first.port,
        coordinators,
        ..FindCoordinatorResponse::default()
    }
}

fn coordinator(shard: &Rc<Shard>, key: String, key_type: i8) -> Coordinator {
    if key_type != KEY_TYPE_GROUP {
        return Coordinator {
            key,
            node_id: -1,
            port: -1,
            error_code: ErrorCode::TransactionalIdAuthorizationFailed.code(),
            error_message: Some("transactions are not supported".into()),
            ..Coordinator::default()
        };
    }
    let replicated = shard.config.replicated_offsets();
    if replicated && shard.cluster.borrow().topic(OFFSETS_TOPIC).is_none() {
        return not_available(key, create_offsets_topic(shard));
    }
    let cluster = shard.cluster.borrow();
    let address = group_node(&key, &cluster, replicated).and_then(|owner| {
        let broker = cluster.broker(owner.broker)?;
        let port = broker.ports.get(owner.shard.index())?;
        (!broker.fenced).then(|| (owner, broker.host.clone(), *port))
    });
    match address {
        Some((owner, host, port)) => Coordinator {
            key,
            node_id: owner.node_id(),
            host,
            port: i32::from(port),
            error_code: 0,
            error_message: None,
        },
        // Not yet known, or its broker is fenced: the client retries.
        None => not_available(key, "the group's coordinator is not available".into()),
    }
}

fn not_available(key: String, message: String) -> Coordinator {
    Coordinator {
        key,
        node_id: -1,
        port: -1,
        error_code: ErrorCode::CoordinatorNotAvailable.code(),
        error_message: Some(message),
        ..Coordinator::default()
    }
}

/// Starts creating the offsets topic (once at a time per shard) and says why there is no
/// coordinator yet: the last creation's failure, such as too few brokers for its replication
/// factor.
fn create_offsets_topic(shard: &Rc<Shard>) -> String {
    let last_failure = shard.offsets_topic_failure.borrow().clone();
    if !shard.creating_offsets_topic.replace(true) {
        let shard = Rc::clone(shard);
        glommio::spawn_local(async move {
            let spec = CreateTopicSpec {
                name: OFFSETS_TOPIC.to_owned(),
                num_partitions: shard.config.offsets_topic_num_partitions as i32,
                replication_factor: shard.config.offsets_topic_replication_factor,
                manual_assignment: false,
                // Never expired: only its own checkpoints move its log start. Kafka's segment
                // size for it (offsets.topic.segment.bytes) bounds the log between checkpoints.
                configs: vec![
                    ("retention.ms".into(), Some("-1".into())),
                    ("retention.bytes".into(), Some("-1".into())),
                    (
                        "segment.bytes".into(),
                        Some((100 * 1024 * 1024).to_string()),
                    ),
                ],
            };
            let result = create_topics(&shard, vec![spec], false).await.pop();
            let failure = match result {
                Some(Ok(())) | Some(Err(TopicError::AlreadyExists(_))) => None,
                Some(Err(error)) => Some(error.to_string()),
                None => Some("no answer from the controller".to_owned()),
            };
            if let Some(failure) = &failure {
                tracing::warn!(%failure, "creating {OFFSETS_TOPIC} failed");
            }
            *shard.offsets_topic_failure.borrow_mut() = failure;
            shard.creating_offsets_topic.set(false);
        })
        .detach();
    }
    match last_failure {
        Some(failure) => format!("{OFFSETS_TOPIC} could not be created: {failure}"),
        None => format!("{OFFSETS_TOPIC} is being created"),
    }
}
