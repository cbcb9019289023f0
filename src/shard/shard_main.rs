//! A shard's life on its executor: connect the mesh, recover its partitions, serve, close.

use std::net::TcpListener as StdTcpListener;
use std::os::fd::IntoRawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cluster::broker_link::{self, BrokerLink};
use crate::cluster::controller_service::start_controller;
use crate::cluster::local_state::LocalState;
use crate::config::{BrokerConfig, TopicConfig};
use crate::log::{PartitionLog, recovery};
use crate::meta::metadata_log::MetadataLogWriter;
use crate::meta::{BrokerInfo, ClusterState, ShardId};

use super::control::{CONTROL_SHARD, serve_mesh_request};
use super::launcher::STOP_POLL_INTERVAL;
use super::listener::accept_loop;
use super::mesh::{Mesh, MeshEnds};
use super::{Shard, replicas};

/// Everything a shard is handed by the main thread (all `Send`).
pub struct ShardStart {
    /// This shard.
    pub id: ShardId,
    /// This broker's id (0 for a single broker).
    pub broker_id: u32,
    /// Shards in the broker.
    pub shard_count: usize,
    /// Broker configuration.
    pub config: BrokerConfig,
    /// Every shard's port.
    pub ports: Vec<u16>,
    /// The metadata replayed at start.
    pub cluster: ClusterState,
    /// In a cluster: the controller log index `cluster` is as of.
    pub applied: u64,
    /// Shard 0 of a controller quorum voter: the bound controller port.
    pub controller_listener: Option<StdTcpListener>,
    /// This shard's bound listening socket.
    pub listener: StdTcpListener,
    /// This shard's mesh channel ends.
    pub mesh: MeshEnds,
    /// Shard 0: the metadata log and where to append.
    pub metadata_log: Option<(PathBuf, u64)>,
    /// Set by the main thread to stop.
    pub stop: Arc<AtomicBool>,
    /// Told once this shard serves (or why it cannot).
    pub ready: mpsc::Sender<Result<ShardId, String>>,
}

/// Runs one shard until the stop flag is set.
pub async fn shard_main(start: ShardStart) {
    let ShardStart {
        id,
        broker_id,
        applied,
        controller_listener,
        shard_count,
        config,
        ports,
        cluster,
        listener,
        mesh,
        metadata_log,
        stop,
        ready,
    } = start;
    // The stop watch also keeps a timer armed for the shard's whole life. glommio 0.9 can miss
    // the wake-up of a completion that arrives from another thread (its blocking pool, a peer
    // shard) and then sleep in io_uring until something else wakes it: under load a shard was
    // seen asleep for good while opening its partitions. A timer bounds such a stall to one tick.
    let stopped = glommio::spawn_local(async move {
        while !stop.load(Ordering::SeqCst) {
            glommio::timer::sleep(STOP_POLL_INTERVAL).await;
        }
    });
    let shard = match prepare(id, broker_id, shard_count, config, ports, metadata_log).await {
        Ok(shard) => shard,
        Err(reason) => {
            let _ = ready.send(Err(reason));
            return;
        }
    };
    // Start-up phases are logged at info: a start that stalls (see the stop watch above) then
    // shows in the log which phase it stalled in.
    tracing::info!(shard = id.0, "prepared; connecting the mesh");
    let for_mesh = Rc::clone(&shard);
    let mesh = Mesh::connect(id, mesh, move |_from, request| {
        serve_mesh_request(Rc::clone(&for_mesh), request)
    })
    .await;
    shard.attach_mesh(mesh);
    tracing::info!(shard = id.0, "mesh connected; opening partitions");
    if let Err(reason) = open_partitions(&shard, &cluster).await {
        let _ = ready.send(Err(reason));
        return;
    }
    // Offsets load in the background: group requests get COORDINATOR_LOAD_IN_PROGRESS until
    // then, while the shard already serves its partitions.
    // Only the offsets of topics whose deletion is recorded are dropped: a topic missing for
    // another reason (a metadata log cut at corruption) keeps them.
    let deleted_topics = cluster.deleted_topics().cloned().collect();
    if shard.config.replicated_offsets() {
        shard.groups.start_replicated();
    } else {
        let store_dir = crate::group::GroupCoordinator::store_dir(&shard.config.data_dir, id.0);
        shard.groups.start(store_dir, deleted_topics);
    }
    #[allow(unsafe_code)]
    // SAFETY: the descriptor comes from a listening socket this thread now owns alone
    // (`into_raw_fd` gave up the std listener), so the glommio listener is its only owner.
    let listener = unsafe {
        <glommio::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(listener.into_raw_fd())
    };
    // Every shard's Metadata must list this shard's offline partitions from the first request on.
    super::offline::sweep(&shard).await;
    let offline_sweeps = glommio::spawn_local(super::offline::run(Rc::clone(&shard)));
    let retention = match super::retention::spawn(&shard) {
        Ok(task) => task,
        Err(reason) => {
            let _ = ready.send(Err(reason));
            return;
        }
    };
    let controller = match controller_listener {
        Some(listener) => {
            match start_controller(Rc::clone(&shard.config), broker_id, listener).await {
                Ok(controller) => Some(controller),
                Err(reason) => {
                    let _ = ready.send(Err(reason));
                    return;
                }
            }
        }
        None => None,
    };
    let link_task = (shard.config.cluster_mode() && id == CONTROL_SHARD).then(|| {
        let link = Rc::new(BrokerLink::new(
            shard.config.controller_quorum_voters.clone(),
            BrokerInfo {
                id: broker_id,
                rack: shard.config.rack.clone(),
                host: shard.config.advertised_host().to_owned(),
                ports: shard.ports.to_vec(),
                epoch: 0,
                fenced: false,
            },
            shard.config.topic_defaults.clone(),
            Duration::from_millis(shard.config.broker_heartbeat_interval_ms),
            Duration::from_millis(shard.config.broker_session_timeout_ms),
            LocalState {
                applied,
                state: cluster.clone(),
            },
            shard.config.source_address(),
        ));
        shard.attach_cluster_link(Rc::clone(&link));
        glommio::spawn_local(broker_link::run(Rc::clone(&shard), link))
    });
    let accepting = glommio::spawn_local(accept_loop(Rc::clone(&shard), listener));
    // After the listener: a replica's leader reaches it only from now on.
    let replica_liveness =
        glommio::spawn_local(super::replica_liveness::run(Rc::downgrade(&shard)));
    let log_starts =
        glommio::spawn_local(super::replicas::follow_log_starts(Rc::downgrade(&shard)));
    let isr_reports = glommio::spawn_local(super::replicas::report_in_sync_replicas(
        Rc::downgrade(&shard),
    ));
    let _ = ready.send(Ok(id));
    stopped.await;
    accepting.cancel().await;
    if let Some(task) = link_task {
        task.cancel().await;
    }
    if let Some(controller) = controller {
        controller.shutdown().await;
    }
    retention.cancel().await;
    offline_sweeps.cancel().await;
    replica_liveness.cancel().await;
    log_starts.cancel().await;
    isr_reports.cancel().await;
    close_partitions(&shard).await;
}

async fn prepare(
    id: ShardId,
    broker_id: u32,
    shard_count: usize,
    config: BrokerConfig,
    ports: Vec<u16>,
    metadata_log: Option<(PathBuf, u64)>,
) -> Result<Rc<Shard>, String> {
    crate::io::probe::probe_iopoll(&config.data_dir)
        .await
        .map_err(|error| format!("iopoll probe: {error}"))?;
    tracing::debug!(shard = id.0, "iopoll probe done");
    if let Some(path) = &config.sync_journal {
        // Before any segment opens: a file opened before it would not be tracked.
        crate::io::sync_journal::install(path)
            .map_err(|error| format!("sync journal {}: {error}", path.display()))?;
    }
    let metadata_log = match metadata_log {
        Some((path, end_position)) => Some(
            MetadataLogWriter::open(path, end_position)
                .await
                .map_err(|error| error.to_string())?,
        ),
        None => None,
    };
    // The shard starts with no topics and learns each one as its partitions open, after the
    // mesh connects, so it never routes to a partition that is not open yet.
    Ok(Rc::new(Shard::new(
        id,
        broker_id,
        shard_count,
        Rc::new(config),
        ports.into(),
        ClusterState::default(),
        metadata_log,
    )))
}

/// Partition logs recovered at once at start-up: their scans' reads overlap.
const RECOVERY_CONCURRENCY: usize = 8;

/// How often start-up recovery logs its progress.
const RECOVERY_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Opens (recovering) every partition this shard owns, `RECOVERY_CONCURRENCY` at a time, then
/// learns the topics. A corrupt partition opens offline (see `PartitionLog::open`) and the others
/// serve; any other failure stops the shard.
async fn open_partitions(shard: &Rc<Shard>, cluster: &ClusterState) -> Result<(), String> {
    recovery::set_truncate_corrupt(shard.config.unsafe_truncate_corrupt_logs);
    let owned: Vec<(String, usize, TopicConfig)> = cluster
        .topics()
        .filter(|topic| !topic.is_replicated())
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, owner)| **owner == shard.node())
                .map(|(partition, _)| (topic.name.clone(), partition, topic.config.clone()))
        })
        .collect();
    let started = Instant::now();
    let mut progress_logged = started;
    let mut opened = 0usize;
    let mut offline = 0usize;
    for group in owned.chunks(RECOVERY_CONCURRENCY) {
        let tasks: Vec<_> = group
            .iter()
            .map(|(topic, partition, config)| {
                let dir = shard.partition_dir(topic, *partition);
                glommio::spawn_local(PartitionLog::open(
                    dir,
                    config.clone(),
                    Rc::clone(&shard.cache),
                ))
            })
            .collect();
        for ((topic, partition, _), task) in group.iter().zip(tasks) {
            let log = task
                .await
                .map_err(|error| format!("{topic}-{partition}: {error}"))?;
            offline += usize::from(log.is_offline());
            shard.insert_partition(topic, *partition, log);
            opened += 1;
        }
        if progress_logged.elapsed() >= RECOVERY_PROGRESS_INTERVAL {
            progress_logged = Instant::now();
            tracing::info!(
                shard = shard.id.0,
                opened,
                total = owned.len(),
                "recovering partitions"
            );
        }
    }
    *shard.cluster.borrow_mut() = cluster.clone();
    // After the metadata: a replica's group finds its peers there.
    let mut replicas = 0usize;
    for topic in cluster.topics().filter(|topic| topic.is_replicated()) {
        for (partition, members) in topic.replicas.iter().enumerate() {
            if members.contains(&shard.node()) {
                replicas::open_replica(shard, topic, partition, members).await?;
                replicas += 1;
            }
        }
    }
    tracing::info!(
        shard = shard.id.0,
        partitions = opened,
        replicas,
        offline,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "partitions recovered"
    );
    Ok(())
}

async fn close_partitions(shard: &Rc<Shard>) {
    for replica in shard.all_replicas() {
        let _ = replica.raft().shutdown().await;
        if let Err(error) = replica.log().close().await {
            tracing::error!(shard = shard.id.0, %error, "closing a replica failed");
        }
    }
    for log in shard.all_partitions() {
        if let Err(error) = log.close().await {
            tracing::error!(shard = shard.id.0, %error, "closing a partition failed");
        }
    }
}
