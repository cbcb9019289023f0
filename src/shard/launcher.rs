//! Start-up and shutdown of the whole broker, on the main thread (which may block).
//!
//! In order: create the data dir, take its lock (a second broker on it is refused; see
//! `io::data_dir_lock`), check the cluster flags and the data dir's identity (`meta::identity`:
//! another broker id, mode or cluster is refused), warn if it is on a memory file system, load
//! the metadata (a single broker replays its metadata log, a cluster broker reads its copy of
//! what the controller quorum committed), check the group offset stores, remove the partition
//! directories of deleted topics (left by an interrupted deletion), write the iopoll probe file,
//! bind every shard's port (so `--port 0` ports are known before any shard starts and every
//! shard can list them all in Metadata) and a voter's controller port, start one pinned
//! executor per shard, wait until each has opened and recovered its partitions, then publish
//! `DATA_DIR/listeners`. SIGINT or SIGTERM then stops the shards: each closes its partitions
//! (in-flight writes finish, data is synced, files closed) and the process exits 0.

use std::net::TcpListener as StdTcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use crate::cluster::local_state;
use crate::config::BrokerConfig;
use crate::group::offset_store::{self, OffsetStoreError};
use crate::io::data_dir_lock::{DataDirLock, DataDirLockError};
use crate::meta::identity::{self, IdentityError};
use crate::meta::metadata_log::{self, META_DIR_NAME, write_file_atomically};
use crate::meta::{BrokerInfo, ClusterState, MetadataChange, Node, ShardId};

use super::mesh::{MeshEnds, build_mesh};
use super::shard_main::{ShardStart, shard_main};

/// The file listing each shard's address once all of them serve: `<node id> <host>:<port>` lines.
pub const LISTENERS_FILE_NAME: &str = "listeners";

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A file-system step failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another broker holds the data dir, or its lock could not be taken.
    #[error(transparent)]
    Lock(#[from] DataDirLockError),
    /// The data dir belongs to another broker, mode or cluster, or its identity is unreadable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The metadata log could not be read, or is corrupt.
    #[error(transparent)]
    Meta(#[from] metadata_log::MetaError),
    /// A cluster broker's copy of the cluster metadata could not be read.
    #[error(transparent)]
    LocalState(#[from] local_state::LocalStateError),
    /// A group offset store could not be read, or is corrupt.
    #[error(transparent)]
    Offsets(#[from] OffsetStoreError),
    /// A configuration that cannot work.
    #[error("{0}")]
    Config(String),
    /// A shard failed while starting.
    #[error("shard {shard} failed to start: {reason}")]
    Shard {
        /// The shard.
        shard: u16,
        /// Why.
        reason: String,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let what = what.into();
    move |source| LaunchError::Io { what, source }
}

/// Runs the broker until SIGINT or SIGTERM.
pub fn run(config: BrokerConfig) -> Result<(), LaunchError> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(io_error("installing signal handlers"))?;
    let broker = start_until(config, Some(&mut signals))?;
    let _ = signals.forever().next();
    broker.stop();
    Ok(())
}

/// A broker running in this process (for `spate bench --embedded` and tests).
pub struct RunningBroker {
    host: String,
    ports: Vec<u16>,
    stop: Arc<AtomicBool>,
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
    /// Held until the broker is dropped, after its shards stopped.
    _lock: DataDirLock,
}

impl RunningBroker {
    /// Every shard's port, by node id.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// `host:port` of shard 0.
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.ports[0])
    }

    /// Stops every shard (partitions closed and synced) and waits for them.
    pub fn stop(self) {
        tracing::info!("stopping: closing partitions");
        self.stop.store(true, Ordering::SeqCst);
        for (index, handle) in self.handles.into_iter().enumerate() {
            if let Err(error) = handle.join() {
                tracing::error!(shard = index, %error, "shard did not stop cleanly");
            }
        }
        tracing::info!("stopped");
    }
}

/// Starts the broker and returns once every shard serves.
pub fn start(config: BrokerConfig) -> Result<RunningBroker, LaunchError> {
    start_until(config, None)
}

/// Starts the broker; a signal in `signals` during start-up aborts it.
fn start_until(
    config: BrokerConfig,
    signals: Option<&mut signal_hook::iterator::Signals>,
) -> Result<RunningBroker, LaunchError> {
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .map_err(io_error(format!("creating {}", data_dir.display())))?;
    let lock = DataDirLock::acquire(&data_dir)?;
    config.validate_cluster().map_err(LaunchError::Config)?;
    let identity = identity::check_or_format(
        &data_dir,
        config.node_id.unwrap_or(0),
        config.cluster_mode(),
    )?;
    tracing::info!(
        node_id = identity.node_id,
        cluster_mode = identity.cluster_mode,
        "data dir identity checked"
    );
    warn_if_memory_file_system(&data_dir);
    let _ = std::fs::remove_file(data_dir.join(LISTENERS_FILE_NAME));
    let broker_id = config.node_id.unwrap_or(0);
    let voter = config
        .controller_quorum_voters
        .iter()
        .find(|voter| voter.id == broker_id)
        .cloned();
    // A single broker replays its metadata log; a cluster broker reads its copy of what the
    // controller quorum committed (src/cluster/local_state.rs).
    let (mut state, applied, metadata_log) = if config.cluster_mode() {
        let local = local_state::load(&data_dir)?;
        tracing::info!(
            topics = local.state.topics().count(),
            applied = local.applied,
            "cluster metadata loaded"
        );
        (local.state, local.applied, None)
    } else {
        let loaded = metadata_log::load(
            &data_dir,
            &config.topic_defaults,
            config.unsafe_truncate_corrupt_metadata,
        )?;
        tracing::info!(
            topics = loaded.state.topics().count(),
            records = loaded.records,
            "metadata loaded"
        );
        (loaded.state, 0, Some((loaded.path, loaded.end_position)))
    };
    offset_store::check_stores(&data_dir, config.unsafe_truncate_corrupt_offsets)?;
    remove_deleted_partition_dirs(&data_dir, &state)?;
    crate::io::probe::write_probe_file(&data_dir)
        .map_err(io_error("writing the iopoll probe file"))?;
    let cpus = shard_cpus(config.cores)?;
    let shard_count = cpus.len();
    for topic in state.topics() {
        let beyond = topic
            .partitions
            .iter()
            .find(|node| node.broker == broker_id && node.shard.index() >= shard_count);
        if let Some(node) = beyond {
            return Err(LaunchError::Config(format!(
                "topic {:?} has a partition on shard {}, but only {shard_count} cores were given; \
                 start with at least {} cores",
                topic.name,
                node.shard.0,
                node.shard.0 + 1
            )));
        }
    }
    let listeners = bind_listeners(&config, shard_count)?;
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(io_error("reading a bound port"))?;
    let mut controller_listener =
        match &voter {
            Some(voter) => Some(bind_retrying(&voter.host, voter.port).map_err(io_error(
                format!("listening for the controller on {}", voter.address()),
            ))?),
            None => None,
        };
    if !config.cluster_mode() {
        // A single broker is its own one-broker cluster; it registers with nobody.
        state.apply(&MetadataChange::BrokerRegistered(BrokerInfo {
            id: 0,
            rack: config.rack.clone(),
            host: config.advertised_host().to_owned(),
            ports: ports.clone(),
            epoch: 1,
            fenced: false,
        }));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_sender, ready) = mpsc::channel();
    let mut handles = Vec::with_capacity(shard_count);
    let mesh: Vec<MeshEnds> = build_mesh(shard_count);
    for (((index, cpu), listener), mesh_ends) in cpus.iter().enumerate().zip(listeners).zip(mesh) {
        let start = ShardStart {
            id: ShardId(index as u16),
            broker_id,
            applied,
            controller_listener: if index == 0 {
                controller_listener.take()
            } else {
                None
            },
            shard_count,
            config: config.clone(),
            ports: ports.clone(),
            cluster: state.clone(),
            listener,
            mesh: mesh_ends,
            metadata_log: if index == 0 {
                metadata_log.clone()
            } else {
                None
            },
            stop: Arc::clone(&stop),
            ready: ready_sender.clone(),
        };
        let handle = LocalExecutorBuilder::new(Placement::Fixed(*cpu))
            .name(&format!("shard-{index}"))
            .io_memory(config.io_memory_bytes)
            .ring_depth(config.ring_depth)
            .preempt_timer(config.preempt)
            .spawn(move || shard_main(start))
            .map_err(|error| LaunchError::Shard {
                shard: index as u16,
                reason: error.to_string(),
            })?;
        handles.push(handle);
    }
    drop(ready_sender);
    let started = wait_until_ready(&ready, shard_count, signals);
    if let Err(error) = started {
        stop.store(true, Ordering::SeqCst);
        for handle in handles {
            let _ = handle.join();
        }
        return Err(error);
    }
    publish_listeners(&config, broker_id, &ports)?;
    Ok(RunningBroker {
        host: config.host.clone(),
        ports,
        stop,
        handles,
        _lock: lock,
    })
}

fn wait_until_ready(
    ready: &mpsc::Receiver<Result<ShardId, String>>,
    shard_count: usize,
    mut signals: Option<&mut signal_hook::iterator::Signals>,
) -> Result<(), LaunchError> {
    let mut started = 0;
    while started < shard_count {
        let signalled = signals
            .as_mut()
            .is_some_and(|signals| signals.pending().next().is_some());
        if signalled {
            return Err(LaunchError::Config(
                "stopped by a signal during start-up".into(),
            ));
        }
        match ready.recv_timeout(STOP_POLL_INTERVAL) {
            Ok(Ok(_)) => started += 1,
            Ok(Err(reason)) => return Err(LaunchError::Shard { shard: 0, reason }),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(LaunchError::Shard {
                    shard: 0,
                    reason: "a shard exited during start-up".into(),
                });
            }
        }
    }
    Ok(())
}

/// The CPUs shards are pinned to: the first `cores` CPUs this process may run on (its affinity
/// mask, so `taskset` chooses them), or all of them.
fn shard_cpus(cores: Option<usize>) -> Result<Vec<usize>, LaunchError> {
    let mut cpus = crate::io::cpus::usable_cpus()
        .map_err(|error| LaunchError::Config(format!("cannot list usable CPUs: {error}")))?;
    let count = cores.unwrap_or(cpus.len());
    if count == 0 || count > cpus.len() {
        return Err(LaunchError::Config(format!(
            "--cores {count}: this process may use {} cores ({cpus:?})",
            cpus.len()
        )));
    }
    cpus.truncate(count);
    Ok(cpus)
}

fn bind_listeners(
    config: &BrokerConfig,
    shard_count: usize,
) -> Result<Vec<StdTcpListener>, LaunchError> {
    (0..shard_count)
        .map(|i| {
            let port = if config.port == 0 {
                0
            } else {
                u16::try_from(usize::from(config.port) + i).map_err(|_| {
                    LaunchError::Config(format!(
                        "--port {} + {shard_count} shards goes past port 65535",
                        config.port
                    ))
                })?
            };
            bind_retrying(&config.host, port)
                .map_err(io_error(format!("listening on {}:{port}", config.host)))
        })
        .collect()
}

/// How long start-up keeps retrying a port that is still in use. After a broker is killed, the
/// kernel releases its listening sockets only once its io_uring instances are torn down, which
/// was seen to take seconds under load: a restart right after a crash must wait that out.
const BIND_RETRY_DURATION: Duration = Duration::from_secs(15);

fn bind_retrying(host: &str, port: u16) -> std::io::Result<StdTcpListener> {
    let deadline = std::time::Instant::now() + BIND_RETRY_DURATION;
    let mut warned = false;
    loop {
        match StdTcpListener::bind((host, port)) {
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse
                    && port != 0
                    && std::time::Instant::now() < deadline =>
            {
                if !warned {
                    tracing::warn!(%host, port, "port still in use; retrying for up to 15 s");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

fn publish_listeners(
    config: &BrokerConfig,
    broker_id: u32,
    ports: &[u16],
) -> Result<(), LaunchError> {
    let mut text = String::new();
    for (shard, port) in ports.iter().enumerate() {
        let node = Node::new(broker_id, shard as u16).node_id();
        text.push_str(&format!("{node} {}:{port}\n", config.host));
        tracing::info!(
            node,
            address = %format!("{}:{port}", config.host),
            advertised = %format!("{}:{port}", config.advertised_host()),
            "shard serving (node {node})"
        );
    }
    let path = config.data_dir.join(LISTENERS_FILE_NAME);
    write_file_atomically(&path, text.as_bytes())
        .map_err(io_error(format!("writing {}", path.display())))?;
    tracing::info!(bootstrap = %format!("{}:{}", config.advertised_host(), ports[0]), "broker ready");
    Ok(())
}

/// Warns when the data dir is on tmpfs or ramfs: fdatasync succeeds there, but nothing
/// survives a power loss or reboot.
fn warn_if_memory_file_system(data_dir: &Path) {
    match crate::io::memory_file_system::memory_file_system(data_dir) {
        Ok(Some(file_system)) => tracing::warn!(
            data_dir = %data_dir.display(),
            file_system,
            "the data dir is on {file_system}, in memory: acknowledged data does not survive a \
             power loss or reboot"
        ),
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(data_dir = %data_dir.display(), %error, "cannot tell the data dir's file system")
        }
    }
}

/// Removes the `<topic>-<n>` directories that no topic owns and whose topic's deletion the
/// metadata log records (an interrupted deletion), so a topic re-created under that name starts
/// empty. Any other unowned directory is kept and logged: without a recorded deletion nothing
/// proves its data dead (a metadata log cut at corruption forgets every deletion).
fn remove_deleted_partition_dirs(data_dir: &Path, state: &ClusterState) -> Result<(), LaunchError> {
    let entries =
        std::fs::read_dir(data_dir).map_err(io_error(format!("listing {}", data_dir.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == META_DIR_NAME || !entry.path().is_dir() {
            continue;
        }
        let Some((topic, partition)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(partition) = partition.parse::<usize>() else {
            continue;
        };
        let owned = state
            .topic(topic)
            .is_some_and(|meta| partition < meta.partitions.len());
        if owned {
            continue;
        }
        if state.deletion_recorded(topic) {
            tracing::warn!(dir = %entry.path().display(), "removing the directory of a deleted partition");
            std::fs::remove_dir_all(entry.path())
                .map_err(io_error(format!("removing {}", entry.path().display())))?;
        } else {
            tracing::warn!(
                dir = %entry.path().display(),
                "keeping a partition directory no topic owns: the metadata log records no \
                 deletion of its topic; it is not served"
            );
        }
    }
    Ok(())
}

/// How often a shard checks whether the broker is stopping.
pub const STOP_POLL_INTERVAL: Duration = Duration::from_millis(20);
