//! Offline partitions as every shard sees them.
//!
//! Only a partition's owner sees its log go offline (corrupt at start-up recovery, or found
//! corrupt later while serving), yet every shard answers Metadata for every partition. So the
//! owner reports each transition over the mesh to every other shard, which records it here, and
//! Metadata on any shard lists the partition as its owner does (KAFKA_STORAGE_ERROR, replica
//! offline).
//!
//! Detection is a sweep of the owner's logs: once right after start-up recovery, before the shard
//! reports ready (so no Metadata answer anywhere predates it), then every
//! [`OFFLINE_SWEEP_INTERVAL`]. A sweep compares each owned log's `is_offline()` with what was
//! already reported, so whatever path takes a log offline is propagated without calling in here.
//! A report that does not reach every peer is not recorded and goes again at the next sweep.
//! Entries are keyed by topic id, so a topic deleted and created again under its name starts
//! clean; a deleted topic's entries are dropped when the deletion is applied.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use crate::meta::ShardId;

use super::Shard;
use super::mesh::{MeshReply, MeshRequest};

/// How often a shard looks for logs of its own that went offline since the last sweep: the
/// longest another shard's Metadata can still call such a partition healthy. A sweep reads one
/// flag per owned partition, without I/O.
pub const OFFLINE_SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// One partition: its topic's id and its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OfflinePartition {
    /// The topic's id.
    pub topic_id: [u8; 16],
    /// The partition index.
    pub partition: u32,
}

/// The partitions this shard knows to be offline: its own once reported, and other shards'.
#[derive(Debug, Default)]
pub struct OfflinePartitions {
    known: RefCell<HashSet<OfflinePartition>>,
}

impl OfflinePartitions {
    /// Whether the partition is known to be offline.
    pub fn contains(&self, topic_id: [u8; 16], partition: usize) -> bool {
        u32::try_from(partition).is_ok_and(|partition| {
            self.known.borrow().contains(&OfflinePartition {
                topic_id,
                partition,
            })
        })
    }

    /// Records partitions another shard reported offline.
    pub fn record(&self, partitions: &[OfflinePartition]) {
        self.known.borrow_mut().extend(partitions.iter().copied());
    }

    /// Forgets a deleted topic's partitions.
    pub fn forget_topic(&self, topic_id: [u8; 16]) {
        self.known
            .borrow_mut()
            .retain(|partition| partition.topic_id != topic_id);
    }
}

/// Reports this shard's logs that went offline since the last sweep to every other shard.
pub async fn sweep(shard: &Rc<Shard>) {
    let newly_offline = newly_offline(shard);
    if newly_offline.is_empty() {
        return;
    }
    for peer in 0..shard.shard_count {
        let peer = ShardId(peer as u16);
        if peer == shard.id {
            continue;
        }
        let request = MeshRequest::PartitionsOffline(newly_offline.clone());
        match shard.mesh().call(peer, request).await {
            Ok(MeshReply::Applied(Ok(()))) => {}
            other => {
                tracing::warn!(
                    shard = shard.id.0,
                    peer = peer.0,
                    reply = ?other,
                    "offline partitions not reported; retrying at the next sweep"
                );
                return;
            }
        }
    }
    tracing::info!(
        shard = shard.id.0,
        partitions = newly_offline.len(),
        "offline partitions reported to every shard"
    );
    shard.offline.record(&newly_offline);
}

/// Sweeps every [`OFFLINE_SWEEP_INTERVAL`] until cancelled.
pub async fn run(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(OFFLINE_SWEEP_INTERVAL).await;
        sweep(&shard).await;
    }
}

/// This shard's offline logs not reported yet.
fn newly_offline(shard: &Shard) -> Vec<OfflinePartition> {
    let cluster = shard.cluster.borrow();
    let partitions = shard.partitions.borrow();
    let mut found = Vec::new();
    for (topic, logs) in partitions.iter() {
        let Some(topic_id) = cluster.topic(topic).map(|meta| meta.topic_id) else {
            continue;
        };
        for (index, log) in logs.iter().enumerate() {
            let offline = log.as_ref().is_some_and(|log| log.is_offline());
            let Ok(partition) = u32::try_from(index) else {
                continue;
            };
            let key = OfflinePartition {
                topic_id,
                partition,
            };
            if offline && !shard.offline.known.borrow().contains(&key) {
                found.push(key);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::{OfflinePartition, OfflinePartitions};

    #[test]
    fn reported_partitions_are_known_until_their_topic_is_deleted() {
        // Proves the per-shard view: a reported partition is offline by topic id and index only,
        // and deleting its topic forgets it without touching other topics.
        let offline = OfflinePartitions::default();
        let (deleted, kept) = ([1; 16], [2; 16]);
        offline.record(&[
            OfflinePartition {
                topic_id: deleted,
                partition: 3,
            },
            OfflinePartition {
                topic_id: kept,
                partition: 0,
            },
        ]);
        assert!(offline.contains(deleted, 3));
        assert!(!offline.contains(deleted, 2));
        assert!(!offline.contains([9; 16], 3));
        offline.forget_topic(deleted);
        assert!(!offline.contains(deleted, 3));
        assert!(offline.contains(kept, 0));
    }
}
