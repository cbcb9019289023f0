//! Consumer-group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//! DescribeGroups, ListGroups, DeleteGroups and OffsetDelete, answered by the group's coordinator
//! node (`group_node`); any other node answers NOT_COORDINATOR, which sends the client back to
//! FindCoordinator.
//!
//! JoinGroup and SyncGroup register with the group during dispatch and return a future that
//! waits for the rebalance, so the connection keeps reading. OffsetCommit, DeleteGroups and
//! OffsetDelete answer once the offset store made the change durable.

use std::net::IpAddr;
use std::rc::Rc;

use glommio::channels::local_channel;

use crate::group::classic_group::{JoinOutcome, JoinRequest, SyncOutcome, SyncRequest};
use crate::group::offset_store::CommittedOffset;
use crate::group::{GroupError, PartitionCommit};
use crate::protocol::messages::delete_groups::{
    DeletableGroupResult, DeleteGroupsRequest, DeleteGroupsResponse,
};
use crate::protocol::messages::describe_groups::{
    DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use crate::protocol::messages::heartbeat::{HeartbeatRequest, HeartbeatResponse};
use crate::protocol::messages::join_group::{
    JoinGroupRequest, JoinGroupResponse, JoinGroupResponseMember,
};
use crate::protocol::messages::leave_group::{
    LeaveGroupRequest, LeaveGroupResponse, MemberResponse,
};
use crate::protocol::messages::list_groups::{ListGroupsRequest, ListGroupsResponse, ListedGroup};
use crate::protocol::messages::offset_commit::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
};
use crate::protocol::messages::offset_delete::{
    OffsetDeleteRequest, OffsetDeleteResponse, OffsetDeleteResponsePartition,
    OffsetDeleteResponseTopic,
};
use crate::protocol::messages::offset_fetch::{
    OffsetFetchRequest, OffsetFetchResponse, OffsetFetchResponseGroup,
    OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use crate::protocol::messages::sync_group::{SyncGroupRequest, SyncGroupResponse};
use crate::protocol::{ErrorCode, Response};
use crate::shard::routing::group_node;
use crate::shard::{PartitionRoute, Shard};

use super::errors::group_error_code;
use super::{Pending, now_ms, ready};

/// Whether this shard coordinates `group_id`: it leads the group's offsets partition, or with
/// local offset stores, the group hashes here.
fn is_coordinator(shard: &Shard, group_id: &str) -> bool {
    if shard.config.replicated_offsets() {
        return shard.groups.hosts(group_id);
    }
    group_node(group_id, &shard.cluster.borrow(), false) == Some(shard.node())
}

fn code(result: Result<(), GroupError>) -> i16 {
    match result {
        Ok(()) => 0,
        Err(error) => group_error_code(&error).code(),
    }
}

/// Handles a JoinGroup; the answer waits for the rebalance.
pub fn handle_join_group(
    shard: &Rc<Shard>,
    request: JoinGroupRequest,
    client_id: Option<String>,
    client_address: Option<IpAddr>,
    version: i16,
) -> Pending {
    let refuse = |error: ErrorCode, member_id: String| {
        ready(Response::JoinGroup(join_response(
            JoinOutcome {
                generation_id: -1,
                member_id,
                ..JoinOutcome::default()
            },
            Some(error),
            version,
        )))
    };
    if !is_coordinator(shard, &request.group_id) {
        return refuse(ErrorCode::NotCoordinator, request.member_id);
    }
    let join = JoinRequest {
        member_id: request.member_id.clone(),
        group_instance_id: request.group_instance_id,
        client_id: client_id.unwrap_or_default(),
        client_host: client_host(client_address),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        protocol_type: request.protocol_type,
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name, p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let (sender, receiver) = local_channel::new_bounded(1);
    match shard.groups.join(&request.group_id, join, sender) {
        Err(error) => refuse(group_error_code(&error), request.member_id),
        Ok(Some(outcome)) => ready(Response::JoinGroup(join_response(outcome, None, version))),
        Ok(None) => Box::pin(async move {
            // The group was unloaded (its offsets partition's leadership moved): as Kafka, the
            // member is sent to look for the new coordinator.
            let outcome = receiver.recv().await.unwrap_or_else(|| JoinOutcome {
                error: Some(GroupError::NotCoordinator),
                generation_id: -1,
                member_id: request.member_id,
                ..JoinOutcome::default()
            });
            Some(Response::JoinGroup(join_response(outcome, None, version)))
        }),
    }
}

/// The member's host as Kafka shows it in DescribeGroups: Java's `InetAddress.toString()` of
/// the connection's peer, an unresolved address, hence "/127.0.0.1".
fn client_host(client_address: Option<IpAddr>) -> String {
    client_address.map_or_else(String::new, |address| format!("/{address}"))
}

fn join_response(
    outcome: JoinOutcome,
    error: Option<ErrorCode>,
    version: i16,
) -> JoinGroupResponse {
    let error_code = error
        .or_else(|| outcome.error.as_ref().map(group_error_code))
        .map_or(0, ErrorCode::code);
    // The protocol name became nullable in v7; before that an empty string stands for none.
    let protocol_name = outcome
        .protocol_name
        .or_else(|| (version < 7).then(String::new));
    JoinGroupResponse {
        error_code,
        generation_id: outcome.generation_id,
        protocol_type: outcome.protocol_type,
        protocol_name,
        leader: outcome.leader,
        skip_assignment: outcome.skip_assignment,
        member_id: outcome.member_id,
        members: outcome
            .members
            .into_iter()
            .map(
                |(member_id, group_instance_id, metadata)| JoinGroupResponseMember {
                    member_id,
                    group_instance_id,
                    metadata,
                },
            )
            .collect(),
        ..JoinGroupResponse::default()
    }
}

/// Handles a SyncGroup; a follower's answer waits for the leader's assignment.
pub fn handle_sync_group(shard: &Rc<Shard>, request: SyncGroupRequest) -> Pending {
    let respond = |outcome: SyncOutcome| {
        let (error_code, assignment) = match outcome.assignment {
            Ok(assignment) => (0, assignment),
            Err(error) => (group_error_code(&error).code(), bytes::Bytes::new()),
        };
        Response::SyncGroup(SyncGroupResponse {
            error_code,
            protocol_type: outcome.protocol_type,
            protocol_name: outcome.protocol_name,
            assignment,
            ..SyncGroupResponse::default()
        })
    };
    let refuse = |error: GroupError| SyncOutcome {
        assignment: Err(error),
        protocol_type: None,
        protocol_name: None,
    };
    if !is_coordinator(shard, &request.group_id) {
        return ready(Response::SyncGroup(SyncGroupResponse {
            error_code: ErrorCode::NotCoordinator.code(),
            ..SyncGroupResponse::default()
        }));
    }
    let sync = SyncRequest {
        member_id: request.member_id,
        generation_id: request.generation_id,
        group_instance_id: request.group_instance_id,
        protocol_type: request.protocol_type,
        protocol_name: request.protocol_name,
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id, a.assignment))
            .collect(),
    };
    let (sender, receiver) = local_channel::new_bounded(1);
    let synced = shard.groups.sync(&request.group_id, sync, sender);
    match synced {
        Err(error) => ready(respond(refuse(error))),
        Ok(Some(outcome)) => ready(respond(outcome)),
        Ok(None) => Box::pin(async move {
            let outcome = receiver
                .recv()
                .await
                .unwrap_or_else(|| refuse(GroupError::NotCoordinator));
            Some(respond(outcome))
        }),
    }
}

/// Answers a Heartbeat.
pub fn handle_heartbeat(shard: &Shard, request: HeartbeatRequest) -> HeartbeatResponse {
    if !is_coordinator(shard, &request.group_id) {
        return HeartbeatResponse {
            error_code: ErrorCode::NotCoordinator.code(),
            ..HeartbeatResponse::default()
        };
    }
    let beat = shard.groups.heartbeat(
        &request.group_id,
        &request.member_id,
        request.generation_id,
        request.group_instance_id.as_deref(),
    );
    // While the coordinator loads, Kafka answers heartbeats blindly: members keep their
    // partitions instead of rejoining a group whose state is not known yet.
    let error_code = match beat {
        Err(GroupError::CoordinatorLoading) => 0,
        beat => code(beat),
    };
    HeartbeatResponse {
        error_code,
        ..HeartbeatResponse::default()
    }
}

/// Answers a LeaveGroup: one member before v3, a batch from v3.
pub fn handle_leave_group(
    shard: &Shard,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    if !is_coordinator(shard, &request.group_id) {
        return LeaveGroupResponse {
            error_code: ErrorCode::NotCoordinator.code(),
            ..LeaveGroupResponse::default()
        };
    }
    let group_id = &request.group_id;
    if version < 3 {
        let left = shard.groups.leave(group_id, &request.member_id, None);
        return LeaveGroupResponse {
            error_code: code(left.map(|_| ())),
            ..LeaveGroupResponse::default()
        };
    }
    let mut members = Vec::with_capacity(request.members.len());
    for member in request.members {
        let instance_id = member.group_instance_id.as_deref();
        let left = shard.groups.leave(group_id, &member.member_id, instance_id);
        // A loading or failed coordinator refuses the whole request, as Kafka does.
        if let Err(
            error @ (GroupError::CoordinatorLoading | GroupError::CoordinatorNotAvailable(_)),
        ) = &left
        {
            return LeaveGroupResponse {
                error_code: group_error_code(error).code(),
                ..LeaveGroupResponse::default()
            };
        }
        members.push(MemberResponse {
            member_id: left.as_ref().map_or(member.member_id.clone(), Clone::clone),
            group_instance_id: member.group_instance_id,
            error_code: code(left.map(|_| ())),
        });
    }
    LeaveGroupResponse {
        members,
        ..LeaveGroupResponse::default()
    }
}

/// Handles an OffsetCommit; answered once the commits are durable.
pub fn handle_offset_commit(shard: &Rc<Shard>, request: OffsetCommitRequest) -> Pending {
    let shard = Rc::clone(shard);
    Box::pin(async move { Some(Response::OffsetCommit(offset_commit(&shard, request).await)) })
}

async fn offset_commit(shard: &Shard, request: OffsetCommitRequest) -> OffsetCommitResponse {
    // Every partition of the request, with its error if it is refused before the commit.
    let mut slots: Vec<(String, i32, Option<ErrorCode>)> = Vec::new();
    let mut commits = Vec::new();
    let commit_timestamp_ms = now_ms();
    let top_error =
        (!is_coordinator(shard, &request.group_id)).then_some(ErrorCode::NotCoordinator);
    for topic in &request.topics {
        for partition in &topic.partitions {
            let known = !matches!(
                shard.route(&topic.name, partition.partition_index),
                PartitionRoute::UnknownTopic | PartitionRoute::UnknownPartition
            );
            let error = top_error.or((!known).then_some(ErrorCode::UnknownTopicOrPartition));
            if error.is_none() {
                commits.push(PartitionCommit {
                    topic: topic.name.clone(),
                    partition: partition.partition_index,
                    value: CommittedOffset {
                        offset: partition.committed_offset,
                        leader_epoch: partition.committed_leader_epoch,
                        metadata: partition.committed_metadata.clone(),
                        // v1 lets the client set the commit time; -1 (and v2+) means now.
                        commit_timestamp_ms: match partition.commit_timestamp {
                            -1 => commit_timestamp_ms,
                            client_timestamp_ms => client_timestamp_ms,
                        },
                    },
                });
            }
            slots.push((topic.name.clone(), partition.partition_index, error));
        }
    }
    let results = if top_error.is_some() || commits.is_empty() {
        Ok(Vec::new())
    } else {
        shard
            .groups
            .commit(
                &request.group_id,
                &request.member_id,
                request.generation_id_or_member_epoch,
                request.group_instance_id.as_deref(),
                commits,
            )
            .await
    };
    let mut results = match results {
        Ok(results) => results.into_iter(),
        Err(error) => {
            let code = group_error_code(&error);
            for slot in slots.iter_mut() {
                slot.2.get_or_insert(code);
            }
            Vec::new().into_iter()
        }
    };
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (topic, partition_index, error) in slots {
        let error_code = match error {
            Some(error) => error.code(),
            None => code(results.next().unwrap_or(Ok(()))),
        };
        let partition = OffsetCommitResponsePartition {
            partition_index,
            error_code,
        };
        match topics.last_mut() {
            Some(last) if last.name == topic => last.partitions.push(partition),
            _ => topics.push(OffsetCommitResponseTopic {
                name: topic,
                partitions: vec![partition],
            }),
        }
    }
    OffsetCommitResponse {
        topics,
        ..OffsetCommitResponse::default()
    }
}

type FetchedTopics = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

fn fetch_group(
    shard: &Shard,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<FetchedTopics, ErrorCode> {
    if !is_coordinator(shard, group_id) {
        return Err(ErrorCode::NotCoordinator);
    }
    shard
        .groups
        .fetch(group_id, topics)
        .map_err(|error| group_error_code(&error))
}

/// (offset, leader epoch, metadata) of a fetched partition; -1 and "" when nothing is committed.
fn committed_fields(value: Option<CommittedOffset>) -> (i64, i32, Option<String>) {
    match value {
        Some(value) => (
            value.offset,
            value.leader_epoch,
            Some(value.metadata.unwrap_or_default()),
        ),
        None => (-1, -1, Some(String::new())),
    }
}

/// Answers an OffsetFetch: one group before v8, several from v8.
pub fn handle_offset_fetch(
    shard: &Shard,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|group| {
                let topics = group.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                let (error_code, fetched) = match fetch_group(shard, &group.group_id, topics) {
                    Ok(fetched) => (0, fetched),
                    Err(error) => (error.code(), Vec::new()),
                };
                OffsetFetchResponseGroup {
                    group_id: group.group_id,
                    error_code,
                    topics: fetched.into_iter().map(v8_topic).collect(),
                }
            })
            .collect();
        return OffsetFetchResponse {
            groups,
            ..OffsetFetchResponse::default()
        };
    }
    let requested: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    match fetch_group(shard, &request.group_id, requested.clone()) {
        Ok(fetched) => OffsetFetchResponse {
            topics: fetched.into_iter().map(|t| v1_topic(t, 0)).collect(),
            ..OffsetFetchResponse::default()
        },
        // v1 has no top-level error: each requested partition carries it.
        Err(error) if version < 2 => {
            let fetched = requested
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, partitions)| {
                    (topic, partitions.into_iter().map(|p| (p, None)).collect())
                })
                .collect::<FetchedTopics>();
            OffsetFetchResponse {
                topics: fetched
                    .into_iter()
                    .map(|t| v1_topic(t, error.code()))
                    .collect(),
                ..OffsetFetchResponse::default()
            }
        }
        Err(error) => OffsetFetchResponse {
            error_code: error.code(),
            ..OffsetFetchResponse::default()
        },
    }
}

fn v1_topic(
    (name, partitions): (String, Vec<(i32, Option<CommittedOffset>)>),
    error_code: i16,
) -> OffsetFetchResponseTopic {
    OffsetFetchResponseTopic {
        name,
        partitions: partitions
            .into_iter()
            .map(|(partition_index, value)| {
                let (committed_offset, committed_leader_epoch, metadata) = committed_fields(value);
                OffsetFetchResponsePartition {
                    partition_index,
                    committed_offset,
                    committed_leader_epoch,
                    metadata,
                    error_code,
                }
            })
            .collect(),
    }
}

fn v8_topic(
    (name, partitions): (String, Vec<(i32, Option<CommittedOffset>)>),
) -> OffsetFetchResponseTopics {
    OffsetFetchResponseTopics {
        name,
        partitions: partitions
            .into_iter()
            .map(|(partition_index, value)| {
                let (committed_offset, committed_leader_epoch, metadata) = committed_fields(value);
                OffsetFetchResponsePartitions {
                    partition_index,
                    committed_offset,
                    committed_leader_epoch,
                    metadata,
                    error_code: 0,
                }
            })
            .collect(),
    }
}

/// Answers a DescribeGroups.
pub fn handle_describe_groups(
    shard: &Shard,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|group_id| {
            let summary = if is_coordinator(shard, &group_id) {
                shard
                    .groups
                    .describe(&group_id)
                    .map_err(|e| group_error_code(&e))
            } else {
                Err(ErrorCode::NotCoordinator)
            };
            match summary {
                Ok(summary) => DescribedGroup {
                    group_id,
                    group_state: summary.state.to_owned(),
                    protocol_type: summary.protocol_type,
                    protocol_data: summary.protocol_name,
                    members: summary
                        .members
                        .into_iter()
                        .map(|m| DescribedGroupMember {
                            member_id: m.member_id,
                            group_instance_id: m.group_instance_id,
                            client_id: m.client_id,
                            client_host: m.client_host,
                            member_metadata: m.metadata,
                            member_assignment: m.assignment,
                        })
                        .collect(),
                    ..DescribedGroup::default()
                },
                Err(error) => DescribedGroup {
                    error_code: error.code(),
                    group_id,
                    ..DescribedGroup::default()
                },
            }
        })
        .collect();
    DescribeGroupsResponse {
        groups,
        ..DescribeGroupsResponse::default()
    }
}

/// Answers a ListGroups with the groups this shard coordinates (admin clients ask every node).
pub fn handle_list_groups(shard: &Shard, request: ListGroupsRequest) -> ListGroupsResponse {
    let listed = match shard.groups.list() {
        Ok(listed) => listed,
        Err(error) => {
            return ListGroupsResponse {
                error_code: group_error_code(&error).code(),
                ..ListGroupsResponse::default()
            };
        }
    };
    let states = &request.states_filter;
    let types = &request.types_filter;
    let groups = listed
        .into_iter()
        .filter(|(_, _, state)| {
            states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state))
        })
        .filter(|_| types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case("classic")))
        .map(|(group_id, protocol_type, state)| ListedGroup {
            group_id,
            protocol_type,
            group_state: state.to_owned(),
            group_type: "classic".to_owned(),
        })
        .collect();
    ListGroupsResponse {
        groups,
        ..ListGroupsResponse::default()
    }
}

/// Handles a DeleteGroups; answered once the deletions are durable.
pub fn handle_delete_groups(shard: &Rc<Shard>, request: DeleteGroupsRequest) -> Pending {
    let shard = Rc::clone(shard);
    Box::pin(async move {
        let mut results = Vec::with_capacity(request.groups_names.len());
        for group_id in request.groups_names {
            let error_code = if is_coordinator(&shard, &group_id) {
                code(shard.groups.delete_group(&group_id).await)
            } else {
                ErrorCode::NotCoordinator.code()
            };
            results.push(DeletableGroupResult {
                group_id,
                error_code,
            });
        }
        Some(Response::DeleteGroups(DeleteGroupsResponse {
            results,
            ..DeleteGroupsResponse::default()
        }))
    })
}

/// Handles an OffsetDelete; answered once the deletions are durable.
pub fn handle_offset_delete(shard: &Rc<Shard>, request: OffsetDeleteRequest) -> Pending {
    let shard = Rc::clone(shard);
    Box::pin(async move { Some(Response::OffsetDelete(offset_delete(&shard, request).await)) })
}

async fn offset_delete(shard: &Shard, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let refuse = |error: ErrorCode| OffsetDeleteResponse {
        error_code: error.code(),
        ..OffsetDeleteResponse::default()
    };
    if !is_coordinator(shard, &request.group_id) {
        return refuse(ErrorCode::NotCoordinator);
    }
    let mut slots = Vec::new();
    let mut partitions = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            let known = !matches!(
                shard.route(&topic.name, partition.partition_index),
                PartitionRoute::UnknownTopic | PartitionRoute::UnknownPartition
            );
            if known {
                partitions.push((topic.name.clone(), partition.partition_index));
            }
            slots.push((topic.name.clone(), partition.partition_index, known));
        }
    }
    let mut results = match shard
        .groups
        .delete_offsets(&request.group_id, partitions)
        .await
    {
        Ok(results) => results.into_iter(),
        Err(error) => return refuse(group_error_code(&error)),
    };
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
    for (name, partition_index, known) in slots {
        let error_code = if known {
            code(results.next().unwrap_or(Ok(())))
        } else {
            ErrorCode::UnknownTopicOrPartition.code()
        };
        let partition = OffsetDeleteResponsePartition {
            partition_index,
            error_code,
        };
        match topics.last_mut() {
            Some(last) if last.name == name => last.partitions.push(partition),
            _ => topics.push(OffsetDeleteResponseTopic {
                name,
                partitions: vec![partition],
            }),
        }
    }
    OffsetDeleteResponse {
        topics,
        ..OffsetDeleteResponse::default()
    }
}
