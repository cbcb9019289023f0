//! Consumer groups at the wire level: raw JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups and OffsetDelete frames
//! built with Spate's own codec against a real two-shard `spate serve`, for the error codes that
//! client libraries react to but never show.

mod common;

use std::time::Duration;

use bytes::Bytes;
use spate::protocol::messages::delete_groups::DeleteGroupsRequest;
use spate::protocol::messages::describe_groups::{DescribeGroupsRequest, DescribedGroup};
use spate::protocol::messages::heartbeat::HeartbeatRequest;
use spate::protocol::messages::join_group::{
    JoinGroupRequest, JoinGroupRequestProtocol, JoinGroupResponse,
};
use spate::protocol::messages::leave_group::{LeaveGroupRequest, MemberIdentity};
use spate::protocol::messages::list_groups::{ListGroupsRequest, ListedGroup};
use spate::protocol::messages::offset_commit::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    OffsetCommitResponse,
};
use spate::protocol::messages::offset_delete::{
    OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use spate::protocol::messages::offset_fetch::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use spate::protocol::messages::sync_group::{SyncGroupRequest, SyncGroupRequestAssignment};
use spate::protocol::{ApiKey, Request, Response};
use spate::shard::routing::group_shard;

use common::wire::Wire;
use common::{Broker, BrokerConfig, create_topic};

const NOT_COORDINATOR: i16 = 16;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const REBALANCE_IN_PROGRESS: i16 = 27;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
const MEMBER_ID_REQUIRED: i16 = 79;

const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
/// How long the shards may take to load their offset stores after the broker serves.
const LOAD_TIMEOUT: Duration = Duration::from_secs(20);

/// A two-shard broker whose group coordinators have loaded their offset stores: until then they
/// answer COORDINATOR_LOAD_IN_PROGRESS, which clients retry.
fn two_shards() -> Broker {
    two_shards_with(&[])
}

/// `two_shards` with more `spate serve` flags.
fn two_shards_with(args: &[&str]) -> Broker {
    let mut all_args = vec![
        "--group-initial-rebalance-delay-ms".to_owned(),
        "100".to_owned(),
    ];
    all_args.extend(args.iter().map(|arg| arg.to_string()));
    let broker = Broker::start_with(BrokerConfig {
        cores: 2,
        args: all_args,
        ..BrokerConfig::default()
    });
    for listener in broker.listeners() {
        let mut wire = Wire::connect(&listener.address);
        let deadline = std::time::Instant::now() + LOAD_TIMEOUT;
        loop {
            let Response::ListGroups(listed) =
                wire.call(4, Request::ListGroups(ListGroupsRequest::default()))
            else {
                panic!("not a ListGroups response");
            };
            if listed.error_code == 0 {
                break;
            }
            assert_eq!(listed.error_code, COORDINATOR_LOAD_IN_PROGRESS);
            assert!(
                std::time::Instant::now() < deadline,
                "offset store never loaded"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    broker
}

/// Connections to a group's coordinator shard and to the other shard.
fn coordinator_and_other(broker: &Broker, group: &str) -> (Wire, Wire) {
    let owner = group_shard(group, 2).0 as usize;
    let listeners = broker.listeners();
    (
        Wire::connect(&listeners[owner].address),
        Wire::connect(&listeners[1 - owner].address),
    )
}

/// The topic every member in these tests subscribes to.
const SUBSCRIBED_TOPIC: &str = "subscribed";

/// A consumer-protocol Subscription (v0) of one topic, as the members' JoinGroup metadata.
fn subscription(topic: &str) -> Bytes {
    let mut bytes = vec![0, 0];
    bytes.extend_from_slice(&1i32.to_be_bytes());
    bytes.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    bytes.extend_from_slice(topic.as_bytes());
    bytes.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(bytes)
}

fn join(group: &str, member_id: &str, session_timeout_ms: i32) -> Request {
    Request::JoinGroup(JoinGroupRequest {
        group_id: group.into(),
        session_timeout_ms,
        rebalance_timeout_ms: 10_000,
        member_id: member_id.into(),
        protocol_type: "consumer".into(),
        protocols: vec![JoinGroupRequestProtocol {
            name: "range".into(),
            metadata: subscription(SUBSCRIBED_TOPIC),
        }],
        ..JoinGroupRequest::default()
    })
}

fn join_response(response: Response) -> JoinGroupResponse {
    match response {
        Response::JoinGroup(response) => response,
        other => panic!("not a JoinGroup response: {other:?}"),
    }
}

/// Joins a new member the v5 way (MEMBER_ID_REQUIRED first) and returns the final answer.
fn join_new(wire: &mut Wire, group: &str) -> JoinGroupResponse {
    let first = join_response(wire.call(5, join(group, "", 6000)));
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    assert!(!first.member_id.is_empty());
    join_response(wire.call(5, join(group, &first.member_id, 6000)))
}

fn heartbeat(wire: &mut Wire, group: &str, member_id: &str, generation_id: i32) -> i16 {
    let request = Request::Heartbeat(HeartbeatRequest {
        group_id: group.into(),
        generation_id,
        member_id: member_id.into(),
        ..HeartbeatRequest::default()
    });
    match wire.call(3, request) {
        Response::Heartbeat(response) => response.error_code,
        other => panic!("not a Heartbeat response: {other:?}"),
    }
}

fn sync(
    wire: &mut Wire,
    group: &str,
    member_id: &str,
    generation_id: i32,
    assignments: &[(&str, &'static [u8])],
) -> (i16, Bytes) {
    let request = Request::SyncGroup(SyncGroupRequest {
        group_id: group.into(),
        generation_id,
        member_id: member_id.into(),
        assignments: assignments
            .iter()
            .map(|(member_id, assignment)| SyncGroupRequestAssignment {
                member_id: member_id.to_string(),
                assignment: Bytes::from_static(assignment),
            })
            .collect(),
        ..SyncGroupRequest::default()
    });
    match wire.call(3, request) {
        Response::SyncGroup(response) => (response.error_code, response.assignment),
        other => panic!("not a SyncGroup response: {other:?}"),
    }
}

fn commit(
    group: &str,
    member_id: &str,
    generation_id: i32,
    partitions: &[(&str, i32, i64, usize)],
) -> Request {
    Request::OffsetCommit(OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: generation_id,
        member_id: member_id.into(),
        topics: partitions
            .iter()
            .map(
                |(topic, partition, offset, metadata_bytes)| OffsetCommitRequestTopic {
                    name: topic.to_string(),
                    partitions: vec![OffsetCommitRequestPartition {
                        partition_index: *partition,
                        committed_offset: *offset,
                        committed_metadata: Some("m".repeat(*metadata_bytes)),
                        ..OffsetCommitRequestPartition::default()
                    }],
                },
            )
            .collect(),
        ..OffsetCommitRequest::default()
    })
}

fn commit_codes(response: Response) -> Vec<i16> {
    let Response::OffsetCommit(OffsetCommitResponse { topics, .. }) = response else {
        panic!("not an OffsetCommit response");
    };
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

#[test]
fn group_requests_on_the_wrong_shard_get_not_coordinator() {
    // Proves every group API sent to a shard that does not coordinate the group answers
    // NOT_COORDINATOR (the client then asks FindCoordinator), and the coordinator answers.
    let broker = two_shards();
    let group = "misrouted";
    let (mut coordinator, mut other) = coordinator_and_other(&broker, group);
    assert_eq!(
        join_response(other.call(5, join(group, "", 6000))).error_code,
        NOT_COORDINATOR
    );
    assert_eq!(heartbeat(&mut other, group, "m", 1), NOT_COORDINATOR);
    assert_eq!(sync(&mut other, group, "m", 1, &[]).0, NOT_COORDINATOR);
    let codes = commit_codes(other.call(8, commit(group, "", -1, &[("t", 0, 5, 0)])));
    assert_eq!(codes, vec![NOT_COORDINATOR]);
    let fetch = Request::OffsetFetch(OffsetFetchRequest {
        group_id: group.into(),
        topics: None,
        ..OffsetFetchRequest::default()
    });
    let Response::OffsetFetch(response) = other.call(7, fetch.clone()) else {
        panic!("not an OffsetFetch response");
    };
    assert_eq!(response.error_code, NOT_COORDINATOR);
    let Response::OffsetFetch(response) = coordinator.call(7, fetch) else {
        panic!("not an OffsetFetch response");
    };
    assert_eq!(response.error_code, 0);
    assert!(response.topics.is_empty());
    broker.stop();
}

#[test]
fn membership_errors_follow_kafka() {
    // Proves MEMBER_ID_REQUIRED for a new v4+ member, INVALID_SESSION_TIMEOUT, ILLEGAL_GENERATION,
    // UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS while a second member joins, the rebalance that
    // waits for every member and hands the leader both members, LeaveGroup, DescribeGroups,
    // ListGroups, DeleteGroups refusing a group with members and OffsetDelete refusing a topic
    // the members subscribe to.
    let broker = two_shards();
    create_topic(&broker.bootstrap(), SUBSCRIBED_TOPIC, 1, &[]);
    let group = "members";
    let (mut first, _) = coordinator_and_other(&broker, group);
    let (mut second, _) = coordinator_and_other(&broker, group);
    let refused = join_response(first.call(5, join(group, "", 100)));
    assert_eq!(refused.error_code, INVALID_SESSION_TIMEOUT);
    let a = join_new(&mut first, group);
    assert_eq!(a.error_code, 0);
    assert_eq!((a.generation_id, a.leader == a.member_id), (1, true));
    assert_eq!(a.members.len(), 1);
    assert_eq!(a.protocol_name.as_deref(), Some("range"));
    let (code, assignment) = sync(
        &mut first,
        group,
        &a.member_id,
        1,
        &[(&a.member_id, b"all")],
    );
    assert_eq!((code, &assignment[..]), (0, &b"all"[..]));
    assert_eq!(heartbeat(&mut first, group, &a.member_id, 1), 0);
    assert_eq!(
        heartbeat(&mut first, group, &a.member_id, 7),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        heartbeat(&mut first, group, "stranger", 1),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        sync(&mut first, group, "stranger", 1, &[]).0,
        UNKNOWN_MEMBER_ID
    );

    // A second member: its JoinGroup waits until the first member rejoins.
    let id_required = join_response(second.call(5, join(group, "", 6000)));
    assert_eq!(id_required.error_code, MEMBER_ID_REQUIRED);
    let parked = second.send(5, join(group, &id_required.member_id, 6000));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        heartbeat(&mut first, group, &a.member_id, 1),
        REBALANCE_IN_PROGRESS
    );
    let a2 = join_response(first.call(5, join(group, &a.member_id, 6000)));
    let b2 = join_response(second.receive(ApiKey::JoinGroup, 5, parked));
    assert_eq!((a2.error_code, b2.error_code), (0, 0));
    assert_eq!((a2.generation_id, b2.generation_id), (2, 2));
    assert_eq!(a2.leader, a.member_id);
    assert_eq!((a2.members.len(), b2.members.len()), (2, 0));
    // The follower's SyncGroup waits for the leader's assignment.
    let parked = second.send(
        3,
        Request::SyncGroup(SyncGroupRequest {
            group_id: group.into(),
            generation_id: 2,
            member_id: b2.member_id.clone(),
            ..SyncGroupRequest::default()
        }),
    );
    let assignments = [
        (a.member_id.as_str(), &b"p0"[..]),
        (b2.member_id.as_str(), &b"p1"[..]),
    ];
    assert_eq!(
        sync(&mut first, group, &a.member_id, 2, &assignments).1,
        &b"p0"[..]
    );
    let Response::SyncGroup(b_sync) = second.receive(ApiKey::SyncGroup, 3, parked) else {
        panic!("not a SyncGroup response");
    };
    assert_eq!((b_sync.error_code, &b_sync.assignment[..]), (0, &b"p1"[..]));

    let Response::DescribeGroups(described) = first.call(
        5,
        Request::DescribeGroups(DescribeGroupsRequest {
            groups: vec![group.into(), "never-seen".into()],
            ..DescribeGroupsRequest::default()
        }),
    ) else {
        panic!("not a DescribeGroups response");
    };
    assert_eq!(described.groups[0].group_state, "Stable");
    assert_eq!(described.groups[0].members.len(), 2);
    assert_eq!(described.groups[1].group_state, "Dead");
    let Response::ListGroups(listed) =
        first.call(4, Request::ListGroups(ListGroupsRequest::default()))
    else {
        panic!("not a ListGroups response");
    };
    assert!(
        listed
            .groups
            .iter()
            .any(|g| g.group_id == group && g.group_state == "Stable")
    );
    let delete = Request::DeleteGroups(DeleteGroupsRequest {
        groups_names: vec![group.into()],
    });
    let Response::DeleteGroups(deleted) = first.call(2, delete.clone()) else {
        panic!("not a DeleteGroups response");
    };
    assert_eq!(deleted.results[0].error_code, NON_EMPTY_GROUP);
    let delete_offsets = Request::OffsetDelete(OffsetDeleteRequest {
        group_id: group.into(),
        topics: vec![OffsetDeleteRequestTopic {
            name: SUBSCRIBED_TOPIC.into(),
            partitions: vec![OffsetDeleteRequestPartition { partition_index: 0 }],
        }],
    });
    let Response::OffsetDelete(refused) = first.call(0, delete_offsets) else {
        panic!("not an OffsetDelete response");
    };
    let code = refused.topics[0].partitions[0].error_code;
    assert_eq!((refused.error_code, code), (0, GROUP_SUBSCRIBED_TO_TOPIC));

    // Batch leave (v3+): both members, one unknown.
    let leave = Request::LeaveGroup(LeaveGroupRequest {
        group_id: group.into(),
        members: [a.member_id.as_str(), b2.member_id.as_str(), "stranger"]
            .iter()
            .map(|id| MemberIdentity {
                member_id: id.to_string(),
                ..MemberIdentity::default()
            })
            .collect(),
        ..LeaveGroupRequest::default()
    });
    let Response::LeaveGroup(left) = first.call(4, leave) else {
        panic!("not a LeaveGroup response");
    };
    let codes: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    assert_eq!((left.error_code, codes), (0, vec![0, 0, UNKNOWN_MEMBER_ID]));
    let Response::DeleteGroups(deleted) = first.call(2, delete) else {
        panic!("not a DeleteGroups response");
    };
    assert_eq!(deleted.results[0].error_code, 0);
    broker.stop();
}

#[test]
fn offsets_are_committed_fetched_and_deleted_with_kafka_errors() {
    // Proves commits with generation -1 on an empty group (librdkafka's default for simple
    // consumers), OFFSET_METADATA_TOO_LARGE above 4 KiB while the rest of the request commits,
    // UNKNOWN_TOPIC_OR_PARTITION, ILLEGAL_GENERATION for a group that does not exist, OffsetFetch
    // v8 across groups, OffsetDelete and DeleteGroups.
    let broker = two_shards();
    create_topic(&broker.bootstrap(), "offsets", 2, &[]);
    let group = "simple";
    let (mut wire, _) = coordinator_and_other(&broker, group);
    let request = commit(
        group,
        "",
        -1,
        &[
            ("offsets", 0, 42, 4096),
            ("offsets", 1, 7, 4097),
            ("missing", 0, 1, 0),
        ],
    );
    let codes = commit_codes(wire.call(8, request));
    assert_eq!(
        codes,
        vec![0, OFFSET_METADATA_TOO_LARGE, UNKNOWN_TOPIC_OR_PARTITION]
    );
    let codes =
        commit_codes(wire.call(8, commit("no-such-group", "m", 3, &[("offsets", 0, 1, 0)])));
    let expected = if group_shard("no-such-group", 2) == group_shard(group, 2) {
        ILLEGAL_GENERATION
    } else {
        NOT_COORDINATOR
    };
    assert_eq!(codes, vec![expected]);

    // Multi-group fetch (v8): the second group has no commits; a group of the other shard is
    // refused on its own.
    let other_group = (0..)
        .map(|i| format!("elsewhere-{i}"))
        .find(|g| group_shard(g, 2) != group_shard(group, 2))
        .unwrap();
    let fetch = Request::OffsetFetch(OffsetFetchRequest {
        groups: [group, "fresh", other_group.as_str()]
            .iter()
            .map(|g| OffsetFetchRequestGroup {
                group_id: g.to_string(),
                topics: Some(vec![OffsetFetchRequestTopics {
                    name: "offsets".into(),
                    partition_indexes: vec![0, 1],
                }]),
            })
            .collect(),
        ..OffsetFetchRequest::default()
    });
    let Response::OffsetFetch(fetched) = wire.call(8, fetch) else {
        panic!("not an OffsetFetch response");
    };
    let offsets = |index: usize| -> Vec<i64> {
        fetched.groups[index].topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect()
    };
    let fresh_code = if group_shard("fresh", 2) == group_shard(group, 2) {
        0
    } else {
        NOT_COORDINATOR
    };
    assert_eq!(fetched.groups[0].error_code, 0);
    assert_eq!(offsets(0), vec![42, -1]);
    assert_eq!(
        fetched.groups[0].topics[0].partitions[0]
            .metadata
            .as_deref()
            .map(str::len),
        Some(4096)
    );
    assert_eq!(fetched.groups[1].error_code, fresh_code);
    if fresh_code == 0 {
        assert_eq!(offsets(1), vec![-1, -1]);
    }
    assert_eq!(fetched.groups[2].error_code, NOT_COORDINATOR);

    let delete = Request::OffsetDelete(OffsetDeleteRequest {
        group_id: group.into(),
        topics: vec![OffsetDeleteRequestTopic {
            name: "offsets".into(),
            partitions: vec![OffsetDeleteRequestPartition { partition_index: 0 }],
        }],
    });
    let Response::OffsetDelete(deleted) = wire.call(0, delete) else {
        panic!("not an OffsetDelete response");
    };
    assert_eq!(deleted.error_code, 0);
    assert_eq!(deleted.topics[0].partitions[0].error_code, 0);
    let fetch_v5 = Request::OffsetFetch(OffsetFetchRequest {
        group_id: group.into(),
        topics: Some(vec![OffsetFetchRequestTopic {
            name: "offsets".into(),
            partition_indexes: vec![0],
        }]),
        ..OffsetFetchRequest::default()
    });
    let Response::OffsetFetch(fetched) = wire.call(5, fetch_v5) else {
        panic!("not an OffsetFetch response");
    };
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, -1);
    let delete_group = Request::DeleteGroups(DeleteGroupsRequest {
        groups_names: vec![group.into()],
    });
    let Response::DeleteGroups(deleted) = wire.call(2, delete_group.clone()) else {
        panic!("not a DeleteGroups response");
    };
    assert_eq!(deleted.results[0].error_code, 0);
    let Response::DeleteGroups(deleted) = wire.call(2, delete_group) else {
        panic!("not a DeleteGroups response");
    };
    assert_eq!(deleted.results[0].error_code, GROUP_ID_NOT_FOUND);
    broker.stop();
}

fn describe(wire: &mut Wire, groups: &[&str]) -> Vec<DescribedGroup> {
    let request = Request::DescribeGroups(DescribeGroupsRequest {
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..DescribeGroupsRequest::default()
    });
    match wire.call(5, request) {
        Response::DescribeGroups(described) => described.groups,
        other => panic!("not a DescribeGroups response: {other:?}"),
    }
}

fn list(wire: &mut Wire) -> Vec<ListedGroup> {
    match wire.call(4, Request::ListGroups(ListGroupsRequest::default())) {
        Response::ListGroups(listed) => {
            assert_eq!(listed.error_code, 0);
            listed.groups
        }
        other => panic!("not a ListGroups response: {other:?}"),
    }
}

/// Joins one dynamic member and makes it the Stable group's only member with an assignment.
fn stable_single_member(wire: &mut Wire, group: &str) -> JoinGroupResponse {
    let joined = join_new(wire, group);
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    let assignment = [(joined.member_id.as_str(), &b"all"[..])];
    let synced = sync(wire, group, &joined.member_id, 1, &assignment);
    assert_eq!(synced.0, 0);
    joined
}

#[test]
fn a_commit_from_outside_the_group_is_refused_while_it_has_members() {
    // Proves Kafka's validateOffsetCommit: an OffsetCommit with generation -1 and no member id
    // (AdminClient.alterConsumerGroupOffsets, a consumer without group management) gets
    // UNKNOWN_MEMBER_ID while the group has members, so it cannot rewind partitions they own;
    // the member's own commit is accepted, one with generation -1 and its member id is an
    // ILLEGAL_GENERATION, and once the group is Empty the outside commit is accepted.
    let broker = two_shards();
    create_topic(&broker.bootstrap(), SUBSCRIBED_TOPIC, 1, &[]);
    let group = "admin-commit";
    let (mut wire, _) = coordinator_and_other(&broker, group);
    let member = stable_single_member(&mut wire, group);
    let offsets = [(SUBSCRIBED_TOPIC, 0, 5, 0)];
    let outside = commit_codes(wire.call(8, commit(group, "", -1, &offsets)));
    assert_eq!(outside, vec![UNKNOWN_MEMBER_ID]);
    let own = commit_codes(wire.call(8, commit(group, &member.member_id, 1, &offsets)));
    assert_eq!(own, vec![0]);
    let stale = commit_codes(wire.call(8, commit(group, &member.member_id, -1, &offsets)));
    assert_eq!(stale, vec![ILLEGAL_GENERATION]);
    let leave = Request::LeaveGroup(LeaveGroupRequest {
        group_id: group.into(),
        member_id: member.member_id.clone(),
        ..LeaveGroupRequest::default()
    });
    let Response::LeaveGroup(left) = wire.call(1, leave) else {
        panic!("not a LeaveGroup response");
    };
    assert_eq!(left.error_code, 0);
    let outside = commit_codes(wire.call(8, commit(group, "", -1, &offsets)));
    assert_eq!(outside, vec![0]);
    broker.stop();
}

#[test]
fn an_empty_group_keeps_its_protocol_type_and_members_show_their_host() {
    // Proves DescribeGroups shows a member's client_host as Kafka does (Java's
    // InetAddress.toString() of the peer: "/127.0.0.1"), and that a group whose members all
    // left is listed and described Empty with its protocol type still "consumer", as Kafka
    // keeps it.
    let broker = two_shards();
    let group = "emptied";
    let (mut wire, _) = coordinator_and_other(&broker, group);
    let member = stable_single_member(&mut wire, group);
    let described = describe(&mut wire, &[group]);
    assert_eq!(described[0].group_state, "Stable");
    assert_eq!(described[0].members[0].client_id, "wire-test");
    assert_eq!(described[0].members[0].client_host, "/127.0.0.1");
    let leave = Request::LeaveGroup(LeaveGroupRequest {
        group_id: group.into(),
        member_id: member.member_id.clone(),
        ..LeaveGroupRequest::default()
    });
    let Response::LeaveGroup(left) = wire.call(1, leave) else {
        panic!("not a LeaveGroup response");
    };
    assert_eq!(left.error_code, 0);
    let listed = list(&mut wire);
    let entry = listed.iter().find(|g| g.group_id == group).expect("listed");
    assert_eq!(
        (entry.group_state.as_str(), entry.protocol_type.as_str()),
        ("Empty", "consumer")
    );
    let described = describe(&mut wire, &[group]);
    assert_eq!(described[0].group_state, "Empty");
    assert_eq!(described[0].protocol_type, "consumer");
    assert!(described[0].members.is_empty());
    broker.stop();
}

fn static_join(group: &str, instance_id: &str, session_timeout_ms: i32) -> Request {
    let Request::JoinGroup(request) = join(group, "", session_timeout_ms) else {
        unreachable!("join builds a JoinGroup");
    };
    Request::JoinGroup(JoinGroupRequest {
        group_instance_id: Some(instance_id.into()),
        ..request
    })
}

#[test]
fn a_static_member_leaves_by_instance_id_and_needs_a_valid_session_timeout() {
    // Proves a static member (group.instance.id) is held to the session timeout bounds like a
    // dynamic one (INVALID_SESSION_TIMEOUT below group.min.session.timeout.ms), and that a
    // LeaveGroup naming only its instance id removes it: the group is Empty and can be deleted.
    let broker = two_shards();
    let group = "static-leave";
    let (mut wire, _) = coordinator_and_other(&broker, group);
    let refused = join_response(wire.call(5, static_join(group, "instance-a", 5000)));
    assert_eq!(refused.error_code, INVALID_SESSION_TIMEOUT);
    let joined = join_response(wire.call(5, static_join(group, "instance-a", 6000)));
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    let assignment = [(joined.member_id.as_str(), &b"all"[..])];
    assert_eq!(
        sync(&mut wire, group, &joined.member_id, 1, &assignment).0,
        0
    );
    let leave = Request::LeaveGroup(LeaveGroupRequest {
        group_id: group.into(),
        members: vec![MemberIdentity {
            group_instance_id: Some("instance-a".into()),
            ..MemberIdentity::default()
        }],
        ..LeaveGroupRequest::default()
    });
    let Response::LeaveGroup(left) = wire.call(4, leave) else {
        panic!("not a LeaveGroup response");
    };
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(left.members[0].member_id, joined.member_id);
    assert_eq!(describe(&mut wire, &[group])[0].group_state, "Empty");
    let delete = Request::DeleteGroups(DeleteGroupsRequest {
        groups_names: vec![group.into()],
    });
    let Response::DeleteGroups(deleted) = wire.call(2, delete) else {
        panic!("not a DeleteGroups response");
    };
    assert_eq!(deleted.results[0].error_code, 0);
    broker.stop();
}

/// Session timeout of the members in `sessions_expire_when_their_timeout_has_passed`.
const SHORT_SESSION_MS: u64 = 1000;

#[test]
fn sessions_expire_when_their_timeout_has_passed() {
    // Proves the coordinator removes a silent member when its session timeout has passed, not
    // up to a timer tick later: librdkafka closes a static member (which sends no LeaveGroup),
    // waits the session timeout and deletes the group, which Kafka's precise timers allow.
    // Ten single-member groups on one shard get their last heartbeat 10 ms apart; with a
    // coordinator that checked sessions every 100 ms, one of them would be seen Empty at least
    // 90 ms after its deadline, so every group must be Empty within LATENESS_MS_MAX of it (and
    // never before it).
    const GROUPS: usize = 10;
    const SPACING_MS: u64 = 10;
    const LATENESS_MS_MAX: u128 = 75;
    let broker = two_shards_with(&["--group-min-session-timeout-ms", "1000"]);
    let groups: Vec<String> = (0..)
        .map(|i| format!("expiring-{i}"))
        .filter(|g| group_shard(g, 2).0 == 0)
        .take(GROUPS)
        .collect();
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    let mut wire = Wire::connect(&broker.listeners()[0].address);
    let session_ms = SHORT_SESSION_MS as i32;
    let parked: Vec<i32> = names
        .iter()
        .enumerate()
        .map(|(i, g)| wire.send(5, static_join(g, &format!("instance-{i}"), session_ms)))
        .collect();
    let members: Vec<String> = parked
        .into_iter()
        .map(|id| join_response(wire.receive(ApiKey::JoinGroup, 5, id)))
        .map(|joined| {
            assert_eq!((joined.error_code, joined.generation_id), (0, 1));
            joined.member_id
        })
        .collect();
    for (group, member) in names.iter().zip(&members) {
        let assignment = [(member.as_str(), &b"all"[..])];
        assert_eq!(sync(&mut wire, group, member, 1, &assignment).0, 0);
    }
    // The last sign of life of each member: a heartbeat, SPACING_MS after the previous one.
    let start = std::time::Instant::now();
    let mut beats = Vec::with_capacity(GROUPS);
    for (i, (group, member)) in names.iter().zip(&members).enumerate() {
        let due = start + Duration::from_millis(SPACING_MS * i as u64);
        std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
        let sent = std::time::Instant::now();
        assert_eq!(heartbeat(&mut wire, group, member, 1), 0);
        beats.push((sent, std::time::Instant::now()));
    }
    let mut seen_empty: Vec<Option<std::time::Instant>> = vec![None; GROUPS];
    let give_up = std::time::Instant::now() + Duration::from_millis(3 * SHORT_SESSION_MS);
    while seen_empty.iter().any(Option::is_none) {
        assert!(
            std::time::Instant::now() < give_up,
            "sessions never expired"
        );
        let described = describe(&mut wire, &names);
        let now = std::time::Instant::now();
        for (seen, group) in seen_empty.iter_mut().zip(&described) {
            if seen.is_none() && group.group_state == "Empty" {
                *seen = Some(now);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let session = Duration::from_millis(SHORT_SESSION_MS);
    for (i, ((sent, answered), seen)) in beats.iter().zip(&seen_empty).enumerate() {
        let seen = seen.expect("seen Empty");
        assert!(seen >= *sent + session, "group {i} expired early");
        let lateness_ms = seen
            .saturating_duration_since(*answered + session)
            .as_millis();
        assert!(
            lateness_ms <= LATENESS_MS_MAX,
            "group {i} was still Stable {lateness_ms} ms after its session timeout"
        );
    }
    broker.stop();
}
