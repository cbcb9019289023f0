//! One replicated partition as a three-replica Raft group (openraft over our network, the
//! partition log as the Raft log, each replica on its own thread and executor): the leader's
//! batches reach every replica byte for byte at the same offsets, the commit point (high
//! watermark) moves on all three, the group survives the loss of its leader, and the old leader
//! comes back, repairs its log from the new leader and holds the same bytes again. Many groups
//! share one connection per pair of replicas (the partition network).

mod raft_common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::net::TcpListener;
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use raft_common::{RaftNode, TestDir, next_command};
use spate::config::{TopicConfig, TopicDefaults};
use spate::log::{LogError, PartitionLog, ShardCache};
use spate::protocol::control_batch;
use spate::protocol::record_batch::{self, BatchIter, RECORD_BATCH_HEADER_BYTES};
use spate::protocol::records::{BatchBuilder, Record, RecordIter};
use spate::raft::partition_network::{
    GroupKey, GroupNetwork, PartitionGroups, PeerLinks, ResolveMember, serve_peer,
};
use spate::raft::partition_state_machine::PartitionStateMachine;
use spate::raft::partition_store::{PartitionLogStore, RecordBatch, ReplicaLog};
use spate::raft::vote_store::ShardVotes;

/// How long the test waits for any one step (election, replication, a reply).
const STEP_LIMIT: Duration = Duration::from_secs(10);

enum Command {
    Initialize(BTreeMap<u64, BasicNode>, Sender<Result<(), String>>),
    Write(Vec<String>, Sender<Result<(), String>>),
    /// Proposes a batch without waiting for its commit (a leader without a quorum).
    Propose(Vec<String>, Sender<()>),
    /// The log end.
    LogEnd(Sender<i64>),
    Leader(Sender<Option<u64>>),
    /// The commit point and the log's bytes below it.
    Committed(Sender<(i64, Bytes)>),
    /// Every group's leader, by group.
    GroupLeaders(Sender<Vec<Option<u64>>>),
    /// Writes one batch to every group this node leads; how many it wrote.
    WriteLed(Sender<Result<usize, String>>),
    /// Every group's commit point, by group.
    GroupsCommitted(Sender<Vec<i64>>),
    /// Replication connections this node has open to its peers.
    Connections(Sender<usize>),
}

type Node = RaftNode<Command>;

impl Node {
    /// Starts replica `id` of one group on its files in `dir`, its server on `port` (0: any).
    fn start_in(id: u64, dir: PathBuf, port: u16) -> Self {
        Self::start_groups(id, dir, port, 1)
    }

    /// Starts replica `id` of `groups` groups (partitions 0..groups of one topic).
    fn start_groups(id: u64, dir: PathBuf, port: u16, groups: usize) -> Self {
        let path = dir.clone();
        Node::start(id, &path, STEP_LIMIT, move |inbox, addr_tx| {
            run_node(id, dir, port, groups, inbox, addr_tx)
        })
    }
}

fn batch(values: &[String]) -> Bytes {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for value in values {
        builder.push(&Record {
            timestamp_delta: 0,
            key: None,
            value: Some(value.as_bytes()),
            headers: &[],
        });
    }
    builder.finish()
}

/// The log's bytes below `end`, read again from its start when a truncation (a restarted old
/// leader repairing its tail) replaced the log during the read.
async fn log_bytes(replica: &ReplicaLog, end: i64) -> Bytes {
    loop {
        match log_bytes_of(&replica.log(), end).await {
            Ok(bytes) => return bytes,
            Err(LogError::Closed) => glommio::timer::sleep(Duration::from_millis(10)).await,
            Err(error) => panic!("reading the log: {error}"),
        }
    }
}

async fn log_bytes_of(log: &PartitionLog, end: i64) -> Result<Bytes, LogError> {
    let mut bytes = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < end {
        let chunks = log.read(offset, 1 << 20).await?;
        for batch in BatchIter::new(Bytes::from(chunks.concat())) {
            let batch = batch.unwrap();
            let header = record_batch::header(&batch).unwrap();
            let base = header.base_offset.get();
            if base < offset || base >= end {
                continue;
            }
            offset = base + i64::from(header.last_offset_delta.get()) + 1;
            bytes.extend_from_slice(&batch);
        }
    }
    Ok(Bytes::from(bytes))
}

async fn run_node(
    id: u64,
    dir: PathBuf,
    port: u16,
    group_count: usize,
    inbox: Receiver<Command>,
    addr_tx: Sender<String>,
) {
    spate::io::probe::probe_iopoll(&dir).await.unwrap();
    let votes = ShardVotes::open(&dir).await.unwrap();
    let groups = PartitionGroups::new();
    let links = PeerLinks::new(None);
    // Members are dialled at their membership addresses.
    let resolve: ResolveMember = Rc::new(|_| None);
    let mut replicas = Vec::new();
    for partition in 0..group_count {
        let topic = TopicConfig::from_defaults(&TopicDefaults::default());
        let name = format!("p-{partition}");
        let log = PartitionLog::open(dir.join(&name), topic, Rc::new(ShardCache::new(1 << 20)))
            .await
            .unwrap();
        let store = PartitionLogStore::open(log, name, votes.clone())
            .await
            .unwrap();
        let replica = store.replica_log();
        let state_machine =
            PartitionStateMachine::open(replica.clone(), spate::log::signal::Signal::new())
                .await
                .unwrap();
        let config = Config {
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            snapshot_policy: SnapshotPolicy::Never,
            ..Config::default()
        };
        let key = GroupKey {
            topic_id: [7; 16],
            partition: partition as u32,
        };
        let network = GroupNetwork::new(key, id, Rc::clone(&links), Rc::clone(&resolve));
        let raft = Raft::new(
            id,
            Arc::new(config.validate().unwrap()),
            network,
            store,
            state_machine.clone(),
        )
        .await
        .unwrap();
        groups.insert(key, raft.clone());
        replicas.push((raft, replica, state_machine));
    }
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).unwrap();
    addr_tx
        .send(listener.local_addr().unwrap().to_string())
        .unwrap();
    let server = {
        let groups = Rc::clone(&groups);
        glommio::spawn_local(async move {
            while let Ok(stream) = listener.accept().await {
                glommio::spawn_local(serve_peer(stream, Rc::clone(&groups))).detach();
            }
        })
    };
    let (raft, replica, state_machine) = replicas[0].clone();
    while let Some(command) = next_command(&inbox).await {
        match command {
            Command::Initialize(members, reply) => {
                let mut result = Ok(());
                for (raft, _, _) in &replicas {
                    if let Err(error) = raft.initialize(members.clone()).await {
                        result = Err(error.to_string());
                    }
                }
                let _ = reply.send(result);
            }
            Command::Write(values, reply) => {
                let result = raft.client_write(RecordBatch(batch(&values))).await;
                let _ = reply.send(result.map(|_| ()).map_err(|error| error.to_string()));
            }
            Command::Propose(values, reply) => {
                let raft = raft.clone();
                glommio::spawn_local(async move {
                    let _ = raft.client_write(RecordBatch(batch(&values))).await;
                })
                .detach();
                let _ = reply.send(());
            }
            Command::LogEnd(reply) => {
                let _ = reply.send(replica.log().log_end_offset());
            }
            Command::Leader(reply) => {
                let _ = reply.send(raft.current_leader().await);
            }
            Command::Committed(reply) => {
                let committed = state_machine.committed_offset();
                let bytes = log_bytes(&replica, committed).await;
                let _ = reply.send((committed, bytes));
            }
            Command::GroupLeaders(reply) => {
                let mut leaders = Vec::new();
                for (raft, _, _) in &replicas {
                    leaders.push(raft.current_leader().await);
                }
                let _ = reply.send(leaders);
            }
            Command::WriteLed(reply) => {
                let mut writes = Vec::new();
                for (partition, (raft, _, _)) in replicas.iter().enumerate() {
                    if raft.current_leader().await == Some(id) {
                        let raft = raft.clone();
                        let values = vec![format!("group-{partition}")];
                        writes.push(glommio::spawn_local(async move {
                            raft.client_write(RecordBatch(batch(&values))).await
                        }));
                    }
                }
                let mut result = Ok(writes.len());
                for write in writes {
                    if let Err(error) = write.await {
                        result = Err(error.to_string());
                    }
                }
                let _ = reply.send(result);
            }
            Command::GroupsCommitted(reply) => {
                let committed = replicas
                    .iter()
                    .map(|(_, _, state_machine)| state_machine.committed_offset())
                    .collect();
                let _ = reply.send(committed);
            }
            Command::Connections(reply) => {
                let _ = reply.send(links.open_connections());
            }
        }
    }
    for (raft, _, _) in &replicas {
        raft.shutdown().await.unwrap();
    }
    drop(server);
}

fn agreed_leader(nodes: &[&Node]) -> u64 {
    raft_common::agreed_leader(nodes, Command::Leader, STEP_LIMIT)
}

/// Writes `count` batches of two records through `leader`; the values written.
fn write_batches(leader: &Node, tag: &str, count: usize) -> Vec<String> {
    let mut written = Vec::new();
    for i in 0..count {
        let values = vec![format!("{tag}-{i}-a"), format!("{tag}-{i}-b")];
        leader
            .ask(|reply| Command::Write(values.clone(), reply))
            .unwrap_or_else(|error| panic!("write {tag}-{i} to node {}: {error}", leader.id));
        written.extend(values);
    }
    written
}

/// Waits until every node's commit point is at least `end` and their logs below it are
/// identical; returns those bytes.
fn same_log_on_all(nodes: &[&Node], end: i64) -> Bytes {
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        let seen: Vec<(i64, Bytes)> = nodes
            .iter()
            .map(|node| node.ask(Command::Committed))
            .collect();
        if seen.iter().all(|(committed, _)| *committed >= end) {
            let clipped: Vec<Bytes> = seen.iter().map(|(_, bytes)| bytes.clone()).collect();
            let shortest = clipped.iter().map(Bytes::len).min().unwrap();
            let first = clipped[0].slice(..shortest);
            for (node, bytes) in nodes.iter().zip(&clipped) {
                assert_eq!(bytes.slice(..shortest), first, "node {} differs", node.id);
            }
            return first;
        }
        assert!(
            Instant::now() < deadline,
            "commit points {:?} did not reach {end}",
            seen.iter()
                .map(|(committed, _)| *committed)
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The data records' values in `log` (control batches skipped), and the control batch count.
fn values_of(log: &Bytes) -> (Vec<String>, usize) {
    let mut values = Vec::new();
    let mut controls = 0;
    for batch in BatchIter::new(log.clone()) {
        let batch = batch.unwrap();
        if control_batch::parse(&batch).unwrap().is_some() {
            controls += 1;
            continue;
        }
        let header = record_batch::header(&batch).unwrap();
        let records = RecordIter::new(
            batch.slice(RECORD_BATCH_HEADER_BYTES..),
            header.records_count.get(),
        );
        for record in records {
            values.push(String::from_utf8(record.unwrap().value.unwrap().to_vec()).unwrap());
        }
    }
    (values, controls)
}

fn committed_of(node: &Node) -> i64 {
    node.ask(Command::Committed).0
}

#[test]
fn a_partition_replicates_byte_for_byte_and_survives_the_loss_of_its_leader() {
    // Proves the replicated partition end to end below the broker: entries replicate as the
    // same bytes at the same offsets on all three replicas, the commit point moves on each,
    // a new leader is elected within bounds after the leader's executor stops and keeps
    // committing, and the old leader, restarted on its files, catches up to the same bytes.
    let dir = TestDir::new("raft-partition-group");
    let dirs: Vec<PathBuf> = (0..3).map(|_| dir.sub_dir()).collect();
    let mut nodes: Vec<Node> = (1..=3)
        .map(|id| Node::start_in(id, dirs[id as usize - 1].clone(), 0))
        .collect();
    let members: BTreeMap<u64, BasicNode> = nodes
        .iter()
        .map(|node| (node.id, BasicNode::new(&node.addr)))
        .collect();
    nodes[0]
        .ask(|reply| Command::Initialize(members, reply))
        .unwrap();
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&all);
    let leader_node = nodes.iter().find(|node| node.id == leader).unwrap();
    let mut expected = write_batches(leader_node, "first", 30);
    let end = committed_of(leader_node);
    let log = same_log_on_all(&all, end);
    let (values, _) = values_of(&log);
    assert_eq!(values, expected);

    let position = nodes.iter().position(|node| node.id == leader).unwrap();
    let old = nodes.remove(position);
    let old_port = old.port();
    let stopping = Instant::now();
    old.stop();
    let survivors: Vec<&Node> = nodes.iter().collect();
    let new_leader = agreed_leader(&survivors);
    let failover = stopping.elapsed();
    assert_ne!(new_leader, leader);
    let leader_node = nodes.iter().find(|node| node.id == new_leader).unwrap();
    expected.extend(write_batches(leader_node, "second", 30));
    let end = committed_of(leader_node);
    same_log_on_all(&survivors, end);

    // The old leader comes back on its files and its address, and catches up.
    nodes.push(Node::start_in(
        leader,
        dirs[leader as usize - 1].clone(),
        old_port,
    ));
    let all: Vec<&Node> = nodes.iter().collect();
    let log = same_log_on_all(&all, end);
    let (values, controls) = values_of(&log);
    assert_eq!(values, expected);
    // A blank entry per term with a leader, and the initial membership.
    assert!(controls >= 3, "{controls} control batches");
    eprintln!(
        "failover in {failover:?}; {} bytes identical on 3 replicas",
        log.len()
    );
    for node in nodes {
        node.stop();
    }
}

#[test]
fn a_leader_cut_off_with_uncommitted_batches_loses_them_and_takes_the_new_log() {
    // Proves log repair through Raft: a leader whose followers are gone appends batches no one
    // else has (never committed); after it stops, the followers elect a leader of a new term and
    // commit other batches; the old leader, restarted, truncates its uncommitted tail and ends
    // up with exactly the new leader's bytes, and no replica ever committed the lost batches.
    let dir = TestDir::new("raft-partition-repair");
    let dirs: Vec<PathBuf> = (0..3).map(|_| dir.sub_dir()).collect();
    let nodes: Vec<Node> = (1..=3)
        .map(|id| Node::start_in(id, dirs[id as usize - 1].clone(), 0))
        .collect();
    let members: BTreeMap<u64, BasicNode> = nodes
        .iter()
        .map(|node| (node.id, BasicNode::new(&node.addr)))
        .collect();
    let ports: BTreeMap<u64, u16> = nodes.iter().map(|node| (node.id, node.port())).collect();
    nodes[0]
        .ask(|reply| Command::Initialize(members, reply))
        .unwrap();
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&all);
    let leader_node = nodes.iter().find(|node| node.id == leader).unwrap();
    let mut expected = write_batches(leader_node, "first", 10);
    let committed = committed_of(leader_node);
    same_log_on_all(&all, committed);

    // Both followers go; the leader appends batches it can never commit.
    let (followers, mut rest): (Vec<Node>, Vec<Node>) =
        nodes.into_iter().partition(|node| node.id != leader);
    let old = rest.pop().unwrap();
    for follower in followers {
        follower.stop();
    }
    for i in 0..5 {
        old.ask(|reply| Command::Propose(vec![format!("lost-{i}")], reply));
    }
    let deadline = Instant::now() + STEP_LIMIT;
    while old.ask(Command::LogEnd) < committed + 5 {
        assert!(Instant::now() < deadline, "the proposals were not appended");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        committed_of(&old),
        committed,
        "nothing commits without a quorum"
    );
    old.stop();

    // The followers come back, elect a leader of a new term and commit other batches.
    let mut nodes: Vec<Node> = (1..=3u64)
        .filter(|id| *id != leader)
        .map(|id| Node::start_in(id, dirs[id as usize - 1].clone(), ports[&id]))
        .collect();
    let survivors: Vec<&Node> = nodes.iter().collect();
    let new_leader = agreed_leader(&survivors);
    let leader_node = nodes.iter().find(|node| node.id == new_leader).unwrap();
    expected.extend(write_batches(leader_node, "third", 10));
    let end = committed_of(leader_node);

    nodes.push(Node::start_in(
        leader,
        dirs[leader as usize - 1].clone(),
        ports[&leader],
    ));
    let all: Vec<&Node> = nodes.iter().collect();
    let log = same_log_on_all(&all, end);
    let (values, _) = values_of(&log);
    assert_eq!(
        values, expected,
        "the uncommitted batches are gone everywhere"
    );
    let deadline = Instant::now() + STEP_LIMIT;
    let returned = nodes.last().unwrap();
    while returned.ask(Command::LogEnd) != end {
        assert!(
            Instant::now() < deadline,
            "the old leader kept its uncommitted tail"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for node in nodes {
        node.stop();
    }
}

#[test]
fn many_groups_share_one_connection_per_pair_of_replicas() {
    // Proves the partition network multiplexes: 40 groups on three replicas each elect a
    // leader, commit a batch on every replica, and a replica holds one connection to each peer
    // it sent to (two for a replica leading any group), not one per group.
    const GROUPS: usize = 40;
    let dir = TestDir::new("raft-partition-groups");
    let nodes: Vec<Node> = (1..=3)
        .map(|id| Node::start_groups(id, dir.sub_dir(), 0, GROUPS))
        .collect();
    let members: BTreeMap<u64, BasicNode> = nodes
        .iter()
        .map(|node| (node.id, BasicNode::new(&node.addr)))
        .collect();
    nodes[0]
        .ask(|reply| Command::Initialize(members, reply))
        .unwrap();
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        let leaders: Vec<Vec<Option<u64>>> = nodes
            .iter()
            .map(|node| node.ask(Command::GroupLeaders))
            .collect();
        let agreed = (0..GROUPS).all(|group| {
            leaders[0][group].is_some()
                && leaders.iter().all(|seen| seen[group] == leaders[0][group])
        });
        if agreed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "groups without an agreed leader: {leaders:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let written: Vec<usize> = nodes
        .iter()
        .map(|node| node.ask(Command::WriteLed).unwrap())
        .collect();
    assert_eq!(
        written.iter().sum::<usize>(),
        GROUPS,
        "every group led by exactly one node"
    );
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        let committed: Vec<Vec<i64>> = nodes
            .iter()
            .map(|node| node.ask(Command::GroupsCommitted))
            .collect();
        // Initial membership, the leader's blank entry, then the batch: at least 3 offsets.
        if committed.iter().flatten().all(|end| *end >= 3) {
            break;
        }
        assert!(Instant::now() < deadline, "commit points {committed:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    for (node, led) in nodes.iter().zip(&written) {
        let connections = node.ask(Command::Connections);
        assert!(
            connections <= 2 && (*led == 0 || connections == 2),
            "node {} leads {led} groups and holds {connections} connections for {GROUPS}",
            node.id
        );
    }
    for node in nodes {
        node.stop();
    }
}
