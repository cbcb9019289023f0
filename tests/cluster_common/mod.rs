//! The cluster test harness: N `spate serve` processes on loopback, broker i (1-based) on host
//! 127.0.1.i, that tests can SIGKILL, SIGSTOP, restart, and cut off from each other.
//!
//! Guarantees:
//! - each broker has its own data directory under `target/test-data/` (ext4 here; tmpfs breaks
//!   O_DIRECT) and its stdout and stderr in `stdout.log` and `stderr.log` beside it;
//! - every wait is bounded and fails with the tails of every broker's logs;
//! - `Drop` SIGCONTs and SIGKILLs every broker and reaps it, stops the link proxies and joins their
//!   threads, and removes the directories unless the test is panicking (then it prints where they
//!   are); each child also gets `PR_SET_PDEATHSIG`, so it dies with the thread that spawned it;
//! - controller (Raft) traffic between brokers a and b goes through a proxy per direction, so a
//!   test can cut and heal a link; Kafka traffic (clients to brokers) is direct;
//! - `isolate` cuts a broker off from the others completely (its controller links, and an
//!   nftables drop of replication and forwarded traffic, which brokers send from their own host)
//!   while clients still reach it, as a network partition between brokers does.
//!
//! Callers must not spawn or restart brokers from a thread that exits before the brokers should
//! stop (PR_SET_PDEATHSIG fires when the spawning thread exits).

#![allow(dead_code)]

pub mod broker_process;
pub mod firewall;
pub mod kafka;
pub mod link_proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

// Each test binary uses a part of the harness.
#[allow(unused_imports)]
pub use broker_process::{BROKER_START_TIMEOUT, BrokerProcess, StartOutcome, process_state};
pub use firewall::{Endpoint, Firewall};
#[allow(unused_imports)]
pub use kafka::{
    ClusterMetadata, FetchedRecord, KafkaConnection, PartitionMetadata, REQUEST_TIMEOUT,
    TopicMetadata, call_once, decode_batches, fetch_all, metadata_of,
};
pub use link_proxy::LinkProxy;

/// How long `Cluster::start` waits for a ready cluster.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between polls in the harness's waits.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Lines of each log printed when a wait fails.
const LOG_TAIL_LINES: usize = 60;
/// Broker flags every cluster broker gets: a dead broker is fenced (its partitions leaderless)
/// after 3 s rather than Kafka's default 9 s, so the tests stay short.
const SESSION_ARGS: [&str; 4] = [
    "--broker-session-timeout-ms",
    "3000",
    "--broker-heartbeat-interval-ms",
    "500",
];
/// Bits of a Kafka node id below the broker id (node id = broker id << 10 | shard).
pub const SHARD_BITS: u32 = 10;

/// The broker id of a Kafka node id.
pub fn broker_of(node_id: i32) -> usize {
    usize::try_from(node_id >> SHARD_BITS).expect("a node id >= 0")
}

/// The loopback host of broker `i`.
pub fn host_of(i: usize) -> String {
    format!("127.0.1.{i}")
}

/// What cluster to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Number of brokers, 1-based ids 1..=brokers.
    pub brokers: usize,
    /// The first `voters` brokers form the controller quorum; 0 starts standalone brokers with no
    /// cluster flags at all (each its own single-broker cluster, node ids 0..cores).
    pub voters: usize,
    /// `--cores` of every broker.
    pub cores_per_broker: usize,
    /// Further `spate serve` arguments for every broker.
    pub extra_args: Vec<String>,
    /// Each broker keeps a sync journal (`--sync-journal`), so `kill_losing_unsynced` can
    /// replay a power loss.
    pub sync_journal: bool,
}

impl ClusterSpec {
    /// Three brokers, all voters, one shard each.
    pub fn three() -> ClusterSpec {
        ClusterSpec {
            brokers: 3,
            voters: 3,
            cores_per_broker: 1,
            extra_args: Vec::new(),
            sync_journal: false,
        }
    }

    fn clustered(&self) -> bool {
        self.voters > 0
    }
}

/// A fresh directory under `target/test-data/`, named for `name`.
pub fn test_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-data")
        .join(format!(
            "{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
    let _ = fs::remove_dir_all(&path);
    fs::create_dir_all(&path).expect("create the test directory");
    path
}

/// `spate serve` arguments of broker `i`; `voters` is its `--controller-quorum-voters` (none
/// for a standalone broker).
fn serve_args(spec: &ClusterSpec, i: usize, data_dir: &Path, voters: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--host".into(),
        host_of(i),
        "--port".into(),
        "0".into(),
        "--cores".into(),
        spec.cores_per_broker.to_string(),
    ];
    if let Some(voters) = voters {
        args.extend([
            "--node-id".into(),
            i.to_string(),
            "--controller-quorum-voters".into(),
            voters.into(),
        ]);
        // A spec that sets its own broker session keeps it (a flag may not be given twice).
        if !spec
            .extra_args
            .iter()
            .any(|arg| arg == "--broker-session-timeout-ms")
        {
            args.extend(SESSION_ARGS.iter().map(|arg| arg.to_string()));
        }
    }
    if spec.sync_journal {
        let journal = data_dir
            .parent()
            .expect("a broker directory")
            .join(SYNC_JOURNAL);
        args.extend(["--sync-journal".into(), journal.display().to_string()]);
    }
    args.extend(spec.extra_args.iter().cloned());
    args
}

/// The sync journal's file name in a broker's directory.
const SYNC_JOURNAL: &str = "sync-journal";

/// Binds `host:0` and returns the port the OS chose, released again. Racy by nature, but the
/// port was free a moment ago and the OS does not hand it out again at once.
fn port_free(host: &str) -> u16 {
    let listener =
        TcpListener::bind((host, 0)).unwrap_or_else(|error| panic!("bind {host}:0: {error}"));
    listener.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------------------------
// The cluster

/// N brokers, their controller link proxies and their directory.
pub struct Cluster {
    spec: ClusterSpec,
    root: PathBuf,
    /// Index 0 is broker 1.
    brokers: Vec<BrokerProcess>,
    /// Controller traffic proxy per ordered pair (from, to).
    proxies: BTreeMap<(usize, usize), LinkProxy>,
    /// Real controller address of each voter.
    controller_addresses: BTreeMap<usize, String>,
    /// Made by the first `isolate`.
    firewall: Option<Firewall>,
}

impl Cluster {
    /// Starts the cluster and waits (bounded) until it is ready.
    pub fn start(spec: ClusterSpec) -> Cluster {
        let mut cluster = Cluster::spawn(spec);
        for i in 1..=cluster.brokers.len() {
            if let Err(error) = cluster.broker_mut(i).finish_start() {
                cluster.fail(&error);
            }
        }
        cluster.wait_ready(READY_TIMEOUT);
        cluster
    }

    /// One broker with no cluster flags (today's `spate serve`), on 127.0.1.1.
    pub fn single(cores: usize) -> Cluster {
        Cluster::start(ClusterSpec {
            brokers: 1,
            voters: 0,
            cores_per_broker: cores,
            extra_args: Vec::new(),
            sync_journal: false,
        })
    }

    /// Starts every broker process without waiting for readiness.
    pub fn spawn(spec: ClusterSpec) -> Cluster {
        assert!(spec.brokers >= 1 && spec.brokers <= 254, "1..=254 brokers");
        assert!(spec.voters <= spec.brokers, "voters are among the brokers");
        let root = test_dir("cluster");
        let controller_addresses: BTreeMap<usize, String> = (1..=spec.voters)
            .map(|b| (b, format!("{}:{}", host_of(b), port_free(&host_of(b)))))
            .collect();
        let mut proxies = BTreeMap::new();
        for a in 1..=spec.brokers {
            for (&b, address) in &controller_addresses {
                if a != b {
                    let upstream: SocketAddr = address.parse().expect("a controller address");
                    proxies.insert((a, b), LinkProxy::start(&host_of(a), upstream));
                }
            }
        }
        let brokers = (1..=spec.brokers)
            .map(|i| {
                let voters = spec.clustered().then(|| {
                    controller_addresses
                        .iter()
                        .map(|(&b, address)| match proxies.get(&(i, b)) {
                            Some(proxy) => format!("{b}@{}", proxy.address()),
                            None => format!("{b}@{address}"),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                });
                let dir = root.join(format!("broker-{i}"));
                let args = serve_args(&spec, i, &dir.join("data"), voters.as_deref());
                BrokerProcess::new(i, dir, args, spec.cores_per_broker)
            })
            .collect();
        let mut cluster = Cluster {
            spec,
            root,
            brokers,
            proxies,
            controller_addresses,
            firewall: None,
        };
        for broker in &mut cluster.brokers {
            let args = broker.args().to_vec();
            broker.spawn_with(&args);
        }
        cluster
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    pub fn broker(&self, i: usize) -> &BrokerProcess {
        &self.brokers[i - 1]
    }

    fn broker_mut(&mut self, i: usize) -> &mut BrokerProcess {
        &mut self.brokers[i - 1]
    }

    /// 1-based ids of the brokers whose processes run and are not stopped.
    pub fn live(&self) -> Vec<usize> {
        self.brokers
            .iter()
            .filter(|b| b.is_running() && !b.is_stopped())
            .map(|b| b.index)
            .collect()
    }

    /// The Kafka node ids of broker `i`'s shards.
    pub fn node_ids(&self, i: usize) -> Vec<i32> {
        let base = if self.spec.clustered() {
            (i as i32) << SHARD_BITS
        } else {
            0
        };
        (0..self.spec.cores_per_broker as i32)
            .map(|s| base | s)
            .collect()
    }

    /// The real controller address of voter `i`.
    pub fn controller_address(&self, i: usize) -> &str {
        &self.controller_addresses[&i]
    }

    /// "host:port" of each shard of broker `i`, from its listeners file (index = shard).
    pub fn broker_addresses(&self, i: usize) -> Vec<String> {
        match self.broker(i).listeners() {
            Ok(listeners) => listeners.into_iter().map(|(_, address)| address).collect(),
            Err(error) => self.fail(&error),
        }
    }

    /// "host:port,..." of shard 0 of every live broker.
    pub fn bootstrap(&self) -> String {
        self.live()
            .into_iter()
            .map(|i| self.broker_addresses(i)[0].clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every live broker has its listeners file, and Metadata from each lists exactly
    /// the shards of all live brokers (of itself only, for standalone brokers) and a controller
    /// that is shard 0 of a live broker.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.ready_check() {
                Ok(()) => return,
                Err(why) => why,
            };
            if Instant::now() > deadline {
                self.fail(&format!("cluster not ready after {timeout:?}: {last}"));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn ready_check(&self) -> Result<(), String> {
        self.check_no_unexpected_exit();
        let live = self.live();
        let all_nodes: BTreeSet<i32> = live.iter().flat_map(|&i| self.node_ids(i)).collect();
        let controllers: BTreeSet<i32> = live.iter().map(|&i| self.node_ids(i)[0]).collect();
        for &i in &live {
            let listeners = self.broker(i).listeners()?;
            let listed: Vec<i32> = listeners.iter().map(|(node, _)| *node).collect();
            if listed != self.node_ids(i) {
                return Err(format!(
                    "broker {i} listeners {listeners:?}, want nodes {:?}",
                    self.node_ids(i)
                ));
            }
            let metadata = metadata_of(&listeners[0].1)?;
            let nodes: BTreeSet<i32> = metadata.nodes.keys().copied().collect();
            let (nodes_want, controllers_want) = if self.spec.clustered() {
                (all_nodes.clone(), controllers.clone())
            } else {
                let own: BTreeSet<i32> = self.node_ids(i).into_iter().collect();
                (own, BTreeSet::from([self.node_ids(i)[0]]))
            };
            if nodes != nodes_want {
                return Err(format!(
                    "broker {i} Metadata lists nodes {nodes:?}, want {nodes_want:?}"
                ));
            }
            if !controllers_want.contains(&metadata.controller_id) {
                return Err(format!(
                    "broker {i} Metadata names controller {}, want one of {controllers_want:?}",
                    metadata.controller_id
                ));
            }
        }
        Ok(())
    }

    /// Fails the test if a broker the harness did not kill has exited.
    pub fn check_no_unexpected_exit(&self) {
        if let Some(dead) = self.brokers.iter().find(|b| b.is_zombie()) {
            self.fail(&format!(
                "broker {} exited unexpectedly (its status is printed as the cluster is dropped)",
                dead.index
            ));
        }
    }

    /// Metadata (all topics) from shard 0 of broker `i`.
    pub fn metadata(&self, i: usize) -> Result<ClusterMetadata, String> {
        let listeners = self.broker(i).listeners()?;
        metadata_of(&listeners[0].1)
    }

    /// Polls Metadata from broker `i` until `done` holds, failing after `timeout` with the last
    /// answer and the logs.
    pub fn metadata_wait(
        &self,
        i: usize,
        timeout: Duration,
        what: &str,
        done: impl Fn(&ClusterMetadata) -> bool,
    ) -> ClusterMetadata {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.metadata(i) {
                Ok(metadata) if done(&metadata) => return metadata,
                Ok(metadata) => format!("{metadata:?}"),
                Err(error) => error,
            };
            self.check_no_unexpected_exit();
            if Instant::now() > deadline {
                self.fail(&format!(
                    "broker {i}: no Metadata with {what} after {timeout:?}; last: {last}"
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The broker id of the controller leader, from Metadata of the live brokers (waits, bounded,
    /// until one names a live broker).
    pub fn controller_leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        loop {
            let live = self.live();
            for &i in &live {
                match self.metadata(i) {
                    Ok(metadata) if metadata.controller_id >= 0 => {
                        let leader = broker_of(metadata.controller_id);
                        if live.contains(&leader) {
                            return leader;
                        }
                        last = format!("broker {i} names controller {}", metadata.controller_id);
                    }
                    Ok(metadata) => {
                        last = format!("broker {i} names controller {}", metadata.controller_id)
                    }
                    Err(error) => last = error,
                }
            }
            self.check_no_unexpected_exit();
            if Instant::now() > deadline {
                self.fail(&format!(
                    "no live controller leader after 15 s; last: {last}"
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// SIGKILL broker `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        self.broker_mut(i).kill();
    }

    /// SIGKILLs broker `i` and drops what a power loss may: every segment's data from where it
    /// was last fdatasync'ed on, as its sync journal says (the spec's `sync_journal`), zeroed.
    /// Returns the bytes of data dropped (not counting zeros already there).
    pub fn kill_losing_unsynced(&mut self, i: usize) -> u64 {
        assert!(self.spec.sync_journal, "the brokers keep no sync journal");
        self.kill(i);
        let data_dir = self.broker(i).data_dir().to_path_buf();
        let journal_path = data_dir
            .parent()
            .expect("a broker directory")
            .join(SYNC_JOURNAL);
        let journal = fs::read_to_string(&journal_path)
            .unwrap_or_else(|error| self.fail(&format!("{}: {error}", journal_path.display())));
        let mut dropped = 0;
        for (path, durable) in spate::io::sync_journal::durable_lengths(&journal) {
            if !path.starts_with(&data_dir) {
                continue;
            }
            match zero_from(&path, durable) {
                Ok(bytes) => dropped += bytes,
                // Retention or a truncation removed it since.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => self.fail(&format!("{}: {error}", path.display())),
            }
        }
        dropped
    }

    /// SIGSTOP broker `i`.
    pub fn stop(&mut self, i: usize) {
        self.broker_mut(i).stop();
    }

    /// SIGCONT broker `i`.
    pub fn resume(&mut self, i: usize) {
        self.broker_mut(i).resume();
    }

    /// Starts broker `i` again with the same arguments and data directory (SIGKILLs it first if
    /// it still runs) and waits for its listeners file; `wait_ready` waits for the cluster.
    pub fn restart(&mut self, i: usize) {
        if self.broker(i).is_running() {
            self.broker_mut(i).kill_if_running();
        }
        if let Err(error) = self.broker_mut(i).start() {
            self.fail(&error);
        }
    }

    /// Starts broker `i` (not running) with its arguments changed by `edit`, once, and reports
    /// how the start ended; later `restart`s use the original arguments again.
    pub fn restart_with(&mut self, i: usize, edit: impl FnOnce(&mut Vec<String>)) -> StartOutcome {
        assert!(
            !self.broker(i).is_running(),
            "restart_with: broker {i} runs"
        );
        let mut args = self.broker(i).args().to_vec();
        edit(&mut args);
        match self.broker_mut(i).start_with(&args, BROKER_START_TIMEOUT) {
            Ok(outcome) => outcome,
            Err(error) => self.fail(&error),
        }
    }

    /// Cuts controller traffic between brokers a and b both ways: open connections are closed and
    /// new ones closed at once.
    pub fn cut_link(&self, a: usize, b: usize) {
        self.link_set(a, b, true);
    }

    /// Undoes `cut_link`.
    pub fn heal_link(&self, a: usize, b: usize) {
        self.link_set(a, b, false);
    }

    fn link_set(&self, a: usize, b: usize, cut: bool) {
        let mut found = false;
        for pair in [(a, b), (b, a)] {
            if let Some(proxy) = self.proxies.get(&pair) {
                proxy.set_cut(cut);
                found = true;
            }
        }
        assert!(
            found,
            "no controller link between brokers {a} and {b} (neither is a voter)"
        );
    }

    /// Cuts broker `i` off from every other broker, both ways: its controller links and every
    /// packet between its host and theirs on the brokers' ports (replication, forwarded admin
    /// requests). Clients still reach it. `rejoin` undoes it.
    pub fn isolate(&mut self, i: usize) {
        let endpoint = |b: usize| Endpoint {
            host: host_of(b),
            ports: self
                .broker_addresses(b)
                .iter()
                .map(|address| {
                    address
                        .rsplit_once(':')
                        .and_then(|(_, port)| port.parse().ok())
                        .unwrap_or_else(|| self.fail(&format!("listener address {address}")))
                })
                .collect(),
        };
        let isolated = endpoint(i);
        let peers: Vec<Endpoint> = (1..=self.brokers.len())
            .filter(|&b| b != i)
            .map(endpoint)
            .collect();
        if self.firewall.is_none() {
            match Firewall::new() {
                Ok(firewall) => self.firewall = Some(firewall),
                Err(error) => self.fail(&error),
            }
        }
        let firewall = self.firewall.as_ref().expect("made above");
        if let Err(error) = firewall.drop_between(&isolated, &peers) {
            self.fail(&error);
        }
        for b in (1..=self.brokers.len()).filter(|&b| b != i) {
            if self.proxies.contains_key(&(i, b)) || self.proxies.contains_key(&(b, i)) {
                self.link_set(i, b, true);
            }
        }
    }

    /// Undoes `isolate(i)`.
    pub fn rejoin(&mut self, i: usize) {
        if let Some(firewall) = &self.firewall
            && let Err(error) = firewall.clear()
        {
            self.fail(&error);
        }
        for b in (1..=self.brokers.len()).filter(|&b| b != i) {
            if self.proxies.contains_key(&(i, b)) || self.proxies.contains_key(&(b, i)) {
                self.link_set(i, b, false);
            }
        }
    }

    /// Tails of every broker's logs.
    pub fn logs(&self) -> String {
        self.brokers
            .iter()
            .map(|b| b.log_tail(LOG_TAIL_LINES))
            .collect()
    }

    /// Panics with `message` and the tails of every broker's logs.
    pub fn fail(&self, message: &str) -> ! {
        panic!("{message}\n{}", self.logs());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        for broker in &mut self.brokers {
            if panicking && let Some(status) = broker.exited() {
                eprintln!(
                    "cluster harness: broker {} had exited by itself: {status}",
                    broker.index
                );
            }
            broker.kill_if_running();
        }
        self.proxies.clear();
        self.firewall = None;
        if panicking {
            eprintln!(
                "cluster harness: kept {} for inspection",
                self.root.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Zeroes the file at `path` from byte `from` to its end, keeping its size; the bytes that were
/// not zero already.
fn zero_from(path: &Path, from: u64) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = fs::OpenOptions::new().read(true).write(true).open(path)?;
    let size = file.metadata()?.len();
    if size <= from {
        return Ok(0);
    }
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(from))?;
    file.read_to_end(&mut tail)?;
    let dropped = tail.iter().filter(|&&byte| byte != 0).count() as u64;
    tail.fill(0);
    file.seek(SeekFrom::Start(from))?;
    file.write_all(&tail)?;
    file.sync_all()?;
    Ok(dropped)
}
