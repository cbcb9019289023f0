//! The control plane: topic changes made by the controller (shard 0) and applied on every shard.
//!
//! Any shard may receive CreateTopics, DeleteTopics, CreatePartitions or (Incremental)AlterConfigs
//! (or auto-create a topic); it forwards the request to shard 0. Shard 0 decides
//! (src/meta/controller.rs) one request at a time, appends the change to the metadata log and
//! fdatasyncs it, then has every shard apply it: each opens or deletes the partitions it owns (or
//! hands them their new config), then updates its copy of the metadata. The client is answered
//! only after every shard has applied the change, so a topic it was told exists can be used at
//! once on every node.
//!
//! In a cluster, shard 0 forwards the request to the controller quorum's leader instead
//! (src/cluster/broker_link.rs), which decides with the same functions and commits through
//! Raft; every broker's link applies the committed change here with `apply_everywhere`, and the
//! client is answered once its own broker has applied it.

use std::cell::RefCell;
use std::rc::Rc;

use glommio::sync::Semaphore;

use crate::log::PartitionLog;
use crate::meta::controller::{
    AdminRequest, AlterConfigsSpec, CreatePartitionsSpec, CreateTopicSpec, TopicError,
};
use crate::meta::metadata_log::MetadataLogWriter;
use crate::meta::{MetadataChange, Node, ShardId};

use super::mesh::{MeshReply, MeshRequest};
use super::{PartitionRoute, Shard, replicas};

/// The shard that takes every topic change of its broker: the single broker's controller, or
/// a cluster broker's link to the controller quorum.
pub const CONTROL_SHARD: ShardId = ShardId(0);

/// Shard 0's controller state.
pub struct Controller {
    /// Taken out while a change is being appended; the lock guarantees one change at a time.
    metadata_log: RefCell<Option<MetadataLogWriter>>,
    lock: Semaphore,
}

impl Controller {
    /// The controller around the metadata log.
    pub fn new(metadata_log: MetadataLogWriter) -> Self {
        Self {
            metadata_log: RefCell::new(Some(metadata_log)),
            lock: Semaphore::new(1),
        }
    }
}

/// Answers a request that arrived over the mesh.
pub async fn serve_mesh_request(shard: Rc<Shard>, request: MeshRequest) -> MeshReply {
    match request {
        MeshRequest::Admin(request) => MeshReply::Topics(admin_here(&shard, request).await),
        MeshRequest::Apply { change, fresh } => {
            MeshReply::Applied(apply_change(&shard, &change, fresh).await)
        }
        MeshRequest::ControllerLeader(leader) => {
            shard.controller_leader.set(leader);
            MeshReply::Applied(Ok(()))
        }
        MeshRequest::PartitionsOffline(partitions) => {
            shard.offline.record(&partitions);
            MeshReply::Applied(Ok(()))
        }
    }
}

fn unreachable_controller<T>(count: usize) -> Vec<Result<T, TopicError>> {
    (0..count)
        .map(|_| {
            Err(TopicError::Storage(
                "the controller shard is not reachable".into(),
            ))
        })
        .collect()
}

/// Creates topics through the controller, from any shard. One result per spec, in order.
pub async fn create_topics(
    shard: &Rc<Shard>,
    specs: Vec<CreateTopicSpec>,
    validate_only: bool,
) -> Vec<Result<(), TopicError>> {
    admin(
        shard,
        AdminRequest::CreateTopics {
            specs,
            validate_only,
        },
    )
    .await
}

/// Changes topic configs through the controller, from any shard. One result per spec, in order.
pub async fn alter_configs(
    shard: &Rc<Shard>,
    specs: Vec<AlterConfigsSpec>,
    validate_only: bool,
) -> Vec<Result<(), TopicError>> {
    admin(
        shard,
        AdminRequest::AlterConfigs {
            specs,
            validate_only,
        },
    )
    .await
}

/// Adds partitions through the controller, from any shard. One result per spec, in order.
pub async fn create_partitions(
    shard: &Rc<Shard>,
    specs: Vec<CreatePartitionsSpec>,
    validate_only: bool,
) -> Vec<Result<(), TopicError>> {
    admin(
        shard,
        AdminRequest::CreatePartitions {
            specs,
            validate_only,
        },
    )
    .await
}

/// Deletes topics through the controller, from any shard. One result per name, in order.
pub async fn delete_topics(shard: &Rc<Shard>, names: Vec<String>) -> Vec<Result<(), TopicError>> {
    admin(shard, AdminRequest::DeleteTopics(names)).await
}

/// Makes a topic change from any shard: shard 0 takes it (over the mesh from the others).
pub(crate) async fn admin(shard: &Rc<Shard>, request: AdminRequest) -> Vec<Result<(), TopicError>> {
    if shard.id == CONTROL_SHARD {
        return admin_here(shard, request).await;
    }
    let count = request.len();
    match shard
        .mesh()
        .call(CONTROL_SHARD, MeshRequest::Admin(request))
        .await
    {
        Ok(MeshReply::Topics(results)) if results.len() == count => results,
        _ => unreachable_controller(count),
    }
}

/// Shard 0's side: a cluster broker forwards the change to the controller quorum; a single
/// broker decides and commits it here, one request at a time under the controller's lock, each
/// item planned against the metadata after the previous item's change. One result per item.
async fn admin_here(shard: &Rc<Shard>, request: AdminRequest) -> Vec<Result<(), TopicError>> {
    if let Some(link) = shard.cluster_link() {
        return link.admin(request).await;
    }
    let Some(controller) = shard.controller.as_ref() else {
        return unreachable_controller(request.len());
    };
    let Ok(_permit) = controller.lock.acquire_permit(1).await else {
        return unreachable_controller(request.len());
    };
    let config = &shard.config;
    let mut results = Vec::with_capacity(request.len());
    for index in 0..request.len() {
        let planned = request.plan(
            index,
            &shard.cluster.borrow(),
            &config.topic_defaults,
            config.default_partitions,
        );
        results.push(match planned {
            Ok(_) if request.validate_only() => Ok(()),
            Ok(change) => commit(shard, controller, change).await,
            Err(error) => Err(error),
        });
    }
    results
}

/// Makes a change durable, then applies it on every shard.
async fn commit(
    shard: &Rc<Shard>,
    controller: &Controller,
    change: MetadataChange,
) -> Result<(), TopicError> {
    let storage = |error: String| TopicError::Storage(error);
    let mut writer = controller
        .metadata_log
        .borrow_mut()
        .take()
        .ok_or_else(|| storage("metadata log unavailable".into()))?;
    let appended = writer.append(&change).await;
    *controller.metadata_log.borrow_mut() = Some(writer);
    appended.map_err(|error| storage(error.to_string()))?;
    apply_everywhere(shard, &change, true)
        .await
        .map_err(storage)
}

/// Applies a durable change on every shard of this broker, this one included.
pub async fn apply_everywhere(
    shard: &Rc<Shard>,
    change: &MetadataChange,
    fresh: bool,
) -> Result<(), String> {
    for peer in 0..shard.shard_count {
        let peer = ShardId(peer as u16);
        let applied = if peer == shard.id {
            apply_change(shard, change, fresh).await
        } else {
            let request = MeshRequest::Apply {
                change: change.clone(),
                fresh,
            };
            match shard.mesh().call(peer, request).await {
                Ok(MeshReply::Applied(result)) => result,
                Ok(other) => Err(format!("unexpected reply {other:?}")),
                Err(error) => Err(error.to_string()),
            }
        };
        applied.map_err(|error| format!("shard {}: {error}", peer.0))?;
    }
    Ok(())
}

/// Tells every shard of this broker who leads the controller quorum now (for Metadata's
/// controller_id). A shard that cannot be told keeps the old value until the next change.
pub fn announce_controller_leader(shard: &Rc<Shard>, leader: Option<u32>) {
    shard.controller_leader.set(leader);
    for peer in (0..shard.shard_count).map(|peer| ShardId(peer as u16)) {
        if peer != shard.id {
            let mesh = Rc::clone(shard.mesh());
            glommio::spawn_local(async move {
                let _ = mesh.call(peer, MeshRequest::ControllerLeader(leader)).await;
            })
            .detach();
        }
    }
}

/// Applies a durable change on this shard: opens or deletes the partitions it owns, then updates
/// its metadata. `fresh` is set for changes made now (not replayed at start-up): a new topic's
/// directories must then start empty, even if an interrupted deletion left one behind.
pub async fn apply_change(
    shard: &Rc<Shard>,
    change: &MetadataChange,
    fresh: bool,
) -> Result<(), String> {
    match change {
        MetadataChange::TopicCreated(topic) if topic.is_replicated() => {
            // Applied first: a replica's group resolves its peers from the metadata.
            shard.cluster.borrow_mut().apply(change);
            open_replicas(shard, &topic.name, 0, fresh).await?;
        }
        MetadataChange::TopicCreated(topic) => {
            open_owned(
                shard,
                &topic.name,
                0,
                &topic.partitions,
                &topic.config,
                fresh,
            )
            .await?;
            shard.cluster.borrow_mut().apply(change);
        }
        MetadataChange::PartitionsAdded {
            name,
            added_replicas,
            ..
        } if !added_replicas.is_empty() => {
            let first = shard
                .cluster
                .borrow()
                .topic(name)
                .ok_or("unknown topic")?
                .partitions
                .len();
            shard.cluster.borrow_mut().apply(change);
            open_replicas(shard, name, first, fresh).await?;
        }
        MetadataChange::PartitionsAdded { name, added, .. } => {
            let (first, config) = {
                let cluster = shard.cluster.borrow();
                let topic = cluster.topic(name).ok_or("unknown topic")?;
                (topic.partitions.len(), topic.config.clone())
            };
            open_owned(shard, name, first, added, &config, fresh).await?;
            shard.cluster.borrow_mut().apply(change);
        }
        MetadataChange::TopicDeleted { name } => {
            let topic_id = shard
                .cluster
                .borrow()
                .topic(name)
                .map(|topic| topic.topic_id);
            // Stop routing to the topic first, so no request reaches a log being deleted.
            shard.cluster.borrow_mut().apply(change);
            if let Some(topic_id) = topic_id {
                shard.offline.forget_topic(topic_id);
            }
            for log in shard.remove_topic_partitions(name) {
                log.delete().await.map_err(|error| error.to_string())?;
            }
            replicas::delete_replicas(shard, name).await?;
            shard.groups.remove_topic(name).await;
        }
        MetadataChange::ClusterCreated { .. }
        | MetadataChange::BrokerRegistered(_)
        | MetadataChange::BrokerFenced { .. }
        | MetadataChange::LeaderElected { .. }
        | MetadataChange::IsrChanged { .. } => shard.cluster.borrow_mut().apply(change),
        MetadataChange::ConfigChanged { name, config, .. } => {
            shard.cluster.borrow_mut().apply(change);
            let partitions = shard
                .cluster
                .borrow()
                .topic(name)
                .map_or(0, |topic| topic.partitions.len());
            for partition in 0..partitions {
                if let Some(replica) = shard.replica(name, partition as i32) {
                    replica.log().set_config(config.clone());
                } else if let PartitionRoute::Here(log) = shard.route(name, partition as i32) {
                    log.set_config(config.clone());
                }
            }
        }
    }
    Ok(())
}

/// Opens this shard's replicas of a replicated topic's partitions from `first_partition` on
/// (the topic's metadata already applied).
async fn open_replicas(
    shard: &Rc<Shard>,
    name: &str,
    first_partition: usize,
    fresh: bool,
) -> Result<(), String> {
    let topic = shard
        .cluster
        .borrow()
        .topic(name)
        .cloned()
        .ok_or("unknown topic")?;
    for (partition, replicas) in topic.replicas.iter().enumerate().skip(first_partition) {
        if !replicas.contains(&shard.node()) {
            continue;
        }
        if fresh {
            let proven_dead = shard.cluster.borrow().deletion_recorded(name);
            clear_partition_dir(shard.partition_dir(name, partition), proven_dead).await?;
        }
        replicas::open_replica(shard, &topic, partition, replicas).await?;
    }
    Ok(())
}

async fn open_owned(
    shard: &Rc<Shard>,
    topic: &str,
    first_partition: usize,
    owners: &[Node],
    config: &crate::config::TopicConfig,
    fresh: bool,
) -> Result<(), String> {
    for (i, owner) in owners.iter().enumerate() {
        if *owner != shard.node() {
            continue;
        }
        let partition = first_partition + i;
        let dir = shard.partition_dir(topic, partition);
        if fresh {
            let proven_dead = shard.cluster.borrow().deletion_recorded(topic);
            clear_partition_dir(dir.clone(), proven_dead).await?;
        }
        let log = PartitionLog::open(dir, config.clone(), Rc::clone(&shard.cache))
            .await
            .map_err(|error| format!("{topic}-{partition}: {error}"))?;
        shard.insert_partition(topic, partition, log);
    }
    Ok(())
}

/// Makes way for a new partition's directory. A leftover of a deleted topic (`proven_dead`: its
/// deletion is recorded) is removed; any other directory there was kept at start-up because
/// nothing proves its data dead, so it is moved aside to `<dir>.kept` (a name no partition has)
/// rather than removed.
async fn clear_partition_dir(dir: std::path::PathBuf, proven_dead: bool) -> Result<(), String> {
    // Directory removal and renames have no io_uring form in glommio 0.9: run them on the
    // blocking pool so the executor never waits on the file system.
    glommio::executor()
        .spawn_blocking(move || {
            if proven_dead {
                return match std::fs::remove_dir_all(&dir) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        Err(format!("removing {}: {error}", dir.display()))
                    }
                    _ => Ok(()),
                };
            }
            if !dir.exists() {
                return Ok(());
            }
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            let kept = (0..)
                .map(|n| match n {
                    0 => dir.with_file_name(format!("{name}.kept")),
                    n => dir.with_file_name(format!("{name}.kept.{n}")),
                })
                .find(|candidate| !candidate.exists())
                .expect("a free name");
            let moved = std::fs::rename(&dir, &kept).and_then(|()| match dir.parent() {
                Some(parent) => std::fs::File::open(parent)?.sync_all(),
                None => Ok(()),
            });
            moved.map_err(|error| format!("moving {} aside: {error}", dir.display()))?;
            tracing::warn!(
                dir = %dir.display(),
                kept = %kept.display(),
                "a new topic's partition directory held data no deletion explains; moved it aside"
            );
            Ok(())
        })
        .await
}
