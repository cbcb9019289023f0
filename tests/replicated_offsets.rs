//! Consumer-group offsets in a three-broker cluster live in the replicated `__consumer_offsets`
//! topic (issue 13): a group's coordinator is the leader of its offsets partition, committed
//! offsets survive the SIGKILL of that leader's broker and are served by the next one, a Stable
//! group's members carry on at the next one without rejoining, and a leader checkpoints its
//! offsets so every replica drops the records the checkpoint replaces.

mod cluster_common;
mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use spate::protocol::messages::find_coordinator::FindCoordinatorRequest;
use spate::protocol::messages::heartbeat::HeartbeatRequest;
use spate::protocol::messages::join_group::{JoinGroupRequest, JoinGroupRequestProtocol};
use spate::protocol::messages::sync_group::{SyncGroupRequest, SyncGroupRequestAssignment};
use spate::protocol::{Request, Response};

use cluster_common::{Cluster, ClusterSpec, KafkaConnection, REQUEST_TIMEOUT, broker_of};
use common::TestConsumer;

const OFFSETS_TOPIC: &str = "__consumer_offsets";
const OFFSETS_PARTITIONS: u32 = 16;
const INVALID_TOPIC_EXCEPTION: i16 = 17;

/// One cluster at a time: each starts three brokers.
static CLUSTER_TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    CLUSTER_TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

fn connect(cluster: &Cluster, i: usize) -> KafkaConnection {
    KafkaConnection::connect(&cluster.broker_addresses(i)[0], REQUEST_TIMEOUT)
        .unwrap_or_else(|error| cluster.fail(&error))
}

/// A group member that commits by hand.
fn member(bootstrap: &str, group: &str) -> TestConsumer {
    common::client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create_with_context(common::TestContext::new(group))
        .expect("an rdkafka consumer")
}

fn offsets(topic: &str, committed: &[(i32, i64)]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for &(partition, offset) in committed {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("a valid offset");
    }
    list
}

/// Commits `committed` for `group`, retrying while the coordinator moves (a failover, the
/// offsets topic being created).
fn commit(cluster: &Cluster, group: &str, topic: &str, committed: &[(i32, i64)]) {
    let consumer = member(&cluster.bootstrap(), group);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        match consumer.commit(&offsets(topic, committed), CommitMode::Sync) {
            Ok(()) => return,
            Err(error) if Instant::now() < deadline => {
                eprintln!("{group}: commit: {error}; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => cluster.fail(&format!("{group}: commit: {error}")),
        }
    }
}

/// The group's committed offsets of `topic`'s `partitions`, read by a fresh member, retrying
/// while the coordinator moves or loads.
fn committed(cluster: &Cluster, group: &str, topic: &str, partitions: &[i32]) -> Vec<i64> {
    let consumer = member(&cluster.bootstrap(), group);
    let mut wanted = TopicPartitionList::new();
    for &partition in partitions {
        wanted.add_partition(topic, partition);
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        match consumer.committed_offsets(wanted.clone(), Duration::from_secs(5)) {
            Ok(list) => {
                return partitions
                    .iter()
                    .map(
                        |&p| match list.find_partition(topic, p).map(|e| e.offset()) {
                            Some(Offset::Offset(offset)) => offset,
                            _ => -1,
                        },
                    )
                    .collect();
            }
            Err(error) if Instant::now() < deadline => {
                eprintln!("{group}: committed offsets: {error}; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => cluster.fail(&format!("{group}: committed offsets: {error}")),
        }
    }
}

/// The broker leading the offsets partition of `group`, once the offsets topic has an elected
/// leader for every partition, as broker `at` sees it.
fn coordinator_broker(cluster: &Cluster, at: usize, group: &str, partitions: u32) -> usize {
    let metadata = cluster.metadata_wait(
        at,
        Duration::from_secs(30),
        "every offsets partition led by an elected leader",
        |m| {
            m.topic_ready(OFFSETS_TOPIC, partitions as usize)
                && m.topics[OFFSETS_TOPIC]
                    .partitions
                    .iter()
                    .all(|p| p.leader_epoch > 0 && p.replicas.len() == 3)
        },
    );
    let partition = spate::protocol::record_batch::crc32c(group.as_bytes()) % partitions;
    broker_of(metadata.leaders(OFFSETS_TOPIC)[partition as usize])
}

#[test]
fn committed_offsets_survive_the_loss_of_the_coordinators_broker() {
    // Proves a group's committed offsets are replicated: after the SIGKILL of the broker leading
    // its offsets partition (its coordinator), a fresh member reads every offset the group
    // committed from the next leader, commits again there, and the broker that returns serves
    // the latest offsets once it leads again. Clients may not write to the offsets topic.
    let _turn = turn();
    let mut cluster = Cluster::start(ClusterSpec::three());
    let topic = "events";
    assert_eq!(
        connect(&cluster, 1)
            .create_topic_with(topic, 2, 3, &[], 10_000)
            .map(|(code, _)| code),
        Ok(0)
    );
    let group = "survivor";
    commit(&cluster, group, topic, &[(0, 7), (1, 13)]);
    let coordinator = coordinator_broker(&cluster, 1, group, OFFSETS_PARTITIONS);
    assert_eq!(committed(&cluster, group, topic, &[0, 1]), vec![7, 13]);

    cluster.kill(coordinator);
    let killed = Instant::now();
    let survivor = (1..=3).find(|&b| b != coordinator).expect("another broker");
    assert_eq!(
        committed(&cluster, group, topic, &[0, 1]),
        vec![7, 13],
        "offsets after the coordinator's broker {coordinator} was killed"
    );
    eprintln!(
        "offsets served again {:?} after the SIGKILL of the coordinator's broker",
        killed.elapsed()
    );
    commit(&cluster, group, topic, &[(0, 9), (1, 15)]);
    let next = coordinator_broker(&cluster, survivor, group, OFFSETS_PARTITIONS);
    assert_ne!(next, coordinator, "a live broker coordinates the group");
    assert_eq!(committed(&cluster, group, topic, &[0, 1]), vec![9, 15]);

    cluster.restart(coordinator);
    cluster.wait_ready(Duration::from_secs(30));
    // The returning broker catches up, then a kill of the current coordinator hands the group
    // to a replica that must hold the commits made while the first one was down.
    std::thread::sleep(Duration::from_secs(2));
    cluster.kill(next);
    assert_eq!(
        committed(&cluster, group, topic, &[0, 1]),
        vec![9, 15],
        "offsets after broker {next} was killed too"
    );

    // A client cannot forge offset records.
    let leader = coordinator_broker(&cluster, coordinator, group, OFFSETS_PARTITIONS);
    let answer = connect(&cluster, leader).produce(OFFSETS_TOPIC, 0, &[b"forged".to_vec()], -1);
    assert_eq!(answer.map(|(code, _)| code), Ok(INVALID_TOPIC_EXCEPTION));
}

#[test]
fn an_offsets_checkpoint_drops_dead_records_on_every_replica() {
    // Proves the offsets log does not grow without bound: with the offsets topic created with
    // small segments, many commits of one partition make its leader checkpoint the live offsets
    // and move every replica's log start past the dead records, and the last committed offset
    // survives the SIGKILL of that leader.
    let _turn = turn();
    let mut cluster = Cluster::start(ClusterSpec::three());
    assert_eq!(
        connect(&cluster, 1)
            .create_topic_with(
                OFFSETS_TOPIC,
                1,
                3,
                &[("segment.bytes", "8192"), ("retention.ms", "-1")],
                10_000,
            )
            .map(|(code, _)| code),
        Ok(0)
    );
    let topic = "busy";
    assert_eq!(
        connect(&cluster, 1)
            .create_topic_with(topic, 1, 3, &[], 10_000)
            .map(|(code, _)| code),
        Ok(0)
    );
    let group = "committer";
    let consumer = member(&cluster.bootstrap(), group);
    let commits = 600;
    for offset in 1..=commits {
        let deadline = Instant::now() + Duration::from_secs(40);
        while let Err(error) = consumer.commit(&offsets(topic, &[(0, offset)]), CommitMode::Sync) {
            assert!(Instant::now() < deadline, "commit {offset}: {error}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    drop(consumer);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let firsts: Vec<i64> = (1..=3)
            .map(|i| first_segment(&cluster, i, OFFSETS_TOPIC))
            .collect();
        if firsts.iter().all(|&first| first > 0) {
            break;
        }
        if Instant::now() > deadline {
            cluster.fail(&format!("offsets replicas still start at {firsts:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let leader = coordinator_broker(&cluster, 1, group, 1);
    cluster.kill(leader);
    assert_eq!(committed(&cluster, group, topic, &[0]), vec![commits]);
}

/// The base offset of the first segment file of `topic`-0 in broker `i`'s data dir.
fn first_segment(cluster: &Cluster, i: usize, topic: &str) -> i64 {
    let dir = cluster.broker(i).data_dir().join(format!("{topic}-0"));
    std::fs::read_dir(&dir)
        .unwrap_or_else(|error| cluster.fail(&format!("{}: {error}", dir.display())))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".log")?.parse().ok()
        })
        .min()
        .unwrap_or(0)
}

const NONE: i16 = 0;
const MEMBER_ID_REQUIRED: i16 = 79;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const NOT_COORDINATOR: i16 = 16;

/// The coordinator of `group` as `at` names it: (broker, "host:port"), once it names one.
fn find_coordinator(cluster: &Cluster, at: usize, group: &str) -> (usize, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = connect(cluster, at).call(
            3,
            Request::FindCoordinator(FindCoordinatorRequest {
                key: group.into(),
                key_type: 0,
                ..FindCoordinatorRequest::default()
            }),
        );
        if let Ok(Response::FindCoordinator(found)) = answer
            && found.error_code == NONE
        {
            return (
                broker_of(found.node_id),
                format!("{}:{}", found.host, found.port),
            );
        }
        assert!(Instant::now() < deadline, "no coordinator for {group}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn call(address: &str, version: i16, request: Request) -> Response {
    KafkaConnection::connect(address, REQUEST_TIMEOUT)
        .and_then(|mut connection| connection.call(version, request))
        .unwrap_or_else(|error| panic!("{address}: {error}"))
}

#[test]
fn a_stable_group_keeps_its_members_when_its_coordinator_fails_over() {
    // Proves the coordinator keeps a Stable group's membership in the offsets topic, as Kafka
    // writes its group metadata: after the SIGKILL of the coordinator's broker, the member's
    // heartbeat at its generation is taken by the next coordinator and its SyncGroup answers
    // the same assignment, with no rejoin.
    let _turn = turn();
    let mut cluster = Cluster::start(ClusterSpec::three());
    let group = "keeper";
    let join = |member_id: &str| {
        Request::JoinGroup(JoinGroupRequest {
            group_id: group.into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            member_id: member_id.into(),
            protocol_type: "consumer".into(),
            protocols: vec![JoinGroupRequestProtocol {
                name: "range".into(),
                metadata: Bytes::from_static(b"subscription"),
            }],
            ..JoinGroupRequest::default()
        })
    };
    // The offsets topic is created by the first lookup; its leaders are elected and load.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (coordinator, address, first) = loop {
        let (coordinator, address) = find_coordinator(&cluster, 1, group);
        let Response::JoinGroup(first) = call(&address, 5, join("")) else {
            panic!("not a JoinGroup answer");
        };
        if ![COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR].contains(&first.error_code) {
            break (coordinator, address, first);
        }
        assert!(
            Instant::now() < deadline,
            "JoinGroup: error {}",
            first.error_code
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let member = first.member_id;
    let Response::JoinGroup(joined) = call(&address, 5, join(&member)) else {
        panic!("not a JoinGroup answer");
    };
    assert_eq!(joined.error_code, NONE);
    let generation = joined.generation_id;
    let sync = |address: &str| {
        let Response::SyncGroup(synced) = call(
            address,
            3,
            Request::SyncGroup(SyncGroupRequest {
                group_id: group.into(),
                generation_id: generation,
                member_id: member.clone(),
                assignments: vec![SyncGroupRequestAssignment {
                    member_id: member.clone(),
                    assignment: Bytes::from_static(b"assigned"),
                }],
                ..SyncGroupRequest::default()
            }),
        ) else {
            panic!("not a SyncGroup answer");
        };
        synced
    };
    let synced = sync(&address);
    assert_eq!(
        (synced.error_code, synced.assignment.as_ref()),
        (NONE, b"assigned".as_slice())
    );
    // The membership is written in the background once Stable.
    std::thread::sleep(Duration::from_secs(1));

    cluster.kill(coordinator);
    let killed = Instant::now();
    let survivor = (1..=3).find(|&b| b != coordinator).expect("another broker");
    let deadline = Instant::now() + Duration::from_secs(30);
    let next = loop {
        let (next, address) = find_coordinator(&cluster, survivor, group);
        if next != coordinator {
            let Response::Heartbeat(beat) = call(
                &address,
                3,
                Request::Heartbeat(HeartbeatRequest {
                    group_id: group.into(),
                    generation_id: generation,
                    member_id: member.clone(),
                    ..HeartbeatRequest::default()
                }),
            ) else {
                panic!("not a Heartbeat answer");
            };
            if beat.error_code == NONE {
                break address;
            }
            eprintln!("heartbeat at broker {next}: error {}", beat.error_code);
        }
        assert!(Instant::now() < deadline, "no coordinator took the member");
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "the member's heartbeat taken {:?} after the SIGKILL of the coordinator's broker",
        killed.elapsed()
    );
    let synced = sync(&next);
    assert_eq!(
        (synced.error_code, synced.assignment.as_ref()),
        (NONE, b"assigned".as_slice()),
        "the same generation's assignment at the new coordinator"
    );
}
