//! One `spate serve` process of a test cluster: its arguments, its files (data directory,
//! stdout.log, stderr.log), and the signals a test sends it.
//!
//! The child gets `PR_SET_PDEATHSIG`, so it dies with the thread that spawned it; `Drop` SIGCONTs
//! (if stopped) and SIGKILLs it and reaps it.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long one broker may take from spawn to its `listeners` file before its start counts as
/// stalled. A start takes well under a second here, recovery after SIGKILL included.
pub const BROKER_START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a restart is retried while the broker exits because a port is still in use: after
/// SIGKILL the kernel may release a dead process's listening sockets only after its io_uring is
/// torn down.
const PORT_IN_USE_RETRY_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between polls for the listeners file.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

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
    /// Length of stderr.log when the last start began, to read what that start wrote.
    start_position: u64,
    /// How long a start may take before it counts as stalled.
    start_timeout: Duration,
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
            start_position: 0,
            start_timeout: BROKER_START_TIMEOUT,
        }
    }

    /// How long a start may take before it counts as stalled (`BROKER_START_TIMEOUT` unless
    /// set).
    pub fn set_start_timeout(&mut self, timeout: Duration) {
        self.start_timeout = timeout;
    }

    /// Starts so far.
    pub fn start_count(&self) -> u32 {
        self.start_count
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
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

    /// Starts the process with `args` (its own or edited ones) without waiting.
    pub fn spawn_with(&mut self, args: &[String]) {
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
        self.start_position = fs::metadata(&self.stderr_path).map_or(0, |m| m.len());
        self.child = Some(command.spawn().expect("spawn spate serve"));
        self.stopped = false;
    }

    /// Starts the broker with `args` and waits (bounded by `timeout`) for its listeners file or
    /// its exit. A broker still starting at the timeout is left running and reported as an error.
    pub fn start_with(
        &mut self,
        args: &[String],
        timeout: Duration,
    ) -> Result<StartOutcome, String> {
        self.spawn_with(args);
        self.wait_start(timeout)
    }

    /// Waits (bounded by `timeout`) for the listeners file or the exit of the process started
    /// last.
    fn wait_start(&mut self, timeout: Duration) -> Result<StartOutcome, String> {
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
                    stderr: read_from(&self.stderr_path, self.start_position),
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

    /// Starts the broker with its own arguments and waits until it is ready (`finish_start`).
    pub fn start(&mut self) -> Result<(), String> {
        let args = self.args.clone();
        self.spawn_with(&args);
        self.finish_start()
    }

    /// Waits until the process started last is ready. A start that exits because a port is still
    /// in use is retried for a while. A start that never finishes is the rare glommio start-up
    /// stall tests/common/mod.rs describes (a shard waiting for a wake-up that never comes): its
    /// thread stacks go to stderr.log and it is killed and started once more, so one stall does
    /// not fail the test and a second one does.
    pub fn finish_start(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let mut stalled_before = false;
        loop {
            match self.wait_start(self.start_timeout) {
                Ok(StartOutcome::Ready) => return Ok(()),
                Ok(StartOutcome::Exited { status, stderr }) => {
                    let port_in_use = stderr.contains("Address already in use")
                        && started.elapsed() < PORT_IN_USE_RETRY_TIMEOUT;
                    if !port_in_use {
                        return Err(format!(
                            "broker {} exited with {status} while starting",
                            self.index
                        ));
                    }
                    thread::sleep(Duration::from_millis(100));
                }
                Err(stalled) => {
                    self.log_thread_stacks();
                    self.kill();
                    if stalled_before {
                        return Err(format!("{stalled}, twice (thread stacks in stderr.log)"));
                    }
                    stalled_before = true;
                    eprintln!(
                        "cluster harness: {stalled} (thread stacks in {}); killed, starting it once more",
                        self.stderr_path.display()
                    );
                }
            }
            let args = self.args.clone();
            self.spawn_with(&args);
        }
    }

    /// Appends the kernel stack and wait channel of every thread of the (hung) broker to
    /// stderr.log, so a start that never finishes shows where it waits.
    fn log_thread_stacks(&self) {
        let Some(child) = self.child.as_ref() else {
            return;
        };
        let mut text = String::new();
        let task_dir = format!("/proc/{}/task", child.id());
        for entry in fs::read_dir(&task_dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let read = |name: &str| fs::read_to_string(path.join(name)).unwrap_or_default();
            text.push_str(&format!(
                "thread {} ({}) state {:?} wchan {}\n{}\n",
                entry.file_name().to_string_lossy(),
                read("comm").trim(),
                process_state(&path.join("stat")),
                read("wchan"),
                read("stack")
            ));
        }
        if let Ok(mut log) = OpenOptions::new().append(true).open(&self.stderr_path) {
            let _ = writeln!(log, "=== harness: start timed out; threads:\n{text}");
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

    /// SIGCONT if stopped, SIGKILL, reap; nothing if not running.
    pub fn kill_if_running(&mut self) {
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
        self.kill_if_running();
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
