//! Producer ids for idempotent producers (InitProducerId), unique across shards, brokers and
//! restarts without coordination or a stored counter.
//!
//! An id is `(sequence << NODE_BITS) | broker << SHARD_BITS | shard`, where `sequence` starts at
//! the wall clock in milliseconds times `IDS_PER_MS` and only grows: two nodes never collide
//! (different low bits) and a restarted broker starts above every id it handed out before,
//! unless the clock went back by more than the ids it issued. Ids stay below 2^63 until about
//! the year 2100; the ids of a single broker from before clusters existed (sequence << 8, at
//! 1024 per ms) are all below the ones issued now.

use std::cell::Cell;

use crate::config::NODE_ID_MAX;
use crate::meta::Node;

/// Low bits that carry the shard, so at most 256 shards.
const SHARD_BITS: u32 = 8;
/// Bits that carry the shard and the broker (broker ids up to `NODE_ID_MAX`).
const NODE_BITS: u32 = SHARD_BITS + 10;
/// Ids per millisecond of wall clock before the sequence runs ahead of the clock.
const IDS_PER_MS: i64 = 8;

/// Hands out this shard's producer ids.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    node: Node,
    last_sequence: Cell<i64>,
}

impl ProducerIdAllocator {
    /// The allocator of `node`.
    pub fn new(node: Node) -> Self {
        assert!(
            u32::from(node.shard.0) < (1 << SHARD_BITS) && node.broker <= NODE_ID_MAX,
            "node fits the id layout"
        );
        Self {
            node,
            last_sequence: Cell::new(0),
        }
    }

    /// A fresh producer id.
    pub fn next(&self, now_ms: i64) -> i64 {
        let sequence = (self.last_sequence.get() + 1).max(now_ms * IDS_PER_MS);
        self.last_sequence.set(sequence);
        (sequence << NODE_BITS)
            | i64::from(self.node.broker) << SHARD_BITS
            | i64::from(self.node.shard.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_per_node_and_increase() {
        // Proves ids never repeat within a shard, differ across shards and brokers, stay
        // positive, and are above the ids of the layout before clusters.
        let a = ProducerIdAllocator::new(Node::new(0, 0));
        let b = ProducerIdAllocator::new(Node::new(0, 1));
        let c = ProducerIdAllocator::new(Node::new(NODE_ID_MAX, 0));
        let now = 1_800_000_000_000;
        let first = a.next(now);
        let second = a.next(now);
        assert!(second > first);
        assert_ne!(b.next(now), first);
        assert_ne!(c.next(now), first);
        assert!(first > 0);
        assert!(first > (now * 1024) << 8);
        let restarted = ProducerIdAllocator::new(Node::new(0, 0));
        assert!(restarted.next(now + 1) > second);
        let year_2100_ms = 4_102_444_800_000;
        assert!(c.next(year_2100_ms) > 0);
    }
}
