//! The Kafka API handlers: the one `match` on the API key, and the list of APIs Spate advertises.
//!
//! `dispatch` runs the part of a request that must happen in arrival order (a produce is
//! sequenced, a topic change is committed) and returns a [`Pending`] future for the answer, which
//! the connection awaits in request order. Each API family has its own file. Only this layer turns
//! the storage, metadata and codec errors into Kafka error codes (`errors.rs`).

pub mod admin;
pub mod configs;
pub mod coordinator;
pub mod delete_records;
pub mod errors;
pub mod fetch;
pub mod groups;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producer_id;
pub mod refused_versions;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;

use crate::protocol::api_versions::{
    FETCH_VERSION_RECORD_BATCH_MIN, PRODUCE_VERSION_RECORD_BATCH_MIN, api_versions_response,
};
use crate::protocol::{ApiKey, Request, RequestHeader, Response};
use crate::shard::Shard;

/// The answer to a dispatched request, in order; `None` means no response (acks=0).
pub type Pending = Pin<Box<dyn Future<Output = Option<Response>>>>;

/// The APIs with handlers, which ApiVersions advertises. Nothing else is advertised: clients
/// feature-detect from this list.
pub const ADVERTISED_APIS: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::InitProducerId,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::FindCoordinator,
    ApiKey::DeleteRecords,
    ApiKey::DescribeConfigs,
    ApiKey::CreatePartitions,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::AlterConfigs,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::DeleteGroups,
    ApiKey::OffsetDelete,
    ApiKey::DescribeCluster,
];

/// Whether an API has a handler.
pub fn is_advertised(api: ApiKey) -> bool {
    ADVERTISED_APIS.contains(&api)
}

/// A response that is ready now.
pub(crate) fn ready(response: Response) -> Pending {
    Box::pin(std::future::ready(Some(response)))
}

/// Handles one decoded request from the client at `client_address` (DescribeGroups shows it).
pub async fn dispatch(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    request: Request,
    client_address: Option<IpAddr>,
) -> Pending {
    let version = header.api_version;
    match request {
        Request::ApiVersions(_) => ready(Response::ApiVersions(api_versions_response(
            ADVERTISED_APIS,
        ))),
        Request::Metadata(request) => ready(Response::Metadata(
            metadata::handle_metadata(shard, request, version).await,
        )),
        Request::Produce(request) if version < PRODUCE_VERSION_RECORD_BATCH_MIN => Box::pin(
            std::future::ready(refused_versions::refuse_produce(request).map(Response::Produce)),
        ),
        Request::Produce(request) => produce::handle_produce(shard, request).await,
        Request::Fetch(request) if version < FETCH_VERSION_RECORD_BATCH_MIN => {
            ready(Response::Fetch(refused_versions::refuse_fetch(request)))
        }
        Request::Fetch(request) => fetch::handle_fetch(shard, request),
        Request::ListOffsets(request) => ready(Response::ListOffsets(
            offsets::handle_list_offsets(shard, request, version).await,
        )),
        Request::OffsetForLeaderEpoch(request) => ready(Response::OffsetForLeaderEpoch(
            offsets::handle_offset_for_leader_epoch(shard, request),
        )),
        Request::CreateTopics(request) => ready(Response::CreateTopics(
            admin::handle_create_topics(shard, request, version).await,
        )),
        Request::DeleteTopics(request) => ready(Response::DeleteTopics(
            admin::handle_delete_topics(shard, request).await,
        )),
        Request::CreatePartitions(request) => ready(Response::CreatePartitions(
            admin::handle_create_partitions(shard, request).await,
        )),
        Request::DescribeConfigs(request) => ready(Response::DescribeConfigs(
            configs::handle_describe_configs(shard, request, version),
        )),
        Request::IncrementalAlterConfigs(request) => ready(Response::IncrementalAlterConfigs(
            configs::handle_incremental_alter_configs(shard, request).await,
        )),
        Request::AlterConfigs(request) => ready(Response::AlterConfigs(
            configs::handle_alter_configs(shard, request).await,
        )),
        Request::DeleteRecords(request) => ready(Response::DeleteRecords(
            delete_records::handle_delete_records(shard, request).await,
        )),
        Request::InitProducerId(request) => ready(Response::InitProducerId(
            producer_id::handle_init_producer_id(shard, request),
        )),
        Request::FindCoordinator(request) => ready(Response::FindCoordinator(
            coordinator::handle_find_coordinator(shard, request, version),
        )),
        Request::JoinGroup(request) => groups::handle_join_group(
            shard,
            request,
            header.client_id.clone(),
            client_address,
            version,
        ),
        Request::SyncGroup(request) => groups::handle_sync_group(shard, request),
        Request::Heartbeat(request) => ready(Response::Heartbeat(groups::handle_heartbeat(
            shard, request,
        ))),
        Request::LeaveGroup(request) => ready(Response::LeaveGroup(groups::handle_leave_group(
            shard, request, version,
        ))),
        Request::OffsetCommit(request)
            if version <= refused_versions::ZOOKEEPER_OFFSETS_VERSION_MAX =>
        {
            ready(Response::OffsetCommit(
                refused_versions::refuse_offset_commit(shard, request),
            ))
        }
        Request::OffsetCommit(request) => groups::handle_offset_commit(shard, request),
        Request::OffsetFetch(request)
            if version <= refused_versions::ZOOKEEPER_OFFSETS_VERSION_MAX =>
        {
            ready(Response::OffsetFetch(
                refused_versions::refuse_offset_fetch(request),
            ))
        }
        Request::OffsetFetch(request) => ready(Response::OffsetFetch(groups::handle_offset_fetch(
            shard, request, version,
        ))),
        Request::DescribeGroups(request) => ready(Response::DescribeGroups(
            groups::handle_describe_groups(shard, request),
        )),
        Request::ListGroups(request) => ready(Response::ListGroups(groups::handle_list_groups(
            shard, request,
        ))),
        Request::DeleteGroups(request) => groups::handle_delete_groups(shard, request),
        Request::OffsetDelete(request) => groups::handle_offset_delete(shard, request),
        Request::DescribeCluster(request) => ready(Response::DescribeCluster(
            metadata::handle_describe_cluster(shard, request, version),
        )),
        // The connection only dispatches advertised APIs; the rest have no handler yet (SASL)
        // and are refused before decoding.
        Request::SaslHandshake(_) | Request::SaslAuthenticate(_) => {
            unreachable!("the connection refuses APIs that are not advertised")
        }
    }
}

/// Milliseconds since the Unix epoch, the clock of record timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
