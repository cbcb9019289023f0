//! A data dir keeps the identity it was first started with (DATA_DIR/meta.properties): another
//! --node-id, cluster flags on single-node data, or no cluster flags on cluster data make the real
//! `spate serve` exit non-zero with a message saying why, before any shard starts, and leave the
//! identity file as it was.

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a start may take to serve, or to be refused.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a broker may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A `spate serve` child, SIGKILLed on drop unless it already exited.
struct Serve {
    child: Child,
    stderr_path: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Serve {
    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Its exit status if it exits within `timeout`.
    fn exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            thread::sleep(POLL_INTERVAL);
        }
        None
    }

    /// SIGTERMs it and waits for its exit.
    fn terminate(&mut self) -> ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: `pid` is our own child, not reaped yet (Serve reaps only in drop or here).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        self.exit_within(STOP_TIMEOUT)
            .unwrap_or_else(|| panic!("no exit after SIGTERM:\n{}", self.stderr()))
    }
}

/// A data dir on the target dir's file system (ext4 here, so O_DIRECT works).
fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("spate-identity-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `--node-id id --controller-quorum-voters id@127.0.0.1:<free port>`.
fn cluster_flags(id: u32) -> Vec<String> {
    vec![
        "--node-id".to_owned(),
        id.to_string(),
        "--controller-quorum-voters".to_owned(),
        format!("{id}@127.0.0.1:{}", free_port()),
    ]
}

/// Spawns `spate serve` with one shard on `dir/data`, its stderr in `dir/<log_name>`.
fn spawn(dir: &Path, log_name: &str, args: &[String]) -> Serve {
    let data_dir = dir.join("data");
    let _ = fs::remove_file(data_dir.join("listeners"));
    let stderr_path = dir.join(log_name);
    let mut command = Command::new(env!("CARGO_BIN_EXE_spate"));
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--port", "0", "--host", "127.0.0.1", "--cores", "1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path).unwrap())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info");
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Serve {
        child: command.spawn().unwrap(),
        stderr_path,
    }
}

fn meta_properties(dir: &Path) -> String {
    fs::read_to_string(dir.join("data").join("meta.properties")).unwrap_or_default()
}

/// Starts a broker that must come up, then SIGTERMs it. A cluster-mode broker may wait for its
/// controller instead of serving; then its written identity file is enough.
fn start_and_stop(dir: &Path, args: &[String], cluster_mode: bool) {
    let mut serve = spawn(dir, "first.log", args);
    let listeners = dir.join("data").join("listeners");
    let deadline = Instant::now() + START_TIMEOUT;
    while !listeners.exists() && Instant::now() < deadline {
        if let Some(status) = serve.child.try_wait().unwrap() {
            panic!("the first start exited {status}:\n{}", serve.stderr());
        }
        thread::sleep(POLL_INTERVAL);
    }
    assert!(
        listeners.exists() || cluster_mode,
        "a single-node broker did not serve:\n{}",
        serve.stderr()
    );
    let mode = if cluster_mode { "cluster" } else { "single" };
    assert!(
        meta_properties(dir).contains(&format!("mode={mode}\n")),
        "meta.properties: {:?}\n{}",
        meta_properties(dir),
        serve.stderr()
    );
    let status = serve.terminate();
    assert!(
        status.success() || cluster_mode,
        "exited {status}:\n{}",
        serve.stderr()
    );
}

/// Starts a broker that must be refused: returns its stderr, and checks the identity file did
/// not change.
fn refused(dir: &Path, args: &[String]) -> String {
    let before = meta_properties(dir);
    let mut serve = spawn(dir, "refused.log", args);
    let status = serve
        .exit_within(START_TIMEOUT)
        .unwrap_or_else(|| panic!("the broker was not refused:\n{}", serve.stderr()));
    assert!(!status.success(), "exited {status}:\n{}", serve.stderr());
    assert!(!dir.join("data").join("listeners").exists());
    assert_eq!(meta_properties(dir), before);
    serve.stderr()
}

#[test]
fn a_cluster_data_dir_refuses_another_node_id() {
    // Proves a data dir first started as node 1 is refused to a broker started as node 2, with
    // both ids named on stderr.
    let dir = temp_dir();
    start_and_stop(dir.path(), &cluster_flags(1), true);
    assert!(meta_properties(dir.path()).contains("node.id=1\n"));
    let stderr = refused(dir.path(), &cluster_flags(2));
    assert!(
        stderr.contains("belongs to node 1, but this broker was started with --node-id 2"),
        "{stderr}"
    );
}

#[test]
fn a_single_node_data_dir_refuses_cluster_flags() {
    // Proves data written by a single node (started without cluster flags, stopped cleanly)
    // cannot be started as a cluster member.
    let dir = temp_dir();
    start_and_stop(dir.path(), &[], false);
    assert!(meta_properties(dir.path()).contains("node.id=0\n"));
    let stderr = refused(dir.path(), &cluster_flags(0));
    assert!(stderr.contains("holds single-node data"), "{stderr}");
    assert!(stderr.contains("cannot join a cluster"), "{stderr}");
    // The same dir still serves as a single node.
    start_and_stop(dir.path(), &[], false);
}

#[test]
fn a_cluster_data_dir_refuses_a_single_node_start() {
    // Proves data written by cluster node 3 cannot be started without cluster flags.
    let dir = temp_dir();
    start_and_stop(dir.path(), &cluster_flags(3), true);
    let stderr = refused(dir.path(), &[]);
    assert!(stderr.contains("belongs to cluster node 3"), "{stderr}");
    assert!(stderr.contains("--controller-quorum-voters"), "{stderr}");
}

#[test]
fn inconsistent_cluster_flags_are_refused_before_the_data_dir_is_formatted() {
    // Proves a --node-id without a quorum is refused with the flag to fix, writing no identity.
    let dir = temp_dir();
    let stderr = refused(dir.path(), &["--node-id".to_owned(), "1".to_owned()]);
    assert!(
        stderr.contains("--node-id needs --controller-quorum-voters"),
        "{stderr}"
    );
    assert!(!dir.path().join("data").join("meta.properties").exists());
}
