//! Routing that is a pure function of its inputs: which node coordinates a consumer group.
//!
//! Partitions are not routed here: their placement is decided once by the controller
//! (least-loaded) and recorded in the metadata, so a partition's owner is a table lookup
//! (`Shard::route`). A group's coordinator, when offsets are kept in each shard's local store
//! (a single broker), is a hash of the group id over the nodes of every registered broker
//! (fenced ones included, so a broker's death does not move its groups), the same on every
//! shard and broker and across restarts with the same brokers and core counts. A single
//! broker's nodes are its shards. When a cluster keeps offsets in `__consumer_offsets`, the
//! coordinator is the leader of the group's partition of that topic, as the metadata names it.

use crate::group::offsets_topic::{OFFSETS_TOPIC, offsets_partition};
use crate::meta::{ClusterState, Node, ShardId};
use crate::protocol::record_batch::crc32c;

/// The shard coordinating `group_id` among `shard_count` shards.
pub fn group_shard(group_id: &str, shard_count: usize) -> ShardId {
    assert!(shard_count > 0, "at least one shard");
    // CRC-32C rather than std's hasher: it is fixed across processes and Rust versions.
    ShardId((crc32c(group_id.as_bytes()) as usize % shard_count) as u16)
}

/// The node coordinating `group_id`: with `replicated_offsets`, the leader of its offsets
/// partition (`None` while the offsets topic does not exist); otherwise among every registered
/// broker's nodes in (broker, shard) order (`None` while no broker is known).
pub fn group_node(
    group_id: &str,
    cluster: &ClusterState,
    replicated_offsets: bool,
) -> Option<Node> {
    if replicated_offsets {
        let topic = cluster.topic(OFFSETS_TOPIC)?;
        let partition = offsets_partition(group_id, topic.partitions.len());
        return topic.partitions.get(partition as usize).copied();
    }
    let nodes: Vec<Node> = cluster
        .brokers()
        .flat_map(|broker| broker.nodes())
        .collect();
    if nodes.is_empty() {
        return None;
    }
    Some(nodes[crc32c(group_id.as_bytes()) as usize % nodes.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_routing_is_stable_and_spreads() {
        // Proves the same group always maps to the same shard, and groups spread over shards.
        assert_eq!(group_shard("orders", 4), group_shard("orders", 4));
        let shards: std::collections::HashSet<_> = (0..64)
            .map(|i| group_shard(&format!("group-{i}"), 4))
            .collect();
        assert_eq!(shards.len(), 4);
        assert_eq!(group_shard("anything", 1), ShardId(0));
    }
}
