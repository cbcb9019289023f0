//! A three-node Raft cluster over the real network (src/raft/network.rs), the real log storage
//! and the glommio runtime, each node on its own thread and executor: openraft elects a leader,
//! replicates writes to every node, and after the leader's executor is stopped elects another
//! among the survivors, which keeps accepting writes.

mod raft_common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use openraft::{BasicNode, Config, Raft};
use raft_common::{RaftNode, TestConfig, TestDir, TestStateMachine, next_command};
use spate::raft::log_store::RaftLogStore;
use spate::raft::network::{RaftNetwork, SERVER_CONNECTIONS_MAX, serve_raft};

const WRITE_BYTES_MAX: u64 = 64 * 1024;

/// How long the test waits for any one step (election, replication, a reply).
const STEP_LIMIT: Duration = Duration::from_secs(5);

/// What the test thread asks a node's executor to do.
enum Command {
    Initialize(BTreeMap<u64, BasicNode>, Sender<Result<(), String>>),
    Write(String, Sender<Result<(), String>>),
    Leader(Sender<Option<u64>>),
    Applied(Sender<Vec<String>>),
    /// Builds a snapshot and purges the log it covers.
    Compact(Sender<Result<(), String>>),
    AddLearner(u64, BasicNode, Sender<Result<(), String>>),
}

type Node = RaftNode<Command>;

impl Node {
    /// Starts node `id` with its log in `dir`.
    fn start_in(id: u64, dir: PathBuf) -> Self {
        let path = dir.clone();
        Node::start(id, &path, STEP_LIMIT, move |inbox, addr_tx| {
            run_node(id, dir, inbox, addr_tx)
        })
    }
}

async fn run_node(id: u64, dir: PathBuf, inbox: Receiver<Command>, addr_tx: Sender<String>) {
    spate::io::probe::probe_iopoll(&dir).await.unwrap();
    let store = RaftLogStore::<TestConfig>::open(&dir, WRITE_BYTES_MAX)
        .await
        .unwrap();
    let state_machine = TestStateMachine::default();
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        ..Config::default()
    };
    let raft = Raft::new(
        id,
        Arc::new(config.validate().unwrap()),
        RaftNetwork::<TestConfig>::new(id),
        store,
        state_machine.clone(),
    )
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    addr_tx
        .send(listener.local_addr().unwrap().to_string())
        .unwrap();
    let server = glommio::spawn_local(serve_raft(listener, raft.clone()));
    while let Some(command) = next_command(&inbox).await {
        match command {
            Command::Initialize(members, reply) => {
                let result = raft.initialize(members).await;
                let _ = reply.send(result.map_err(|error| error.to_string()));
            }
            Command::Write(data, reply) => {
                let result = raft.client_write(data).await;
                let _ = reply.send(result.map(|_| ()).map_err(|error| error.to_string()));
            }
            Command::Leader(reply) => {
                let _ = reply.send(raft.current_leader().await);
            }
            Command::Applied(reply) => {
                let _ = reply.send(state_machine.applied_data());
            }
            Command::Compact(reply) => {
                let _ = reply.send(compact(&raft).await);
            }
            Command::AddLearner(learner, node, reply) => {
                let result = raft.add_learner(learner, node, true).await;
                let _ = reply.send(result.map(|_| ()).map_err(|error| error.to_string()));
            }
        }
    }
    raft.shutdown().await.unwrap();
    drop(server);
}

async fn compact(raft: &Raft<TestConfig, TestStateMachine>) -> Result<(), String> {
    let wait = raft.wait(Some(STEP_LIMIT / 2));
    raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
    let snapshot = wait
        .metrics(|metrics| metrics.snapshot.is_some(), "snapshot")
        .await
        .map_err(|error| error.to_string())?
        .snapshot
        .expect("waited for");
    raft.trigger()
        .purge_log(snapshot.index)
        .await
        .map_err(|error| error.to_string())?;
    wait.metrics(|metrics| metrics.purged == Some(snapshot), "purged")
        .await
        .map_err(|error| error.to_string())?;
    Ok(())
}

/// Waits until every node in `nodes` names the same leader, one of `nodes`; returns it.
fn agreed_leader(nodes: &[&Node]) -> u64 {
    raft_common::agreed_leader(nodes, Command::Leader, STEP_LIMIT)
}

/// Waits until every node in `nodes` has applied exactly `expected`.
fn wait_applied(nodes: &[&Node], expected: &[String]) {
    let deadline = Instant::now() + STEP_LIMIT;
    for node in nodes {
        loop {
            let applied = node.ask(Command::Applied);
            if applied == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} applied {} of {} entries",
                node.id,
                applied.len(),
                expected.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn write(leader: &Node, data: &str) {
    leader
        .ask(|reply| Command::Write(data.to_owned(), reply))
        .unwrap_or_else(|error| panic!("write {data} to node {}: {error}", leader.id));
}

#[test]
fn three_nodes_replicate_and_survive_the_loss_of_the_leader() {
    // Proves openraft runs over our network and storage end to end: election, replication to
    // every node, and after the leader's executor (Raft, listener, connections) is gone, a new
    // leader among the two survivors within a bounded time, which keeps committing writes.
    let started = Instant::now();
    let dir = TestDir::new("raft-cluster");
    let mut nodes: Vec<Node> = (1..=3)
        .map(|id| Node::start_in(id, dir.sub_dir()))
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
    let elected = started.elapsed();
    let mut expected = Vec::new();
    let leader_node = nodes.iter().find(|node| node.id == leader).unwrap();
    for i in 0..20 {
        let data = format!("first-{i}");
        write(leader_node, &data);
        expected.push(data);
    }
    wait_applied(&all, &expected);
    let replicated = started.elapsed();

    let position = nodes.iter().position(|node| node.id == leader).unwrap();
    let stopping = Instant::now();
    nodes.remove(position).stop();
    let survivors: Vec<&Node> = nodes.iter().collect();
    let new_leader = agreed_leader(&survivors);
    let failover = stopping.elapsed();
    assert_ne!(new_leader, leader);
    let leader_node = nodes.iter().find(|node| node.id == new_leader).unwrap();
    for i in 0..20 {
        let data = format!("second-{i}");
        write(leader_node, &data);
        expected.push(data);
    }
    wait_applied(&survivors, &expected);
    for node in nodes {
        node.stop();
    }
    eprintln!(
        "elected after {elected:?}, 20 writes on all 3 after {replicated:?}, \
         failover in {failover:?}, total {:?}",
        started.elapsed()
    );
    assert!(failover < STEP_LIMIT);
}

/// Sends `bytes` on a fresh connection to `addr` and reports whether the server closed it
/// (read end of stream or a reset) without answering.
fn closed_without_answer(addr: &str, bytes: &[u8]) -> bool {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STEP_LIMIT)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => answer.is_empty(),
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn hostile_frames_close_their_connection_and_the_node_keeps_serving() {
    // Proves the server bounds what it reads: an oversized length, a length too short for the
    // header, an unknown kind and an undecodable body each close that connection without an
    // answer (no panic, no allocation of the claimed size), and the node still commits writes.
    let dir = TestDir::new("raft-hostile");
    let node = Node::start_in(1, dir.sub_dir());
    let members = BTreeMap::from([(1, BasicNode::new(&node.addr))]);
    node.ask(|reply| Command::Initialize(members, reply))
        .unwrap();
    assert_eq!(agreed_leader(&[&node]), 1);

    let frame = |length: u32, kind: u8, body: &[u8]| {
        let mut bytes = length.to_be_bytes().to_vec();
        bytes.push(kind);
        bytes.extend_from_slice(&7u64.to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    };
    let body = b"{\"not\":\"a request\"}";
    let fitting = (1 + 8 + body.len()) as u32;
    let oversized = frame(u32::MAX, 1, body);
    let too_short = 3u32
        .to_be_bytes()
        .iter()
        .copied()
        .chain([1, 2, 3])
        .collect();
    let unknown_kind = frame(fitting, 0x42, body);
    let bad_body = frame(fitting, 1, body);
    for (what, bytes) in [
        ("oversized", oversized),
        ("too short", too_short),
        ("unknown kind", unknown_kind),
        ("bad body", bad_body),
    ] {
        assert!(closed_without_answer(&node.addr, &bytes), "{what}");
    }

    write(&node, "after");
    wait_applied(&[&node], &["after".to_owned()]);
    node.stop();
}

/// Opens a connection to `addr` that sends half a frame header and reports whether the server
/// keeps it open waiting for the rest (it is being served) rather than closing it at once.
fn held_open(addr: &str) -> bool {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(&[0, 0]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    matches!(
        stream.read(&mut byte),
        Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    )
}

#[test]
fn a_flood_of_connections_is_capped_and_the_node_keeps_committing() {
    // Proves strangers cannot hold the server's connections without bound: while
    // SERVER_CONNECTIONS_MAX connections sit open (each claiming a 60 MiB frame it never
    // sends), one more is closed at once, the node still commits, and connections are served
    // again once the flood goes away.
    use std::io::Write;
    let dir = TestDir::new("raft-flood");
    let node = Node::start_in(1, dir.sub_dir());
    let members = BTreeMap::from([(1, BasicNode::new(&node.addr))]);
    node.ask(|reply| Command::Initialize(members, reply))
        .unwrap();
    assert_eq!(agreed_leader(&[&node]), 1);
    assert!(
        held_open(&node.addr),
        "a connection is served before the flood"
    );
    let flood: Vec<std::net::TcpStream> = (0..SERVER_CONNECTIONS_MAX)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&node.addr).unwrap();
            stream.write_all(&(60u32 << 20).to_be_bytes()).unwrap();
            stream
        })
        .collect();
    let deadline = std::time::Instant::now() + STEP_LIMIT;
    while held_open(&node.addr) {
        assert!(
            std::time::Instant::now() < deadline,
            "a connection over the cap stayed open"
        );
    }
    write(&node, "during");
    drop(flood);
    let deadline = std::time::Instant::now() + STEP_LIMIT;
    while !held_open(&node.addr) {
        assert!(
            std::time::Instant::now() < deadline,
            "no connection served after the flood"
        );
    }
    wait_applied(&[&node], &["during".to_owned()]);
    node.stop();
}

#[test]
fn a_learner_behind_a_purged_log_catches_up_by_snapshot_over_the_network() {
    // Proves the full-snapshot RPC: the leader's log before its snapshot is purged, so a new
    // learner can only get those entries as a snapshot sent through the network and installed
    // in its state machine; later entries follow by AppendEntries.
    let dir = TestDir::new("raft-snapshot");
    let leader = Node::start_in(1, dir.sub_dir());
    let learner = Node::start_in(2, dir.sub_dir());
    let members = BTreeMap::from([(1, BasicNode::new(&leader.addr))]);
    leader
        .ask(|reply| Command::Initialize(members, reply))
        .unwrap();
    assert_eq!(agreed_leader(&[&leader]), 1);
    let mut expected = Vec::new();
    for i in 0..10 {
        let data = format!("before-{i}");
        write(&leader, &data);
        expected.push(data);
    }
    leader.ask(Command::Compact).unwrap();
    leader
        .ask(|reply| Command::AddLearner(2, BasicNode::new(&learner.addr), reply))
        .unwrap();
    write(&leader, "after");
    expected.push("after".to_owned());
    wait_applied(&[&leader, &learner], &expected);
    learner.stop();
    leader.stop();
}
