//! A replicated partition's write path below the broker: acks=all as a three-replica Raft group
//! (PartitionLogStore over the partition log, one executor per replica) beside RF=1 (one
//! partition log, append then fdatasync) in the same run, with the same batches and the same
//! number of writers. The group runs over the partition network (binary, multiplexed) and, for
//! comparison, over the controller's Raft network (JSON, one connection per group and peer).
//! Prints a markdown table for perf/RESULTS.md.
//!
//! `cargo bench --bench partition_replication` (about half a minute).
//! `SPATE_BENCH_SECONDS` sets each measurement's length (default 8), `SPATE_BENCH_WRITERS` the
//! concurrent writers (default 32), `SPATE_BENCH_BATCH_BYTES` the batch size (default 16 KiB).

#[path = "../tests/raft_common/mod.rs"]
mod raft_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::net::TcpListener;
use hdrhistogram::Histogram;
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use raft_common::{RaftNode, agreed_leader, next_command, spawn_executor};
use spate::config::{TopicConfig, TopicDefaults};
use spate::log::{PartitionLog, ShardCache};
use spate::protocol::records::{BatchBuilder, Record};
use spate::raft::network::{RaftNetwork, serve_raft};
use spate::raft::partition_network::{
    GroupKey, GroupNetwork, PartitionGroups, PeerLinks, serve_peer,
};
use spate::raft::partition_state_machine::PartitionStateMachine;
use spate::raft::partition_store::{PartitionLogStore, PartitionRaft, RecordBatch};
use spate::raft::vote_store::ShardVotes;

const STEP_LIMIT: Duration = Duration::from_secs(20);

/// What one measurement gives: batches acknowledged and each one's latency (microseconds).
struct Load {
    batches: u64,
    latencies_us: Vec<u64>,
}

enum Command {
    Initialize(BTreeMap<u64, BasicNode>, Sender<Result<(), String>>),
    Leader(Sender<Option<u64>>),
    Load(LoadSpec, Sender<Load>),
}

#[derive(Clone, Copy)]
struct LoadSpec {
    duration: Duration,
    writers: usize,
    batch_bytes: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn batch(bytes: usize) -> Bytes {
    let value = vec![b'x'; 240];
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    while builder.size_bytes() < bytes {
        builder.push(&Record {
            timestamp_delta: 0,
            key: None,
            value: Some(&value),
            headers: &[],
        });
    }
    builder.finish()
}

fn topic() -> TopicConfig {
    TopicConfig::from_defaults(&TopicDefaults::default())
}

/// Runs `spec` with `write` as the write of one batch: `writers` tasks in a loop.
async fn run_load<W, Fut>(spec: LoadSpec, write: W) -> Load
where
    W: Fn(Bytes) -> Fut + Clone + 'static,
    Fut: Future<Output = ()>,
{
    let payload = batch(spec.batch_bytes);
    let end = Instant::now() + spec.duration;
    let tasks: Vec<_> = (0..spec.writers)
        .map(|_| {
            let write = write.clone();
            let payload = payload.clone();
            glommio::spawn_local(async move {
                let mut latencies = Vec::new();
                while Instant::now() < end {
                    let started = Instant::now();
                    write(payload.clone()).await;
                    latencies.push(started.elapsed().as_micros() as u64);
                }
                latencies
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await);
    }
    Load {
        batches: latencies_us.len() as u64,
        latencies_us,
    }
}

/// RF=1: one partition log, each batch appended then waited for until fdatasync'ed.
fn measure_single(dir: PathBuf, spec: LoadSpec) -> Load {
    let (reply, answer) = channel();
    std::fs::create_dir_all(&dir).unwrap();
    spawn_executor(move || async move {
        spate::io::probe::write_probe_file(&dir).unwrap();
        spate::io::probe::probe_iopoll(&dir).await.unwrap();
        let log = PartitionLog::open(dir.join("p-0"), topic(), Rc::new(ShardCache::new(64 << 20)))
            .await
            .unwrap();
        let load = run_load(spec, {
            let log = log.clone();
            move |payload: Bytes| {
                let log = log.clone();
                async move {
                    let outcome = log.append_batch(payload, 0).unwrap();
                    log.wait_durable(&outcome).await.unwrap();
                }
            }
        })
        .await;
        log.close().await.unwrap();
        reply.send(load).unwrap();
    })
    .join()
    .unwrap();
    answer.recv().unwrap()
}

type Node = RaftNode<Command>;

/// Which network the group runs over.
#[derive(Clone, Copy)]
enum Transport {
    /// The partition network: bincode frames, one connection per peer for every group.
    Partition,
    /// The controller's Raft network: JSON frames, one connection per group and peer.
    Json,
}

async fn run_node(
    id: u64,
    dir: PathBuf,
    transport: Transport,
    inbox: Receiver<Command>,
    addr_tx: Sender<String>,
) {
    spate::io::probe::probe_iopoll(&dir).await.unwrap();
    let log = PartitionLog::open(dir.join("p-0"), topic(), Rc::new(ShardCache::new(64 << 20)))
        .await
        .unwrap();
    let votes = ShardVotes::open(&dir).await.unwrap();
    let store = PartitionLogStore::open(log, "p-0".to_owned(), votes)
        .await
        .unwrap();
    let state_machine =
        PartitionStateMachine::open(store.replica_log(), spate::log::signal::Signal::new())
            .await
            .unwrap();
    let config = Config {
        heartbeat_interval: 100,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        snapshot_policy: SnapshotPolicy::Never,
        ..Config::default()
    };
    let config = Arc::new(config.validate().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    addr_tx
        .send(listener.local_addr().unwrap().to_string())
        .unwrap();
    let (raft, server) = match transport {
        Transport::Partition => {
            let key = GroupKey {
                topic_id: [1; 16],
                partition: 0,
            };
            let network = GroupNetwork::new(key, id, PeerLinks::new(None), Rc::new(|_| None));
            let raft = Raft::new(id, config, network, store, state_machine)
                .await
                .unwrap();
            let groups = PartitionGroups::new();
            groups.insert(key, raft.clone());
            let server = glommio::spawn_local(async move {
                while let Ok(stream) = listener.accept().await {
                    glommio::spawn_local(serve_peer(stream, Rc::clone(&groups))).detach();
                }
            });
            (raft, server)
        }
        Transport::Json => {
            let network = RaftNetwork::<PartitionRaft>::new(id);
            let raft = Raft::new(id, config, network, store, state_machine)
                .await
                .unwrap();
            let server = glommio::spawn_local(serve_raft(listener, raft.clone()));
            (raft, server)
        }
    };
    while let Some(command) = next_command(&inbox).await {
        match command {
            Command::Initialize(members, reply) => {
                let result = raft.initialize(members).await;
                let _ = reply.send(result.map_err(|error| error.to_string()));
            }
            Command::Leader(reply) => {
                let _ = reply.send(raft.current_leader().await);
            }
            Command::Load(spec, reply) => {
                let load = run_load(spec, {
                    let raft = raft.clone();
                    move |payload: Bytes| {
                        let raft = raft.clone();
                        async move {
                            raft.client_write(RecordBatch(payload)).await.unwrap();
                        }
                    }
                })
                .await;
                let _ = reply.send(load);
            }
        }
    }
    raft.shutdown().await.unwrap();
    drop(server);
}

/// RF=3: a three-replica group on three executors, the load on the leader.
fn measure_replicated(root: &Path, transport: Transport, spec: LoadSpec) -> Load {
    let nodes: Vec<Node> = (1..=3)
        .map(|id| {
            let dir = root.join(format!("replica-{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.clone();
            Node::start(id, &path, STEP_LIMIT, move |inbox, addr_tx| {
                run_node(id, dir, transport, inbox, addr_tx)
            })
        })
        .collect();
    let members: BTreeMap<u64, BasicNode> = nodes
        .iter()
        .map(|node| (node.id, BasicNode::new(&node.addr)))
        .collect();
    nodes[0]
        .ask(|reply| Command::Initialize(members, reply))
        .unwrap();
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&all, Command::Leader, STEP_LIMIT);
    let leader = nodes.iter().find(|node| node.id == leader).unwrap();
    let load = leader.ask_within(
        |reply| Command::Load(spec, reply),
        spec.duration + STEP_LIMIT,
    );
    for node in nodes {
        node.stop();
    }
    load
}

fn row(name: &str, spec: LoadSpec, load: &Load) -> String {
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    for &latency in &load.latencies_us {
        histogram.record(latency.max(1)).unwrap();
    }
    let seconds = spec.duration.as_secs_f64();
    let mb_per_s = load.batches as f64 * spec.batch_bytes as f64 / seconds / 1e6;
    format!(
        "| {name} | {:.0} | {mb_per_s:.1} | {:.2} | {:.2} |",
        load.batches as f64 / seconds,
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
    )
}

fn main() {
    let spec = LoadSpec {
        duration: Duration::from_secs(env_or("SPATE_BENCH_SECONDS", 8)),
        writers: env_or("SPATE_BENCH_WRITERS", 32),
        batch_bytes: env_or("SPATE_BENCH_BATCH_BYTES", 16 * 1024),
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-data")
        .join(format!("partition-replication-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let single = measure_single(root.join("single"), spec);
    let replicated = measure_replicated(&root.join("partition"), Transport::Partition, spec);
    let replicated_json = measure_replicated(&root.join("json"), Transport::Json, spec);
    let _ = std::fs::remove_dir_all(&root);
    println!(
        "{} writers, batches of {} bytes, {} s each",
        spec.writers,
        spec.batch_bytes,
        spec.duration.as_secs()
    );
    println!("| write path | batches/s | MB/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    println!("{}", row("RF=1: append + fdatasync", spec, &single));
    println!(
        "{}",
        row(
            "RF=3: Raft commit on 2 of 3 (fdatasync each), partition network",
            spec,
            &replicated
        )
    );
    println!(
        "{}",
        row(
            "RF=3: the same over the controller's JSON network",
            spec,
            &replicated_json
        )
    );
}
