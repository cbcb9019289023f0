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
//!   test can cut and heal a link; Kafka traffic (clients to brokers) is direct.
//!
//! Callers must not spawn or restart brokers from a thread that exits before the brokers should
//! stop (PR_SET_PDEATHSIG fires when the spawning thread exits).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate::protocol::frame::encode_request_frame;
use spate::protocol::messages::create_topics::{CreatableTopic, CreateTopicsRequest};
use spate::protocol::messages::fetch::{FetchPartition, FetchRequest, FetchTopic};
use spate::protocol::messages::metadata::MetadataRequest;
use spate::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use spate::protocol::records::{BatchBuilder, Record, RecordIter};
use spate::protocol::wire::Reader;
use spate::protocol::{ApiKey, Request, RequestHeader, Response, ResponseHeader};

/// How long `Cluster::start` waits for a ready cluster.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one broker may take from spawn to its `listeners` file (a restart after SIGKILL
/// runs recovery first).
pub const BROKER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a restart is retried while the broker exits because a port is still in use: after
/// SIGKILL the kernel may release a dead process's listening sockets only after its io_uring is
/// torn down.
const PORT_IN_USE_RETRY_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on one Kafka request made by the harness (connect, send, answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
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
}

impl ClusterSpec {
    /// Three brokers, all voters, one shard each.
    pub fn three() -> ClusterSpec {
        ClusterSpec {
            brokers: 3,
            voters: 3,
            cores_per_broker: 1,
            extra_args: Vec::new(),
        }
    }

    fn clustered(&self) -> bool {
        self.voters > 0
    }
}

/// How a start attempt ended.
#[derive(Debug)]
pub enum StartOutcome {
    /// The broker wrote its listeners file.
    Ready,
    /// The broker exited first; its stderr since this start.
    Exited { status: ExitStatus, stderr: String },
}

/// One `spate serve` process and its files.
pub struct BrokerProcess {
    /// 1-based broker index (the host is 127.0.1.<index>).
    pub index: usize,
    dir: PathBuf,
    data_dir: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    /// `spate serve ...` arguments, the same on every start.
    args: Vec<String>,
    cores: usize,
    child: Option<Child>,
    stopped: bool,
    start_count: u32,
}

impl BrokerProcess {
    /// A broker whose files live in `dir`, not started yet.
    pub fn new(index: usize, dir: PathBuf, args: Vec<String>, cores: usize) -> BrokerProcess {
        let data_dir = dir.join("data");
        fs::create_dir_all(&data_dir).expect("create the broker's data directory");
        BrokerProcess {
            index,
            stdout_path: dir.join("stdout.log"),
            stderr_path: dir.join("stderr.log"),
            dir,
            data_dir,
            args,
            cores,
            child: None,
            stopped: false,
            start_count: 0,
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// True while the process runs (stopped or not).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the broker runs").id()
    }

    /// Starts the process with `args` (its own or edited ones); returns the stderr length at
    /// start, to read what this start wrote.
    fn spawn_with(&mut self, args: &[String]) -> u64 {
        assert!(self.child.is_none(), "broker {} already runs", self.index);
        self.start_count += 1;
        // A previous run's file names ports that are gone; the broker writes a new one once
        // every shard of this run listens.
        match fs::remove_file(self.listeners_path()) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => panic!("remove the listeners file: {error}"),
        }
        let open = |path: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|error| panic!("open {}: {error}", path.display()))
        };
        let mut stderr = open(&self.stderr_path);
        let stdout = open(&self.stdout_path);
        let mut command = Command::new(env!("CARGO_BIN_EXE_spate"));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr.try_clone().expect("clone stderr.log"))
            .env("NO_COLOR", "1");
        if std::env::var_os("RUST_LOG").is_none() {
            // openraft logs every vote at info; Spate's own events are what a failing test needs
            // in the log tail.
            command.env("RUST_LOG", "info,openraft=warn");
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        writeln!(
            stderr,
            "=== harness: start {} of broker {}: {command:?}",
            self.start_count, self.index
        )
        .expect("write stderr.log");
        let position = fs::metadata(&self.stderr_path).map_or(0, |m| m.len());
        self.child = Some(command.spawn().expect("spawn spate serve"));
        self.stopped = false;
        position
    }

    /// Starts the broker with `args` and waits (bounded by `timeout`) for its listeners file or
    /// its exit. A broker still starting at the timeout is left running and reported as an error.
    pub fn start_with(
        &mut self,
        args: &[String],
        timeout: Duration,
    ) -> Result<StartOutcome, String> {
        let position = self.spawn_with(args);
        let deadline = Instant::now() + timeout;
        loop {
            if self.listeners().is_ok() {
                return Ok(StartOutcome::Ready);
            }
            let child = self.child.as_mut().expect("the broker child");
            if let Some(status) = child.try_wait().expect("poll the broker") {
                self.child = None;
                return Ok(StartOutcome::Exited {
                    status,
                    stderr: read_from(&self.stderr_path, position),
                });
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "broker {} wrote no complete listeners file within {timeout:?}",
                    self.index
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Starts the broker with its own arguments until it is ready; a start that exits because a
    /// port is still in use is retried for a while.
    pub fn start(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let args = self.args.clone();
            match self.start_with(&args, BROKER_START_TIMEOUT)? {
                StartOutcome::Ready => return Ok(()),
                StartOutcome::Exited { status, stderr } => {
                    if stderr.contains("Address already in use")
                        && started.elapsed() < PORT_IN_USE_RETRY_TIMEOUT
                    {
                        thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    return Err(format!(
                        "broker {} exited with {status} while starting",
                        self.index
                    ));
                }
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("kill: the broker is not running");
        child.kill().expect("SIGKILL the broker");
        child.wait().expect("reap the broker");
        self.stopped = false;
    }

    /// SIGSTOP, and waits (bounded) until every thread is stopped: the process freezes with its
    /// sockets open.
    pub fn stop(&mut self) {
        self.signal(libc::SIGSTOP);
        self.stopped = true;
        self.wait_state("stopped", |state| state == 'T');
    }

    /// SIGCONT after `stop`, and waits (bounded) until the process runs again.
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.stopped = false;
        self.wait_state("resumed", |state| state != 'T');
    }

    /// Waits up to 5 s until every thread's state (the letter in /proc/PID/task/TID/stat) passes
    /// `ok`.
    fn wait_state(&self, what: &str, ok: impl Fn(char) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let task_dir = format!("/proc/{}/task", self.pid());
        loop {
            let states: Vec<char> = fs::read_dir(&task_dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|task| process_state(&task.path().join("stat")))
                .collect();
            if !states.is_empty() && states.iter().all(|&state| ok(state)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "broker {} not {what} after 5 s: thread states {states:?}",
                self.index
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: `pid` is our own unreaped child, so it cannot name another process.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "signal {signal} to broker {}", self.index);
    }

    /// True if the process exited by itself and waits to be reaped.
    pub fn is_zombie(&self) -> bool {
        let Some(child) = self.child.as_ref() else {
            return false;
        };
        process_state(Path::new(&format!("/proc/{}/stat", child.id()))) == Some('Z')
    }

    /// Exit status if the process exited by itself (then it is reaped and forgotten).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().expect("poll the broker")?;
        self.child = None;
        Some(status)
    }

    fn listeners_path(&self) -> PathBuf {
        self.data_dir.join("listeners")
    }

    /// The listeners file: (node id, "host:port") per shard, in file order; an error while it is
    /// missing or incomplete.
    pub fn listeners(&self) -> Result<Vec<(i32, String)>, String> {
        let text = fs::read_to_string(self.listeners_path())
            .map_err(|error| format!("broker {} listeners file: {error}", self.index))?;
        let mut listeners = Vec::new();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let parsed = line.trim().split_once(' ').and_then(|(node, address)| {
                Some((node.parse::<i32>().ok()?, address.trim().to_string()))
            });
            match parsed {
                Some(listener) => listeners.push(listener),
                None => {
                    return Err(format!(
                        "listeners line {line:?}: want `<node id> <host>:<port>`"
                    ));
                }
            }
        }
        if listeners.len() != self.cores {
            return Err(format!(
                "broker {} listeners file has {} lines, want {}: {text:?}",
                self.index,
                listeners.len(),
                self.cores
            ));
        }
        Ok(listeners)
    }

    /// The last `lines` lines of stderr.log and stdout.log.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut text = format!(
            "---- broker {} stderr {} ----\n{}",
            self.index,
            self.stderr_path.display(),
            tail(&self.stderr_path, lines)
        );
        let stdout = tail(&self.stdout_path, lines);
        if !stdout.is_empty() {
            text.push_str(&format!("---- broker {} stdout ----\n{stdout}", self.index));
        }
        text
    }

    /// SIGCONT if stopped, SIGKILL, reap.
    fn kill_for_drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.stopped {
                let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
                // SAFETY: our own unreaped child.
                unsafe { libc::kill(pid, libc::SIGCONT) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill_for_drop();
    }
}

/// The state letter of a /proc stat file (R, S, T, Z, ...).
pub fn process_state(stat_path: &Path) -> Option<char> {
    let stat = fs::read_to_string(stat_path).ok()?;
    // The state follows the command name, which is in parentheses and may hold spaces.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn read_from(path: &Path, position: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(position)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| format!("{line}\n"))
        .collect()
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
}

impl Cluster {
    /// Starts the cluster and waits (bounded) until it is ready.
    pub fn start(spec: ClusterSpec) -> Cluster {
        let cluster = Cluster::spawn(spec);
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
                let mut args: Vec<String> = vec![
                    "serve".into(),
                    "--data-dir".into(),
                    root.join(format!("broker-{i}/data")).display().to_string(),
                    "--host".into(),
                    host_of(i),
                    "--port".into(),
                    "0".into(),
                    "--cores".into(),
                    spec.cores_per_broker.to_string(),
                ];
                if spec.clustered() {
                    let voters: Vec<String> = controller_addresses
                        .iter()
                        .map(|(&b, address)| match proxies.get(&(i, b)) {
                            Some(proxy) => format!("{b}@{}", proxy.address()),
                            None => format!("{b}@{address}"),
                        })
                        .collect();
                    args.extend([
                        "--node-id".into(),
                        i.to_string(),
                        "--controller-quorum-voters".into(),
                        voters.join(","),
                    ]);
                    args.extend(SESSION_ARGS.iter().map(|arg| arg.to_string()));
                }
                args.extend(spec.extra_args.iter().cloned());
                BrokerProcess::new(
                    i,
                    root.join(format!("broker-{i}")),
                    args,
                    spec.cores_per_broker,
                )
            })
            .collect();
        let mut cluster = Cluster {
            spec,
            root,
            brokers,
            proxies,
            controller_addresses,
        };
        for broker in &mut cluster.brokers {
            let args = broker.args.clone();
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
        let live = self.live();
        if let Some(dead) = live.iter().find(|&&i| self.broker(i).is_zombie()) {
            self.fail(&format!("broker {dead} exited unexpectedly"));
        }
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
            self.broker_mut(i).kill_for_drop();
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
        let mut args = self.broker(i).args.clone();
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
        for broker in &mut self.brokers {
            broker.kill_for_drop();
        }
        self.proxies.clear();
        if thread::panicking() {
            eprintln!(
                "cluster harness: kept {} for inspection",
                self.root.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kafka requests that fail with an error instead of panicking, for bounded waits.

/// What Metadata says about the cluster.
#[derive(Clone, Debug)]
pub struct ClusterMetadata {
    pub controller_id: i32,
    /// Node id to "host:port".
    pub nodes: BTreeMap<i32, String>,
    pub topics: BTreeMap<String, TopicMetadata>,
}

#[derive(Clone, Debug)]
pub struct TopicMetadata {
    pub error_code: i16,
    /// By partition index.
    pub partitions: Vec<PartitionMetadata>,
}

#[derive(Clone, Debug)]
pub struct PartitionMetadata {
    pub index: i32,
    pub leader: i32,
    pub error_code: i16,
}

impl ClusterMetadata {
    /// True if `topic` is listed without error with `partitions` partitions, each led.
    pub fn topic_ready(&self, topic: &str, partitions: usize) -> bool {
        self.topics.get(topic).is_some_and(|t| {
            t.error_code == 0
                && t.partitions.len() == partitions
                && t.partitions
                    .iter()
                    .all(|p| p.leader >= 0 && p.error_code == 0)
        })
    }

    /// Leader node id of each partition of `topic`, by index.
    pub fn leaders(&self, topic: &str) -> Vec<i32> {
        self.topics
            .get(topic)
            .map(|t| t.partitions.iter().map(|p| p.leader).collect())
            .unwrap_or_default()
    }

    /// "host:port" of node `node_id`.
    pub fn address(&self, node_id: i32) -> &str {
        self.nodes
            .get(&node_id)
            .unwrap_or_else(|| panic!("node {node_id} not in Metadata {:?}", self.nodes))
    }
}

/// Metadata v12 (all topics) from `address`.
pub fn metadata_of(address: &str) -> Result<ClusterMetadata, String> {
    let request = Request::Metadata(MetadataRequest {
        topics: None,
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    });
    let Response::Metadata(response) = call_once(address, 12, request)? else {
        return Err("not a Metadata response".into());
    };
    let nodes = response
        .brokers
        .iter()
        .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
        .collect();
    let topics = response
        .topics
        .iter()
        .filter_map(|t| {
            let mut partitions: Vec<PartitionMetadata> = t
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    index: p.partition_index,
                    leader: p.leader_id,
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.index);
            Some((
                t.name.clone()?,
                TopicMetadata {
                    error_code: t.error_code,
                    partitions,
                },
            ))
        })
        .collect();
    Ok(ClusterMetadata {
        controller_id: response.controller_id,
        nodes,
        topics,
    })
}

/// One Kafka connection whose failures are errors, each operation bounded by `REQUEST_TIMEOUT`
/// (or the timeout given at connect).
pub struct KafkaConnection {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl KafkaConnection {
    pub fn connect(address: &str, timeout: Duration) -> Result<KafkaConnection, String> {
        let socket: SocketAddr = address
            .parse()
            .map_err(|error| format!("address {address:?}: {error}"))?;
        let stream = TcpStream::connect_timeout(&socket, timeout)
            .map_err(|error| format!("connect {address}: {error}"))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(KafkaConnection {
            stream,
            next_correlation_id: 1,
        })
    }

    /// Sends `request` at `version` and reads its answer.
    pub fn call(&mut self, version: i16, request: Request) -> Result<Response, String> {
        let api: ApiKey = request.api_key();
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader {
            api_key: api.code(),
            api_version: version,
            correlation_id,
            client_id: Some("cluster-harness".into()),
        };
        let frame =
            encode_request_frame(&header, &request).map_err(|e| format!("encode: {e:?}"))?;
        for chunk in frame {
            self.stream
                .write_all(&chunk)
                .map_err(|error| format!("send {api:?}: {error}"))?;
        }
        let mut prefix = [0u8; 4];
        self.stream
            .read_exact(&mut prefix)
            .map_err(|error| format!("read the {api:?} answer: {error}"))?;
        let length =
            usize::try_from(i32::from_be_bytes(prefix)).map_err(|_| "negative frame length")?;
        let mut body = vec![0u8; length];
        self.stream
            .read_exact(&mut body)
            .map_err(|error| format!("read the {api:?} answer: {error}"))?;
        let mut reader = Reader::new(Bytes::from(body));
        let header = ResponseHeader::decode(&mut reader, api.response_header_version(version))
            .map_err(|e| format!("response header: {e:?}"))?;
        if header.correlation_id != correlation_id {
            return Err(format!(
                "answer for correlation id {}, want {correlation_id}",
                header.correlation_id
            ));
        }
        Response::decode(api, version, reader.rest().clone())
            .map_err(|e| format!("decode {api:?}: {e:?}"))
    }

    /// CreateTopics v7 for one topic with default settings (RF -1): (error code, message).
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        timeout_ms: i32,
    ) -> Result<(i16, Option<String>), String> {
        let request = Request::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                num_partitions: partitions,
                replication_factor: -1,
                assignments: vec![],
                configs: vec![],
            }],
            timeout_ms,
            validate_only: false,
        });
        let Response::CreateTopics(response) = self.call(7, request)? else {
            return Err("not a CreateTopics response".into());
        };
        let topic = response
            .topics
            .first()
            .ok_or("CreateTopics answered no topic")?;
        Ok((topic.error_code, topic.error_message.clone()))
    }

    /// Produce v8 of one batch of `values` (keys null) to one partition: (error code, base offset).
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        values: &[Vec<u8>],
        acks: i16,
    ) -> Result<(i16, i64), String> {
        let mut builder = BatchBuilder::new(1_700_000_000_000);
        for (i, value) in values.iter().enumerate() {
            builder.push(&Record {
                timestamp_delta: i as i64,
                key: None,
                value: Some(value),
                headers: &[],
            });
        }
        let request = Request::Produce(ProduceRequest {
            transactional_id: None,
            acks,
            timeout_ms: 10_000,
            topic_data: vec![TopicProduceData {
                name: topic.into(),
                partition_data: vec![PartitionProduceData {
                    index: partition,
                    records: Some(builder.finish()),
                }],
            }],
        });
        let Response::Produce(response) = self.call(8, request)? else {
            return Err("not a Produce response".into());
        };
        let answer = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or("Produce answered no partition")?;
        Ok((answer.error_code, answer.base_offset))
    }

    /// Fetch v11 of one partition from `offset`: (error code, high watermark, records).
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(i16, i64, Vec<FetchedRecord>), String> {
        let request = Request::Fetch(FetchRequest {
            max_wait_ms: 100,
            min_bytes: 1,
            max_bytes: 8 << 20,
            topics: vec![FetchTopic {
                topic: topic.into(),
                partitions: vec![FetchPartition {
                    partition,
                    fetch_offset: offset,
                    partition_max_bytes: 4 << 20,
                    ..FetchPartition::default()
                }],
            }],
            ..FetchRequest::default()
        });
        let Response::Fetch(response) = self.call(11, request)? else {
            return Err("not a Fetch response".into());
        };
        let answer = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or("Fetch answered no partition")?;
        let records = match &answer.records {
            Some(set) => decode_batches(&set.to_bytes())?,
            None => Vec::new(),
        };
        Ok((answer.error_code, answer.high_watermark, records))
    }
}

/// One request on a new connection to `address`.
pub fn call_once(address: &str, version: i16, request: Request) -> Result<Response, String> {
    KafkaConnection::connect(address, REQUEST_TIMEOUT)?.call(version, request)
}

/// One record read back by `KafkaConnection::fetch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedRecord {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// The records of the uncompressed v2 batches in a Fetch answer; a partial batch at the end (the
/// broker may cut one at the size limit) is skipped.
pub fn decode_batches(bytes: &Bytes) -> Result<Vec<FetchedRecord>, String> {
    const HEADER_BYTES: usize = 61;
    let mut records = Vec::new();
    let mut position = 0;
    while position + HEADER_BYTES <= bytes.len() {
        let at = |from: usize, n: usize| &bytes[position + from..position + from + n];
        let base_offset = i64::from_be_bytes(at(0, 8).try_into().unwrap());
        let batch_length = i32::from_be_bytes(at(8, 4).try_into().unwrap());
        let end =
            position + 12 + usize::try_from(batch_length).map_err(|_| "negative batch length")?;
        if end > bytes.len() {
            break;
        }
        let attributes = i16::from_be_bytes(at(21, 2).try_into().unwrap());
        if attributes & 0x7 != 0 {
            return Err(format!(
                "compressed batch at offset {base_offset}: not decoded here"
            ));
        }
        let count = i32::from_be_bytes(at(57, 4).try_into().unwrap());
        let region = bytes.slice(position + HEADER_BYTES..end);
        for record in RecordIter::new(region, count) {
            let record = record.map_err(|e| format!("record in batch at {base_offset}: {e:?}"))?;
            records.push(FetchedRecord {
                offset: base_offset + i64::from(record.offset_delta),
                key: record.key.map(|k| k.to_vec()),
                value: record.value.map(|v| v.to_vec()),
            });
        }
        position = end;
    }
    Ok(records)
}

/// Every record of `topic`/`partition` from offset 0 up to its high watermark, read from
/// `address`, retrying errors until `timeout`.
pub fn fetch_all(
    address: &str,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Vec<FetchedRecord>, String> {
    let deadline = Instant::now() + timeout;
    let mut records: Vec<FetchedRecord> = Vec::new();
    let mut last = String::new();
    let mut connection: Option<KafkaConnection> = None;
    while Instant::now() < deadline {
        let next = records.last().map_or(0, |r| r.offset + 1);
        if connection.is_none() {
            match KafkaConnection::connect(address, REQUEST_TIMEOUT) {
                Ok(c) => connection = Some(c),
                Err(error) => {
                    last = error;
                    thread::sleep(POLL_INTERVAL);
                    continue;
                }
            }
        }
        match connection
            .as_mut()
            .expect("connected")
            .fetch(topic, partition, next)
        {
            Ok((0, high_watermark, fetched)) => {
                records.extend(fetched.into_iter().filter(|r| r.offset >= next));
                let next = records.last().map_or(0, |r| r.offset + 1);
                if next >= high_watermark {
                    return Ok(records);
                }
                continue;
            }
            Ok((error_code, _, _)) => last = format!("Fetch error code {error_code}"),
            Err(error) => {
                last = error;
                connection = None;
            }
        }
        thread::sleep(POLL_INTERVAL);
    }
    Err(format!(
        "fetch {topic}/{partition} from {address}: not complete after {timeout:?}; {} records so far; last: {last}",
        records.len()
    ))
}

// ---------------------------------------------------------------------------------------------
// Link proxies

/// A TCP proxy for one direction of controller traffic (broker a dials broker b through it).
/// While cut, it closes its open connections and every new one at once. Dropping it stops its
/// threads and joins them.
pub struct LinkProxy {
    address: SocketAddr,
    shared: Arc<ProxyShared>,
    accept_thread: Option<JoinHandle<()>>,
}

struct ProxyShared {
    upstream: SocketAddr,
    shutdown: AtomicBool,
    state: Mutex<ProxyState>,
    /// Threads of this proxy still running (the accept thread and the pumps).
    threads_alive: Arc<AtomicUsize>,
}

#[derive(Default)]
struct ProxyState {
    cut: bool,
    connections: Vec<ProxyConnection>,
}

/// One forwarded connection: both sockets (clones, to shut them down) and its two pump threads.
struct ProxyConnection {
    client: TcpStream,
    upstream: TcpStream,
    pumps: Vec<JoinHandle<()>>,
}

impl ProxyConnection {
    fn close(self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
        for pump in self.pumps {
            let _ = pump.join();
        }
    }

    fn finished(&self) -> bool {
        self.pumps.iter().all(JoinHandle::is_finished)
    }
}

/// How long the accept thread sleeps when no connection waits; bounds how long Drop takes.
const PROXY_ACCEPT_POLL: Duration = Duration::from_millis(5);
/// Bound on the proxy's connect to its upstream.
const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Counts a thread as alive from its creation until it ends.
struct AliveGuard(Arc<AtomicUsize>);

impl AliveGuard {
    fn new(counter: &Arc<AtomicUsize>) -> AliveGuard {
        counter.fetch_add(1, Ordering::SeqCst);
        AliveGuard(counter.clone())
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LinkProxy {
    /// Listens on `host`:<free port> and forwards every connection to `upstream`.
    pub fn start(host: &str, upstream: SocketAddr) -> LinkProxy {
        let listener = TcpListener::bind((host, 0))
            .unwrap_or_else(|error| panic!("bind proxy on {host}: {error}"));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let address = listener.local_addr().expect("proxy address");
        let threads_alive = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(ProxyShared {
            upstream,
            shutdown: AtomicBool::new(false),
            state: Mutex::new(ProxyState::default()),
            threads_alive: threads_alive.clone(),
        });
        let guard = AliveGuard::new(&threads_alive);
        let accept_shared = shared.clone();
        let accept_thread = thread::Builder::new()
            .name(format!("proxy-{address}"))
            .spawn(move || {
                let _guard = guard;
                accept_loop(&listener, &accept_shared);
            })
            .expect("spawn the proxy thread");
        LinkProxy {
            address,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Counter of this proxy's running threads; 0 once it is dropped.
    pub fn threads_alive(&self) -> Arc<AtomicUsize> {
        self.shared.threads_alive.clone()
    }

    /// Open (not yet finished) forwarded connections.
    pub fn connections_open(&self) -> usize {
        let state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        state.connections.iter().filter(|c| !c.finished()).count()
    }

    /// Cut: close every open connection and every new one at once. Healed: forward again.
    pub fn set_cut(&self, cut: bool) {
        let closing = {
            let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            state.cut = cut;
            if cut {
                std::mem::take(&mut state.connections)
            } else {
                Vec::new()
            }
        };
        for connection in closing {
            connection.close();
        }
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        let connections = {
            let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut state.connections)
        };
        for connection in connections {
            connection.close();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<ProxyShared>) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => forward(client, shared),
            Err(error) if error.kind() == ErrorKind::WouldBlock => thread::sleep(PROXY_ACCEPT_POLL),
            Err(_) => thread::sleep(PROXY_ACCEPT_POLL),
        }
    }
}

/// Connects `client` to the upstream and starts its pumps, or closes it at once if the link is
/// cut or the upstream cannot be reached.
fn forward(client: TcpStream, shared: &Arc<ProxyShared>) {
    if client.set_nonblocking(false).is_err()
        || shared.state.lock().unwrap_or_else(|p| p.into_inner()).cut
    {
        return;
    }
    let Ok(upstream) = TcpStream::connect_timeout(&shared.upstream, PROXY_CONNECT_TIMEOUT) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let clones = (|| {
        Some((
            client.try_clone().ok()?,
            upstream.try_clone().ok()?,
            client.try_clone().ok()?,
            upstream.try_clone().ok()?,
        ))
    })();
    let Some((client_read, upstream_write, client_write, upstream_read)) = clones else {
        return;
    };
    // Checked again under the lock that `set_cut` takes, so a connection accepted while the link
    // was being cut is closed too.
    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    if state.cut {
        return;
    }
    state.connections.retain(|c| !c.finished());
    let pumps = [(client_read, upstream_write), (upstream_read, client_write)]
        .into_iter()
        .map(|(from, to)| {
            let guard = AliveGuard::new(&shared.threads_alive);
            thread::Builder::new()
                .name("proxy-pump".into())
                .spawn(move || {
                    let _guard = guard;
                    pump(from, to);
                })
                .expect("spawn a proxy pump")
        })
        .collect();
    state.connections.push(ProxyConnection {
        client,
        upstream,
        pumps,
    });
}

/// Copies bytes from `from` to `to` until either side ends, then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
