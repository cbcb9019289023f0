//! FindCoordinator: names the node that coordinates a consumer group (a pure hash of the group
//! id over the cluster's nodes, `shard::routing::group_node`), one key per request before v4
//! and many from v4.
//!
//! Transactions are not supported, so transaction coordinator lookups are refused. librdkafka
//! also reads this API's presence as a sign of a modern broker: without it, it disables LZ4.

use std::rc::Rc;

use crate::protocol::ErrorCode;
use crate::protocol::messages::find_coordinator::{
    Coordinator, FindCoordinatorRequest, FindCoordinatorResponse,
};
use crate::shard::Shard;
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

fn coordinator(shard: &Shard, key: String, key_type: i8) -> Coordinator {
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
    let cluster = shard.cluster.borrow();
    let address = group_node(&key, &cluster).and_then(|owner| {
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
        None => Coordinator {
            key,
            node_id: -1,
            port: -1,
            error_code: ErrorCode::CoordinatorNotAvailable.code(),
            error_message: Some("the group's coordinator is not available".into()),
            ..Coordinator::default()
        },
    }
}
