//! The integration-test harness: runs a real `spate serve` process on loopback and gives tests
//! librdkafka clients wired to it.
//!
//! Guarantees:
//! - every broker runs in its own temporary directory under `CARGO_TARGET_TMPDIR` (ext4 here, so
//!   O_DIRECT works; /tmp may be tmpfs), binds only 127.0.0.1, and takes OS-assigned ports;
//! - a `Broker` never outlives its test: `Drop` SIGKILLs the process (also while unwinding from a
//!   panic), and the child gets `PR_SET_PDEATHSIG` so it dies with the thread that spawned it even
//!   if the test binary itself is killed;
//! - the broker's stdout and stderr go to `broker.log` in its directory; when a test panics, the
//!   tail of that log is printed with the test's output, together with the clients' librdkafka
//!   warnings.
//!
//! Callers must not: spawn or restart a `Broker` from a thread that exits before the broker should
//! stop (PR_SET_PDEATHSIG fires when the *spawning thread* exits), or keep a client's bootstrap
//! address across a restart unless the broker was started with `ports_fixed` (with `--port 0`
//! every start binds new ports).

#![allow(dead_code)]

pub mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

/// How long a broker may take from spawn to a complete `listeners` file. Generous because CI
/// machines are slow and a restart after SIGKILL runs recovery first.
pub const BROKER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the harness looks for the `listeners` file.
const BROKER_START_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a start with fixed ports is retried while a port is still in use.
const PORT_IN_USE_RETRY_TIMEOUT: Duration = Duration::from_secs(15);
const PORT_IN_USE_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// How long a broker may take to exit after SIGTERM before the test fails.
pub const BROKER_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the broker log printed when a test fails.
const BROKER_LOG_TAIL_LINES: usize = 150;
/// librdkafka warnings and errors kept per client for printing when a test fails.
const CLIENT_LOG_LINES_MAX: usize = 200;

/// How a test wants its broker started.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// `--cores N`: shards, each its own Kafka node.
    pub cores: usize,
    /// When true, the harness picks consecutive free ports once and passes `--port P` on every
    /// start, so clients keep working across restarts (docs/architecture.md: shard i listens on P+i).
    /// When false, every start passes `--port 0`.
    pub ports_fixed: bool,
    /// Further `spate serve` arguments, e.g. `["--default-partitions", "8"]`.
    pub args: Vec<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            cores: cores_default(),
            ports_fixed: false,
            args: Vec::new(),
        }
    }
}

/// Two shards when the machine has two cores: enough to test routing across nodes without
/// oversubscribing a small CI machine.
pub fn cores_default() -> usize {
    thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 2)
}

/// One listener line of `DATA_DIR/listeners`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub node_id: i32,
    pub address: String,
}

/// A running `spate serve` process on its own data directory.
pub struct Broker {
    config: BrokerConfig,
    /// Holds the temporary directory; removed on drop (kept if `SPATE_TEST_KEEP` is set and the
    /// test failed).
    dir: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    log_path: PathBuf,
    port_base: Option<u16>,
    child: Option<Child>,
    listeners: Vec<Listener>,
    start_count: u32,
    /// Whether `data_dir` is a tmpfs this harness mounted (unmounted on drop).
    tmpfs_mounted: bool,
}

impl Broker {
    /// Starts a broker with `--port 0`, the default core count and `args`.
    pub fn start(args: &[&str]) -> Broker {
        Broker::start_with(BrokerConfig {
            args: args.iter().map(|arg| arg.to_string()).collect(),
            ..BrokerConfig::default()
        })
    }

    pub fn start_with(config: BrokerConfig) -> Broker {
        let mut broker = Broker::unstarted(config);
        broker.spawn();
        broker
    }

    /// Starts a broker whose data directory is a tmpfs of `size_bytes` (a disk that fills up for
    /// real), or says why it cannot: mounting needs root, and O_DIRECT on tmpfs Linux 6.6+.
    pub fn start_on_tmpfs(config: BrokerConfig, size_bytes: u64) -> Result<Broker, String> {
        let mut broker = Broker::unstarted(config);
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}"), "tmpfs"])
            .arg(&broker.data_dir)
            .output()
            .map_err(|error| format!("running mount: {error}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        broker.tmpfs_mounted = true;
        let probe = broker.data_dir.join("direct-probe");
        {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .write(true)
                .create(true)
                .custom_flags(libc::O_DIRECT)
                .open(&probe)
                .map_err(|error| format!("no O_DIRECT on tmpfs here: {error}"))?;
        }
        fs::remove_file(&probe).map_err(|error| error.to_string())?;
        broker.spawn();
        Ok(broker)
    }

    /// A broker in its own temporary directory, not started yet.
    fn unstarted(config: BrokerConfig) -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("spate-test-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("create the broker's temporary directory");
        let data_dir = dir.path().join("data");
        fs::create_dir_all(&data_dir).expect("create the data directory");
        let log_path = dir.path().join("broker.log");
        let port_base = config
            .ports_fixed
            .then(|| ports_consecutive_free(config.cores));
        Broker {
            config,
            dir: Some(dir),
            data_dir,
            log_path,
            port_base,
            child: None,
            listeners: Vec::new(),
            start_count: 0,
            tmpfs_mounted: false,
        }
    }

    /// The broker process's id, for reading its /proc entries.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the broker runs").id()
    }

    /// The broker process's resident set (VmRSS in /proc/PID/status), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the broker's /proc status");
        let line = status
            .lines()
            .find(|line| line.starts_with("VmRSS:"))
            .expect("a VmRSS line");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS in kB");
        kib * 1024
    }

    /// "127.0.0.1:PORT" of node 0, the bootstrap address.
    pub fn bootstrap(&self) -> String {
        assert!(!self.listeners.is_empty(), "broker is not running");
        self.listeners[0].address.clone()
    }

    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn cores(&self) -> usize {
        self.config.cores
    }

    /// SIGTERM, expect exit code 0, then start again on the same data directory.
    pub fn restart(&mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "broker exited with {status} after SIGTERM"
        );
        self.spawn();
    }

    /// SIGKILL the broker and reap it; `start_again` brings it back.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("kill9: broker is not running");
        child.kill().expect("SIGKILL the broker");
        child.wait().expect("reap the broker");
        self.listeners.clear();
    }

    /// Starts the broker again after `kill9` (same data directory, same ports if fixed).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again: broker is still running");
        self.spawn();
    }

    /// SIGTERM and expect a clean exit (code 0). Tests call this at their end so every test also
    /// checks clean shutdown.
    pub fn stop(mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "broker exited with {status} after SIGTERM"
        );
    }

    /// SIGTERM and wait, bounded; returns the exit status.
    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("terminate: broker is not running");
        self.listeners.clear();
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: `pid` is our own unreaped child, so it cannot name another process.
        let result = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(result, 0, "SIGTERM the broker");
        let deadline = Instant::now() + BROKER_STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the broker") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("broker did not exit within {BROKER_STOP_TIMEOUT:?} of SIGTERM");
            }
            thread::sleep(BROKER_START_POLL_INTERVAL);
        }
    }

    /// Starts the broker process and waits for its listeners. With fixed ports, a start that
    /// fails because a port is still in use is retried for a while: after SIGKILL the kernel
    /// may release the dead process's listening sockets only after it was reaped (its io_uring
    /// is torn down asynchronously).
    fn spawn(&mut self) {
        let started = Instant::now();
        let mut start_timed_out = false;
        loop {
            let log_position = fs::metadata(&self.log_path).map_or(0, |m| m.len());
            match self.spawn_once() {
                Ok(Some(listeners)) => {
                    self.listeners = listeners;
                    return;
                }
                Ok(None) if !start_timed_out => {
                    // A start that never finishes is a rare glommio 0.9 start-up stall (a
                    // shard waiting on a wake-up that never comes); the thread stacks are in
                    // broker.log. Killed and started once more, so one stall does not fail the
                    // test, and a second one does.
                    start_timed_out = true;
                    eprintln!(
                        "harness: broker start {} did not finish within {BROKER_START_TIMEOUT:?} \
                         (stacks in {}); killing it and starting again once",
                        self.start_count,
                        self.log_path.display()
                    );
                    if let Some(mut child) = self.child.take() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
                Ok(None) => panic!(
                    "broker start {} did not finish within {BROKER_START_TIMEOUT:?} twice",
                    self.start_count
                ),
                Err(status) => {
                    let log_since = log_since(&self.log_path, log_position);
                    let retry = self.port_base.is_some()
                        && log_since.contains("Address already in use")
                        && started.elapsed() < PORT_IN_USE_RETRY_TIMEOUT;
                    if !retry {
                        panic!("broker exited with {status} before listening");
                    }
                    eprintln!(
                        "harness: broker start {} found a port still in use; retrying",
                        self.start_count
                    );
                    self.log_ports_in_use();
                    thread::sleep(PORT_IN_USE_RETRY_INTERVAL);
                }
            }
        }
    }

    /// Appends the kernel stack and wait channel of every thread of the (hung) broker to
    /// broker.log, so a start that never finishes shows where it waits.
    fn log_process_stacks(&self) {
        let Some(child) = self.child.as_ref() else {
            return;
        };
        let mut text = String::new();
        let task_dir = format!("/proc/{}/task", child.id());
        for entry in fs::read_dir(&task_dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let read = |name: &str| fs::read_to_string(path.join(name)).unwrap_or_default();
            text.push_str(&format!(
                "thread {} ({}) state {} wchan {}\n{}\n",
                entry.file_name().to_string_lossy(),
                read("comm").trim(),
                read("stat").split(' ').nth(2).unwrap_or("?"),
                read("wchan"),
                read("stack")
            ));
        }
        if let Ok(mut log) = OpenOptions::new().append(true).open(&self.log_path) {
            let _ = writeln!(log, "=== harness: broker start timed out; threads:\n{text}");
        }
    }

    /// Appends `ss` output about the fixed ports to broker.log, to show who holds them.
    fn log_ports_in_use(&self) {
        let Some(port_base) = self.port_base else {
            return;
        };
        let filter = (0..self.config.cores)
            .map(|i| format!("sport = :{}", port_base as usize + i))
            .collect::<Vec<_>>()
            .join(" or ");
        let output = Command::new("ss").args(["-tanpe", &filter]).output();
        let text = match output {
            Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
            Err(error) => format!("cannot run ss: {error}"),
        };
        if let Ok(mut log) = OpenOptions::new().append(true).open(&self.log_path) {
            let _ = writeln!(
                log,
                "=== harness: port in use, retrying; ss {filter}:\n{text}"
            );
        }
    }

    /// One start attempt: the listeners, or the exit status if the broker exited first.
    /// One start: the listeners, `None` if the broker did not finish starting in time (left
    /// running, its thread stacks appended to broker.log), or its exit status if it exited.
    fn spawn_once(&mut self) -> Result<Option<Vec<Listener>>, ExitStatus> {
        assert!(self.child.is_none());
        self.start_count += 1;
        let listeners_path = self.data_dir.join("listeners");
        // A previous run's file names ports that are gone; the new one appears once every
        // shard of this run listens.
        match fs::remove_file(&listeners_path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => panic!("remove {}: {error}", listeners_path.display()),
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open broker.log");
        let port = self.port_base.unwrap_or(0).to_string();
        let cores = self.config.cores.to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_spate"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--port", &port, "--cores", &cores, "--host", "127.0.0.1"])
            .args(&self.config.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone broker.log"))
            .stderr(log.try_clone().expect("clone broker.log"))
            .env("NO_COLOR", "1");
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
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
            log,
            "=== harness: start {} of broker: {command:?}",
            self.start_count
        )
        .expect("write broker.log");
        let child = command.spawn().expect("spawn spate serve");
        self.child = Some(child);
        self.wait_for_listeners(&listeners_path)
    }

    fn wait_for_listeners(
        &mut self,
        listeners_path: &Path,
    ) -> Result<Option<Vec<Listener>>, ExitStatus> {
        let started = Instant::now();
        loop {
            match fs::read_to_string(listeners_path) {
                Ok(text) => return Ok(Some(self.parse_listeners(&text))),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => panic!("read {}: {error}", listeners_path.display()),
            }
            let child = self.child.as_mut().expect("broker child");
            if let Some(status) = child.try_wait().expect("poll the broker") {
                self.child = None;
                return Err(status);
            }
            if started.elapsed() > BROKER_START_TIMEOUT {
                self.log_process_stacks();
                return Ok(None);
            }
            thread::sleep(BROKER_START_POLL_INTERVAL);
        }
    }

    fn parse_listeners(&self, text: &str) -> Vec<Listener> {
        let listeners: Vec<Listener> = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let (node_id, address) = line.trim().split_once(' ').unwrap_or_else(|| {
                    panic!("listeners line {line:?}: want `<node_id> <host>:<port>`")
                });
                let node_id = node_id
                    .parse()
                    .unwrap_or_else(|_| panic!("listeners line {line:?}: node id"));
                Listener {
                    node_id,
                    address: address.trim().to_string(),
                }
            })
            .collect();
        assert_eq!(
            listeners.len(),
            self.config.cores,
            "one listener per shard, got {text:?}"
        );
        for (index, listener) in listeners.iter().enumerate() {
            assert_eq!(
                listener.node_id, index as i32,
                "listeners in node order, got {text:?}"
            );
            assert!(
                listener.address.starts_with("127.0.0.1:"),
                "listener on loopback, got {text:?}"
            );
            if let Some(port_base) = self.port_base {
                let port_want = format!("127.0.0.1:{}", port_base as usize + index);
                assert_eq!(
                    listener.address, port_want,
                    "shard {index} on --port P + {index}"
                );
            }
        }
        listeners
    }

    /// The last `lines` lines of broker.log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.tmpfs_mounted {
            // Lazy: the dead broker's io_uring may hold its files a moment longer, and a plain
            // umount would then fail with EBUSY and leave the mount behind.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.data_dir)
                .status();
        }
        if thread::panicking() {
            eprintln!(
                "---- broker log {} (last {BROKER_LOG_TAIL_LINES} lines) ----\n{}---- end of broker log ----",
                self.log_path.display(),
                self.log_tail(BROKER_LOG_TAIL_LINES)
            );
            if std::env::var_os("SPATE_TEST_KEEP").is_some()
                && let Some(dir) = self.dir.take()
            {
                eprintln!("SPATE_TEST_KEEP: kept {}", dir.keep().display());
            }
        }
    }
}

/// broker.log from byte `position` on.
fn log_since(path: &Path, position: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(position)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn log_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..]
        .iter()
        .map(|line| format!("{line}\n"))
        .collect()
}

/// Picks `count` consecutive ports that are free on 127.0.0.1, starting from one the OS assigns.
/// Racy by nature (another process may take one before the broker binds it), which is why only
/// tests that need stable ports across restarts use it.
fn ports_consecutive_free(count: usize) -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base = first.local_addr().expect("local addr").port();
        if base as usize + count > u16::MAX as usize {
            continue;
        }
        let rest: Result<Vec<TcpListener>, _> = (1..count)
            .map(|i| TcpListener::bind(("127.0.0.1", base + i as u16)))
            .collect();
        if rest.is_ok() {
            return base;
        }
    }
    panic!("found no {count} consecutive free ports on 127.0.0.1");
}

// ---------------------------------------------------------------------------------------------
// librdkafka clients

/// librdkafka warnings and errors of one client, printed if the test panics.
pub struct ClientLog {
    name: String,
    lines: Mutex<VecDeque<String>>,
}

impl ClientLog {
    pub fn new(name: &str) -> Arc<ClientLog> {
        Arc::new(ClientLog {
            name: name.to_string(),
            lines: Mutex::new(VecDeque::new()),
        })
    }

    pub fn push(&self, line: String) {
        let mut lines = self
            .lines
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if lines.len() == CLIENT_LOG_LINES_MAX {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl Drop for ClientLog {
    fn drop(&mut self) {
        if thread::panicking() {
            let lines = self
                .lines
                .get_mut()
                .unwrap_or_else(|poison| poison.into_inner());
            eprintln!("---- librdkafka log of {} ----", self.name);
            for line in lines.iter() {
                eprintln!("{line}");
            }
        }
    }
}

/// One delivery report.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The id the test gave the record (the delivery opaque).
    pub id: usize,
    pub partition: i32,
    pub offset: i64,
    pub error: Option<KafkaError>,
    /// When the delivery callback ran (the acknowledgement reached the client).
    pub at: Instant,
}

/// Client context of every test client: keeps librdkafka warnings, collects delivery reports.
pub struct TestContext {
    pub log: Arc<ClientLog>,
    pub deliveries: Mutex<Vec<Delivery>>,
    /// Set when librdkafka reports a fatal error (the idempotent producer gave up).
    pub fatal: Mutex<Option<String>>,
}

impl TestContext {
    pub fn new(name: &str) -> TestContext {
        TestContext {
            log: ClientLog::new(name),
            deliveries: Mutex::new(Vec::new()),
            fatal: Mutex::new(None),
        }
    }

    /// Takes the delivery reports collected so far.
    pub fn deliveries_take(&self) -> Vec<Delivery> {
        std::mem::take(&mut *self.deliveries.lock().unwrap())
    }

    pub fn deliveries_count(&self) -> usize {
        self.deliveries.lock().unwrap().len()
    }

    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap().clone()
    }
}

impl ClientContext for TestContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if level as i32 <= RDKafkaLogLevel::Warning as i32 {
            self.log.push(format!("{level:?} {fac} {log_message}"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let fatal = matches!(&error, KafkaError::Global(code) if *code == rdkafka::types::RDKafkaErrorCode::Fatal);
        if fatal {
            *self.fatal.lock().unwrap() = Some(format!("{error}: {reason}"));
        }
        self.log.push(format!("error callback: {error}: {reason}"));
    }
}

impl ConsumerContext for TestContext {}

impl ProducerContext for TestContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, delivery_result: &DeliveryResult<'_>, id: usize) {
        let delivery = match delivery_result {
            Ok(message) => Delivery {
                id,
                partition: message.partition(),
                offset: message.offset(),
                error: None,
                at: Instant::now(),
            },
            Err((error, message)) => Delivery {
                id,
                partition: message.partition(),
                offset: message.offset(),
                error: Some(error.clone()),
                at: Instant::now(),
            },
        };
        self.deliveries.lock().unwrap().push(delivery);
    }
}

pub type TestProducer = rdkafka::producer::ThreadedProducer<TestContext>;
pub type TestConsumer = BaseConsumer<TestContext>;

/// Settings shared by every test client: quick reconnects, so a restarted broker is found fast.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "spate-tests")
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "500")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "1000");
    config
}

/// A producer with `settings` on top of `client_config`.
pub fn producer(bootstrap: &str, settings: &[(&str, &str)]) -> TestProducer {
    let mut config = client_config(bootstrap);
    config
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "30000");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config
        .create_with_context(TestContext::new("producer"))
        .expect("create producer")
}

/// A consumer for `assign()` only: librdkafka requires a group.id for assign, but nothing is
/// committed and no group is joined.
pub fn consumer(bootstrap: &str, settings: &[(&str, &str)]) -> TestConsumer {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", "spate-tests-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("check.crcs", "true")
        .set("fetch.wait.max.ms", "100");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config
        .create_with_context(TestContext::new("consumer"))
        .expect("create consumer")
}

/// Sends one record, retrying while librdkafka's local queue is full.
pub fn send(producer: &TestProducer, record: rdkafka::producer::BaseRecord<'_, [u8], [u8], usize>) {
    let mut record = record;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                back,
            )) => {
                assert!(
                    Instant::now() < deadline,
                    "producer queue stayed full for 60 s"
                );
                record = back;
                thread::sleep(Duration::from_millis(1));
            }
            Err((error, _)) => panic!("enqueue record: {error}"),
        }
    }
}

/// Flushes and returns all delivery reports, failing on any delivery error.
pub fn flush_all_delivered(producer: &TestProducer, count_want: usize) -> Vec<Delivery> {
    use rdkafka::producer::Producer;
    producer
        .flush(Duration::from_secs(60))
        .expect("flush the producer");
    // The delivery callback runs on the polling thread; the last reports may trail flush().
    let deadline = Instant::now() + Duration::from_secs(10);
    while producer.context().deliveries_count() < count_want && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let deliveries = producer.context().deliveries_take();
    assert_eq!(
        deliveries.len(),
        count_want,
        "one delivery report per record"
    );
    let errors: Vec<&Delivery> = deliveries.iter().filter(|d| d.error.is_some()).collect();
    assert!(
        errors.is_empty(),
        "{} delivery errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    deliveries
}

/// Creates `topic` through the Admin API (CreateTopics) and waits until Metadata names a leader
/// for every partition.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<TestContext> = client_config(bootstrap)
        .create_with_context(TestContext::new("admin"))
        .expect("create admin client");
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        new_topic = new_topic.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures_executor::block_on(admin.create_topics([&new_topic], &options))
        .expect("CreateTopics request");
    for result in results {
        if let Err((name, code)) = result {
            panic!("CreateTopics {name}: {code:?}");
        }
    }
    wait_for_leaders(bootstrap, topic, partitions);
}

/// Waits (bounded) until Metadata lists `partitions` partitions of `topic`, each with a leader.
pub fn wait_for_leaders(bootstrap: &str, topic: &str, partitions: i32) {
    let client: BaseConsumer<TestContext> = client_config(bootstrap)
        .create_with_context(TestContext::new("metadata"))
        .expect("create metadata client");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        match client.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(metadata) => {
                let ready = metadata.topics().iter().any(|t| {
                    t.name() == topic
                        && t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions()
                            .iter()
                            .all(|p| p.leader() >= 0 && p.error().is_none())
                });
                if ready {
                    return;
                }
                last = format!(
                    "{:?}",
                    metadata
                        .topics()
                        .iter()
                        .map(|t| (t.name(), t.error(), t.partitions().len()))
                        .collect::<Vec<_>>()
                );
            }
            Err(error) => last = error.to_string(),
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("topic {topic} has no leader for all {partitions} partitions after 20 s; last: {last}");
}

/// One consumed record, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    pub fn from_message<M: Message>(message: &M) -> Record {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        }
    }
}

/// Assigns `starts` (partition, start offset) of `topic` to `consumer`.
pub fn assign(consumer: &TestConsumer, topic: &str, starts: &[(i32, Offset)]) {
    let mut assignment = TopicPartitionList::new();
    for (partition, offset) in starts {
        assignment
            .add_partition_offset(topic, *partition, *offset)
            .expect("add partition");
    }
    consumer.assign(&assignment).expect("assign");
}

/// Assigns `starts` (partition, start offset) of `topic` and polls until `count_want[i]` records
/// of partition `starts[i].0` arrived, failing after `timeout`. Then polls `linger` longer so extra
/// records (duplicates, records past the expected end) show up in the result.
pub fn consume(
    consumer: &TestConsumer,
    topic: &str,
    starts: &[(i32, Offset)],
    count_want: &[usize],
    timeout: Duration,
    linger: Duration,
) -> BTreeMap<i32, Vec<Record>> {
    assert_eq!(starts.len(), count_want.len());
    assign(consumer, topic, starts);
    let want: BTreeMap<i32, usize> = starts
        .iter()
        .map(|(p, _)| *p)
        .zip(count_want.iter().copied())
        .collect();
    poll_until(consumer, topic, &want, timeout, linger)
}

/// Polls the already assigned `consumer` until `want[partition]` records of each partition
/// arrived, failing after `timeout`; then polls `linger` longer.
pub fn poll_until(
    consumer: &TestConsumer,
    topic: &str,
    want: &BTreeMap<i32, usize>,
    timeout: Duration,
    linger: Duration,
) -> BTreeMap<i32, Vec<Record>> {
    let mut records: BTreeMap<i32, Vec<Record>> = want.keys().map(|p| (*p, Vec::new())).collect();
    let done =
        |records: &BTreeMap<i32, Vec<Record>>| want.iter().all(|(p, n)| records[p].len() >= *n);
    let deadline = Instant::now() + timeout;
    let mut errors = Vec::new();
    while !done(&records) {
        if Instant::now() > deadline {
            let got: Vec<(i32, usize, usize)> = want
                .iter()
                .map(|(p, n)| (*p, records[p].len(), *n))
                .collect();
            panic!(
                "consume {topic}: timed out after {timeout:?}; (partition, got, want): {got:?}; errors: {errors:?}"
            );
        }
        poll_into(
            consumer,
            &mut records,
            &mut errors,
            Duration::from_millis(100),
        );
    }
    let linger_end = Instant::now() + linger;
    while Instant::now() < linger_end {
        poll_into(
            consumer,
            &mut records,
            &mut errors,
            Duration::from_millis(20),
        );
    }
    records
}

fn poll_into(
    consumer: &TestConsumer,
    records: &mut BTreeMap<i32, Vec<Record>>,
    errors: &mut Vec<String>,
    timeout: Duration,
) {
    match consumer.poll(timeout) {
        None => {}
        Some(Ok(message)) => {
            let record = Record::from_message(&message);
            records.entry(record.partition).or_default().push(record);
        }
        Some(Err(error)) if errors.len() < 20 => errors.push(error.to_string()),
        Some(Err(_)) => {}
    }
}

/// (low, high) watermarks of one partition, from ListOffsets.
pub fn watermarks(consumer: &TestConsumer, topic: &str, partition: i32) -> (i64, i64) {
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("fetch watermarks")
}

// ---------------------------------------------------------------------------------------------
// The stored log, read directly

/// The header fields of one stored RecordBatch v2 (Kafka's DefaultRecordBatch layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub producer_id: i64,
    pub records_count: i32,
}

impl BatchHeader {
    /// Compression codec, attribute bits 0-2: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn codec(&self) -> i16 {
        self.attributes & 0x7
    }
}

const BATCH_HEADER_BYTES: usize = 61;

/// The batches of the first segment of `topic`-`partition`, in file order, up to the first
/// all-zero length (the preallocated, unwritten rest of the segment).
pub fn segment_batches(data_dir: &Path, topic: &str, partition: i32) -> Vec<BatchHeader> {
    let path = data_dir
        .join(format!("{topic}-{partition}"))
        .join("00000000000000000000.log");
    let bytes = fs::read(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    let mut batches = Vec::new();
    let mut position = 0usize;
    while position + BATCH_HEADER_BYTES <= bytes.len() {
        let b = &bytes[position..];
        let be_i64 = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().unwrap());
        let be_i32 = |at: usize| i32::from_be_bytes(b[at..at + 4].try_into().unwrap());
        let batch_length = be_i32(8);
        if batch_length <= 0 {
            break;
        }
        assert_eq!(
            b[16],
            2,
            "{}: batch at file position {position}: magic",
            path.display()
        );
        let header = BatchHeader {
            base_offset: be_i64(0),
            batch_length,
            attributes: i16::from_be_bytes([b[21], b[22]]),
            last_offset_delta: be_i32(23),
            producer_id: be_i64(43),
            records_count: be_i32(57),
        };
        batches.push(header);
        position += 12 + batch_length as usize;
    }
    assert!(
        position <= bytes.len(),
        "{}: last batch runs past the end of the file",
        path.display()
    );
    batches
}

/// Checks the stored batches of a partition: offsets contiguous from 0, `records_total` records in
/// all, every batch with compression `codec`. Returns the batches.
pub fn assert_stored_batches(
    data_dir: &Path,
    topic: &str,
    partition: i32,
    records_total: usize,
    codec: i16,
) -> Vec<BatchHeader> {
    let batches = segment_batches(data_dir, topic, partition);
    assert!(
        !batches.is_empty(),
        "{topic}-{partition}: no stored batches"
    );
    let mut offset_next = 0i64;
    for batch in &batches {
        assert_eq!(
            batch.base_offset, offset_next,
            "{topic}-{partition}: batch base offsets contiguous"
        );
        assert_eq!(
            batch.records_count,
            batch.last_offset_delta + 1,
            "{topic}-{partition}: records count"
        );
        assert_eq!(
            batch.codec(),
            codec,
            "{topic}-{partition}: batch at offset {} stored with codec {} (attributes {:#x}), want {codec}",
            batch.base_offset,
            batch.codec(),
            batch.attributes
        );
        offset_next += i64::from(batch.records_count);
    }
    assert_eq!(
        offset_next, records_total as i64,
        "{topic}-{partition}: records stored"
    );
    batches
}

// ---------------------------------------------------------------------------------------------
// Small utilities

/// A xorshift64* generator: deterministic from a printed seed, so a failing random schedule can be
/// replayed (no rand dependency needed for a few numbers).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// Seeds from `SPATE_TEST_SEED` if set, else from the clock; prints the seed.
    pub fn from_env_or_clock(name: &str) -> Rng {
        let seed = std::env::var("SPATE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{name}: seed {seed} (replay with SPATE_TEST_SEED={seed})");
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [low, high).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low)
    }
}

/// Sets its flag when dropped, so a helper thread polling the flag stops even when the test
/// panics before it would have set it.
pub struct StopOnDrop(pub Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs `command` with `stdin` as its input, failing the test if it runs longer than `timeout`
/// (the child is killed first).
pub fn run_with_timeout(
    command: &mut Command,
    stdin: &[u8],
    timeout: Duration,
) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("spawn {command:?}: {error}"));
    let mut child_stdin = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = child_stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stdout.read_to_end(&mut buffer);
        buffer
    });
    let err_reader = thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stderr.read_to_end(&mut buffer);
        buffer
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_reader.join().unwrap_or_default();
            panic!(
                "{command:?} ran longer than {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    writer.join().expect("stdin writer");
    std::process::Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}
